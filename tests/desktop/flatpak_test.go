package desktop

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// manifest is the part of a flatpak-builder manifest this test checks.
type manifest struct {
	ID             string   `json:"id"`
	Runtime        string   `json:"runtime"`
	RuntimeVersion string   `json:"runtime-version"`
	SDK            string   `json:"sdk"`
	SDKExtensions  []string `json:"sdk-extensions"`
	Command        string   `json:"command"`
	FinishArgs     []string `json:"finish-args"`
	BuildOptions   struct {
		AppendPath string            `json:"append-path"`
		Env        map[string]string `json:"env"`
	} `json:"build-options"`
	Modules []struct {
		Name          string   `json:"name"`
		Buildsystem   string   `json:"buildsystem"`
		BuildCommands []string `json:"build-commands"`
		Sources       []struct {
			Type string   `json:"type"`
			Path string   `json:"path"`
			Dest string   `json:"dest"`
			Skip []string `json:"skip"`
			URL  string   `json:"url"`
		} `json:"sources"`
	} `json:"modules"`
}

const manifestPath = "flatpak/io.github.tattlefw.Tattle.json"

func readManifest(t *testing.T) manifest {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoRoot(t), manifestPath))
	if err != nil {
		t.Fatal(err)
	}
	var m manifest
	dec := json.NewDecoder(strings.NewReader(string(data)))
	if err := dec.Decode(&m); err != nil {
		t.Fatalf("%s: %v", manifestPath, err)
	}
	return m
}

// The manifest builds only the app on the GNOME runtime with the Go SDK extension, offline, with the
// sandbox holes the app needs (its helper's system-bus name, the tray watcher) and no more.
func TestFlatpakManifestStructure(t *testing.T) {
	m := readManifest(t)
	if m.ID != appID || m.Command != "tattle" {
		t.Errorf("id %q command %q, want %s and tattle", m.ID, m.Command, appID)
	}
	if m.Runtime != "org.gnome.Platform" || m.SDK != "org.gnome.Sdk" || m.RuntimeVersion == "" {
		t.Errorf("runtime %s//%s sdk %s, want org.gnome.Platform and org.gnome.Sdk with a version",
			m.Runtime, m.RuntimeVersion, m.SDK)
	}
	if !contains(m.SDKExtensions, "org.freedesktop.Sdk.Extension.golang") {
		t.Errorf("sdk-extensions %v lack org.freedesktop.Sdk.Extension.golang", m.SDKExtensions)
	}
	if m.BuildOptions.AppendPath != "/usr/lib/sdk/golang/bin" {
		t.Errorf("append-path %q, want the Go extension's /usr/lib/sdk/golang/bin", m.BuildOptions.AppendPath)
	}
	env := m.BuildOptions.Env
	if !strings.Contains(env["GOFLAGS"], "-mod=vendor") || env["GOPROXY"] != "off" || env["GOTOOLCHAIN"] != "local" {
		t.Errorf("build env %v: want GOFLAGS with -mod=vendor, GOPROXY=off, GOTOOLCHAIN=local (no network)", env)
	}
	for _, want := range []string{"--share=ipc", "--socket=fallback-x11", "--socket=wayland",
		"--system-talk-name=io.github.tattlefw.Tattle1", "--talk-name=org.kde.StatusNotifierWatcher"} {
		if !contains(m.FinishArgs, want) {
			t.Errorf("finish-args lack %s", want)
		}
	}
	for _, a := range m.FinishArgs {
		if a == "--share=network" || strings.HasPrefix(a, "--filesystem=") || a == "--socket=system-bus" ||
			a == "--socket=session-bus" || strings.HasPrefix(a, "--system-own-name") {
			t.Errorf("finish-args give %s, which the app does not need", a)
		}
	}
	if len(m.Modules) != 1 {
		t.Fatalf("%d modules, want one (the app; the helper stays on the host)", len(m.Modules))
	}
	mod := m.Modules[0]
	cmds := strings.Join(mod.BuildCommands, "\n")
	if mod.Buildsystem != "simple" || !regexp.MustCompile(`(?m)^go build .*-o /app/bin/tattle \./app/tattle$`).MatchString(cmds) {
		t.Errorf("module %s (%s) does not `go build … -o /app/bin/tattle ./app/tattle`:\n%s", mod.Name, mod.Buildsystem, cmds)
	}
	if !strings.Contains(cmds, "main.localeDir=/app/share/locale") {
		t.Error("the app is not told its catalogs are under /app/share/locale")
	}
	for _, forbidden := range []string{"helper/", "tattled", "tattlectl"} {
		if strings.Contains(cmds, forbidden) {
			t.Errorf("build commands mention %s; the helper and CLI stay on the host", forbidden)
		}
	}
	for _, s := range mod.Sources {
		if s.URL != "" || (s.Type != "dir" && s.Type != "file" && s.Type != "archive") {
			t.Errorf("source %+v is not local; the build must not need the network", s)
		}
	}
}

