package desktop

import (
	"bufio"
	"encoding/xml"
	"fmt"
	"image"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tattlefw/tattle/app/tray"
)

const appID = "io.github.tattlefw.Tattle"

// readDesktop reads the [Desktop Entry] group of a desktop file.
func readDesktop(t *testing.T, path string) map[string]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	keys := map[string]string{}
	group := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
		case strings.HasPrefix(line, "["):
			group = line
		case group == "[Desktop Entry]":
			k, v, _ := strings.Cut(line, "=")
			keys[strings.TrimSpace(k)] = strings.TrimSpace(v)
		}
	}
	return keys
}

// The desktop entries meson installs pass desktop-file-validate, carry the German translation, name the
// installed icon, and the autostart entry starts the app hidden in every session.
func TestDesktopEntries(t *testing.T) {
	validate := tool(t, "desktop-file-validate", "desktop-file-utils")
	root := repoRoot(t)
	build := mesonData(t)

	main := filepath.Join(build, appID+".desktop")
	autostart := filepath.Join(build, appID+"-autostart.desktop")
	for _, f := range []string{main, autostart, filepath.Join(root, "data", appID+"-autostart.desktop")} {
		// Hints are advice; warnings and errors fail (desktop-file-validate exits non-zero only on errors).
		out, err := exec.Command(validate, f).CombinedOutput()
		if err != nil || strings.Contains(string(out), "warning:") || strings.Contains(string(out), "error:") {
			t.Errorf("desktop-file-validate %s: %v\n%s", filepath.Base(f), err, out)
		}
	}

	m := readDesktop(t, main)
	for k, want := range map[string]string{
		"Type": "Application", "Name": "Tattle", "Exec": "tattle", "Icon": appID, "Terminal": "false",
		"Name[de]": "Tattle", "GenericName[de]": "Anwendungs-Firewall",
	} {
		if m[k] != want {
			t.Errorf("%s: %s=%q, want %q", filepath.Base(main), k, m[k], want)
		}
	}
	for _, k := range []string{"Comment[de]", "Keywords[de]"} {
		if m[k] == "" || m[k] == m[strings.TrimSuffix(k, "[de]")] {
			t.Errorf("%s: %s=%q is missing or not translated", filepath.Base(main), k, m[k])
		}
	}
	if !strings.HasSuffix(m["Keywords[de]"], ";") {
		t.Errorf("Keywords[de]=%q must end with ';'", m["Keywords[de]"])
	}

	a := readDesktop(t, autostart)
	for k, want := range map[string]string{
		"Exec": "tattle --background", "X-GNOME-Autostart-enabled": "true", "Icon": appID, "Type": "Application",
	} {
		if a[k] != want {
			t.Errorf("autostart entry: %s=%q, want %q", k, a[k], want)
		}
	}
	if a["Hidden"] == "true" {
		t.Error("autostart entry is Hidden=true: it would never start")
	}
	if a["Comment[de]"] == "" {
		t.Error("autostart entry has no German comment")
	}

	// The icon the entries name is the one installed.
	if !fileExists(filepath.Join(root, "data", "icons", "hicolor", "scalable", "apps", m["Icon"]+".svg")) {
		t.Errorf("Icon=%s has no data/icons/hicolor/scalable/apps/%s.svg", m["Icon"], m["Icon"])
	}
}

// metainfo is the part of an AppStream component this test checks.
type metainfo struct {
	ID         string `xml:"id"`
	Launchable []struct {
		Type  string `xml:"type,attr"`
		Value string `xml:",chardata"`
	} `xml:"launchable"`
	Binaries []string `xml:"provides>binary"`
	Summary  []struct {
		Lang  string `xml:"http://www.w3.org/XML/1998/namespace lang,attr"`
		Value string `xml:",chardata"`
	} `xml:"summary"`
	Paragraphs []struct {
		Lang string `xml:"http://www.w3.org/XML/1998/namespace lang,attr"`
	} `xml:"description>p"`
	Releases []struct {
		Version string `xml:"version,attr"`
		Date    string `xml:"date,attr"`
	} `xml:"releases>release"`
	ContentRating *struct {
		Type string `xml:"type,attr"`
	} `xml:"content_rating"`
	Developer   string   `xml:"developer_name"`
	Screenshots []string `xml:"screenshots>screenshot>image"`
}