// Every local path the manifest names exists: the repository, the files its commands install, and the
// vendored modules flatpak/vendor.sh writes; and those modules are all the app needs to build offline.
func TestFlatpakManifestPaths(t *testing.T) {
	root := repoRoot(t)
	m := readManifest(t)
	manifestDir := filepath.Join(root, "flatpak")
	out := t.TempDir()
	run(t, root, nil, "bash", filepath.Join(root, "flatpak", "vendor.sh"), out)

	vendorDest := ""
	for _, s := range m.Modules[0].Sources {
		local := filepath.Join(manifestDir, s.Path)
		switch {
		case s.Path == "go-vendor":
			// Produced by vendor.sh next to the manifest; here, in the test's directory.
			local = filepath.Join(out, s.Path)
			vendorDest = s.Dest
			if !fileExists(filepath.Join(local, "modules.txt")) {
				t.Errorf("vendor.sh wrote no %s/modules.txt", s.Path)
			}
		case s.Path == "..":
			if !fileExists(filepath.Join(local, "go.mod")) {
				t.Errorf("source %s is not the module root", s.Path)
			}
		}
		if !fileExists(local) {
			t.Errorf("source %s (%s) does not exist", s.Path, local)
		}
	}
	if vendorDest != "vendor" {
		t.Errorf("vendored modules land in %q, want vendor/ (where -mod=vendor looks)", vendorDest)
	}
	ignored, _ := os.ReadFile(filepath.Join(manifestDir, ".gitignore"))
	if !strings.Contains(string(ignored), "go-vendor/") {
		t.Error("flatpak/.gitignore does not keep go-vendor/ out of the repository")
	}

	// Repository paths in the build commands, with po/$lang.po expanded for each language.
	pathRE := regexp.MustCompile(`(?m)(?:^|[\s'"])((?:\./)?(?:app|data|po)/[A-Za-z0-9_./$-]+)`)
	cmds := strings.Join(m.Modules[0].BuildCommands, "\n")
	named := 0
	for _, match := range pathRE.FindAllStringSubmatch(cmds, -1) {
		p := match[1]
		paths := []string{p}
		if strings.Contains(p, "$lang") {
			paths = nil
			for _, lang := range linguas(t) {
				paths = append(paths, strings.ReplaceAll(p, "$lang", lang))
			}
		}
		for _, p := range paths {
			named++
			if !fileExists(filepath.Join(root, p)) {
				t.Errorf("build commands name %s, which is not in the repository", p)
			}
		}
	}
	if named < 5 {
		t.Errorf("found only %d repository paths in the build commands", named)
	}

	// The vendored modules suffice: in a copy of the module with them as vendor/, the manifest's own go build
	// command, with its environment (GOPROXY=off, -mod=vendor), builds the app. (The build cache is the
	// machine's: a cold cache costs one cgo build of gotk3, which later -trimpath builds reuse.)
	work := filepath.Join(t.TempDir(), "src")
	copyTree(t, root, work)
	if err := os.Rename(filepath.Join(out, "go-vendor"), filepath.Join(work, "vendor")); err != nil {
		t.Fatal(err)
	}
	env := append([]string{}, os.Environ()...)
	for k, v := range m.BuildOptions.Env {
		if k != "GOPATH" && k != "GOCACHE" { // the sandbox's paths; here the machine's cache
			env = append(env, k+"="+v)
		}
	}
	env = append(env, "PATH="+filepath.Dir(goTool(t))+":"+os.Getenv("PATH"))
	prefix := filepath.Join(t.TempDir(), "app")
	built := 0
	for _, c := range m.Modules[0].BuildCommands {
		if !strings.HasPrefix(c, "go ") {
			continue
		}
		cmd := exec.Command("sh", "-ec", inPrefix(c, prefix))
		cmd.Dir, cmd.Env = work, env
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s (offline, vendored): %v\n%s", c, err, out)
		}
		built++
	}
	bin := filepath.Join(prefix, "bin", m.Command)
	if built != 1 {
		t.Fatalf("%d go commands in the manifest, want 1", built)
	}
	if v := run(t, work, env, bin, "--version"); !strings.HasPrefix(v, "tattle 0.1.0") {
		t.Errorf("%s --version = %q", bin, v)
	}
}

// The install commands of the manifest work (run here with /app moved into a temporary directory, and
// without the go build, which the GUI tests cover): catalogs compile, and the desktop entry and metainfo come
// out translated.
func TestFlatpakInstallCommands(t *testing.T) {
	tool(t, "msgfmt", "gettext")
	root := repoRoot(t)
	m := readManifest(t)
	prefix := filepath.Join(t.TempDir(), "app")
	ran := 0
	for _, c := range m.Modules[0].BuildCommands {
		if strings.HasPrefix(c, "go ") {
			continue
		}
		c = inPrefix(c, prefix)
		cmd := exec.Command("sh", "-ec", c)
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", c, err, out)
		}
		ran++
	}
	for _, lang := range linguas(t) {
		if !fileExists(filepath.Join(prefix, "share", "locale", lang, "LC_MESSAGES", "tattle.mo")) {
			t.Errorf("no %s catalog installed", lang)
		}
	}
	d := readDesktop(t, filepath.Join(prefix, "share", "applications", appID+".desktop"))
	if d["GenericName[de]"] == "" {
		t.Error("the Flatpak's desktop entry has no German GenericName")
	}
	meta, err := os.ReadFile(filepath.Join(prefix, "share", "metainfo", appID+".metainfo.xml"))
	if err != nil || !strings.Contains(string(meta), `xml:lang="de"`) {
		t.Errorf("the Flatpak's metainfo is missing or untranslated: %v", err)
	}
	for _, icon := range []string{"scalable/apps/" + appID + ".svg", "symbolic/apps/" + appID + "-symbolic.svg"} {
		if !fileExists(filepath.Join(prefix, "share", "icons", "hicolor", icon)) {
			t.Errorf("icon %s not installed", icon)
		}
	}
	t.Logf("ran %d install commands into %s", ran, prefix)
}

// inPrefix moves the Flatpak's /app (a path of its own, not ./app/ of the repository) to prefix.
func inPrefix(cmd, prefix string) string {
	return regexp.MustCompile(`(^|[\s='])/app/`).ReplaceAllString(cmd, "${1}"+prefix+"/")
}

// copyTree copies the module's sources (not .git, build output or test output) to dst.
func copyTree(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.Walk(src, func(path string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		if info.IsDir() {
			switch rel {
			case ".git", "tests/output", "flatpak/go-vendor", "vendor", "build":
				return filepath.SkipDir
			}
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		if !info.Mode().IsRegular() {
			return nil
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), data, info.Mode().Perm())
	})
	if err != nil {
		t.Fatalf("copying the module: %v", err)
	}
}