// The metainfo meson installs is valid for appstreamcli (without network) and carries the German translation.
func TestMetainfo(t *testing.T) {
	appstreamcli := tool(t, "appstreamcli", "appstream")
	build := mesonData(t)
	path := filepath.Join(build, appID+".metainfo.xml")
	out, err := exec.Command(appstreamcli, "validate", "--no-net", "--pedantic", path).CombinedOutput()
	t.Logf("appstreamcli validate --no-net --pedantic:\n%s", out)
	if err != nil {
		t.Fatalf("appstreamcli validate failed: %v", err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var c metainfo
	if err := xml.Unmarshal(data, &c); err != nil {
		t.Fatalf("parsing %s: %v", path, err)
	}
	if c.ID != appID {
		t.Errorf("id %q, want %q", c.ID, appID)
	}
	if len(c.Launchable) != 1 || c.Launchable[0].Type != "desktop-id" || c.Launchable[0].Value != appID+".desktop" {
		t.Errorf("launchable %+v, want desktop-id %s.desktop", c.Launchable, appID)
	}
	if !contains(c.Binaries, "tattle") {
		t.Errorf("provides binaries %v, want tattle among them", c.Binaries)
	}
	if len(c.Releases) == 0 || c.Releases[0].Version == "" || c.Releases[0].Date == "" {
		t.Errorf("releases %+v: want a release with version and date", c.Releases)
	}
	if c.ContentRating == nil || c.ContentRating.Type != "oars-1.1" {
		t.Error("no OARS content rating")
	}
	if c.Developer == "" || len(c.Screenshots) == 0 {
		t.Errorf("developer %q, %d screenshots: want both", c.Developer, len(c.Screenshots))
	}
	var german, english int
	for _, p := range c.Paragraphs {
		switch p.Lang {
		case "de":
			german++
		case "":
			english++
		}
	}
	if english == 0 || german != english {
		t.Errorf("description: %d English paragraphs, %d German; want all translated", english, german)
	}
	germanSummary := false
	for _, s := range c.Summary {
		germanSummary = germanSummary || (s.Lang == "de" && s.Value != "")
	}
	if !germanSummary {
		t.Error("no German summary")
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// The icons are valid SVG that librsvg (what GTK uses) renders to a visible image; the symbolic ones use the
// single colour GTK recolours; the tray's state icons exist under the names app/tray uses.
func TestIcons(t *testing.T) {
	rsvg := tool(t, "rsvg-convert", "librsvg2-bin")
	root := repoRoot(t)
	icons := filepath.Join(root, "data", "icons", "hicolor")
	files := map[string]int{ // file -> nominal size
		filepath.Join(icons, "scalable", "apps", appID+".svg"): 128,
	}
	for _, name := range []string{tray.IconNormal, tray.IconQuestion, tray.IconSilent} {
		files[filepath.Join(icons, "symbolic", "apps", name+".svg")] = 16
	}
	for path, size := range files {
		rel, _ := filepath.Rel(root, path)
		data, err := os.ReadFile(path)
		if err != nil {
			t.Errorf("%s: %v", rel, err)
			continue
		}
		var svg struct {
			XMLName xml.Name
			ViewBox string `xml:"viewBox,attr"`
		}
		if err := xml.Unmarshal(data, &svg); err != nil || svg.XMLName.Local != "svg" {
			t.Errorf("%s is not SVG: %v", rel, err)
			continue
		}
		if want := fmt.Sprintf("0 0 %d %d", size, size); svg.ViewBox != want {
			t.Errorf("%s: viewBox %q, want %q", rel, svg.ViewBox, want)
		}
		if size == 16 {
			for _, color := range colours(data) {
				if color != "#2e3436" {
					t.Errorf("%s paints with %s; symbolic icons use #2e3436 only (GTK recolours it)", rel, color)
				}
			}
		}
		png := filepath.Join(t.TempDir(), "icon.png")
		run(t, root, nil, rsvg, "-w", "64", "-h", "64", "-o", png, path)
		if frac := opaqueFraction(t, png); frac < 0.15 || frac > 0.95 {
			t.Errorf("%s renders with %.0f%% of its pixels painted; want a visible, not solid, image", rel, frac*100)
		}
	}
}

// colours are the fill and stroke colours an SVG paints with, outside masks.
func colours(data []byte) []string {
	d := xml.NewDecoder(strings.NewReader(string(data)))
	var out []string
	inMask := 0
	for {
		tok, err := d.Token()
		if err != nil {
			return out
		}
		switch el := tok.(type) {
		case xml.StartElement:
			if el.Name.Local == "mask" {
				inMask++
			}
			if inMask > 0 {
				continue
			}
			for _, a := range el.Attr {
				if (a.Name.Local == "fill" || a.Name.Local == "stroke") && a.Value != "none" && !strings.HasPrefix(a.Value, "url(") {
					out = append(out, strings.ToLower(a.Value))
				}
			}
		case xml.EndElement:
			if el.Name.Local == "mask" {
				inMask--
			}
		}
	}
}

// opaqueFraction is the share of a PNG's pixels that are not transparent.
func opaqueFraction(t *testing.T, path string) float64 {
	t.Helper()
	img := decodePNG(t, path)
	b := img.Bounds()
	painted := 0
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			if _, _, _, a := img.At(x, y).RGBA(); a > 0x8000 {
				painted++
			}
		}
	}
	return float64(painted) / float64(b.Dx()*b.Dy())
}

// The tray's fallback pixmaps (app/tray/pixmaps, embedded in the binary) are what pixmaps/gen.sh renders from
// the current symbolic icons: an icon changed without `go generate ./app/tray` fails here.
func TestTrayPixmapsCurrent(t *testing.T) {
	tool(t, "rsvg-convert", "librsvg2-bin")
	root := repoRoot(t)
	fresh := t.TempDir()
	run(t, root, nil, "sh", filepath.Join(root, "app", "tray", "pixmaps", "gen.sh"), fresh)
	files, err := filepath.Glob(filepath.Join(fresh, "*.png"))
	if err != nil || len(files) != 12 {
		t.Fatalf("gen.sh rendered %d images (%v), want 12", len(files), err)
	}
	for _, f := range files {
		committed := filepath.Join(root, "app", "tray", "pixmaps", filepath.Base(f))
		a, b := decodePNG(t, committed), decodePNG(t, f)
		if a.Bounds() != b.Bounds() {
			t.Errorf("%s: %v, a fresh render is %v", filepath.Base(f), a.Bounds(), b.Bounds())
			continue
		}
		differ := 0
		for y := a.Bounds().Min.Y; y < a.Bounds().Max.Y; y++ {
			for x := a.Bounds().Min.X; x < a.Bounds().Max.X; x++ {
				r1, g1, b1, a1 := a.At(x, y).RGBA()
				r2, g2, b2, a2 := b.At(x, y).RGBA()
				if absDiff(r1, r2) > 0x800 || absDiff(g1, g2) > 0x800 || absDiff(b1, b2) > 0x800 || absDiff(a1, a2) > 0x800 {
					differ++
				}
			}
		}
		if differ > 0 {
			t.Errorf("app/tray/pixmaps/%s differs from a fresh render in %d pixels: run go generate ./app/tray",
				filepath.Base(f), differ)
		}
	}
}

// decodePNG reads the PNG image at path, failing the test if it cannot.
func decodePNG(t *testing.T, path string) image.Image {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("decoding %s: %v", path, err)
	}
	return img
}

func absDiff(a, b uint32) uint32 {
	if a > b {
		return a - b
	}
	return b - a
}
