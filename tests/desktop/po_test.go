package desktop

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/tattlefw/tattle/app/i18n"
	"github.com/tattlefw/tattle/app/i18n/i18ntest"
)

// A new or changed string must reach the template, or translators never see it.
func TestTemplateIsCurrent(t *testing.T) {
	tool(t, "xgettext", "gettext")
	root := repoRoot(t)
	run(t, root, nil, goTool(t), "run", "./app/i18n/extract", "-check")
}

// Every Go file that marks strings is in POTFILES (else its strings silently stay English), and every file
// POTFILES lists exists.
func TestPOTFILESListsEveryTranslatedFile(t *testing.T) {
	root := repoRoot(t)
	data, err := os.ReadFile(filepath.Join(root, "po", "POTFILES"))
	if err != nil {
		t.Fatal(err)
	}
	listed := map[string]bool{}
	for _, l := range strings.Split(string(data), "\n") {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		listed[l] = true
		if !fileExists(filepath.Join(root, l)) {
			t.Errorf("po/POTFILES lists %s, which does not exist", l)
		}
	}
	marking := 0
	err = filepath.WalkDir(filepath.Join(root, "app"), func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		if strings.HasPrefix(rel, "app/i18n/") {
			return nil
		}
		if marksStrings(t, path) {
			marking++
			if !listed[rel] {
				t.Errorf("%s calls i18n.T or i18n.N but is not in po/POTFILES", rel)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if marking == 0 {
		t.Error("no Go file under app/ marks a string for translation")
	}
}

// marksStrings says whether a Go file calls T or N of package app/i18n.
func marksStrings(t *testing.T, path string) bool {
	f, err := parser.ParseFile(token.NewFileSet(), path, nil, 0)
	if err != nil {
		t.Fatalf("parsing %s: %v", path, err)
	}
	name := ""
	for _, imp := range f.Imports {
		if p, _ := strconv.Unquote(imp.Path.Value); p == "github.com/tattlefw/tattle/app/i18n" {
			name = "i18n"
			if imp.Name != nil {
				name = imp.Name.Name
			}
		}
	}
	found := false
	ast.Inspect(f, func(n ast.Node) bool {
		if sel, ok := n.(*ast.SelectorExpr); ok {
			if x, ok := sel.X.(*ast.Ident); ok && name != "" && x.Name == name && (sel.Sel.Name == "T" || sel.Sel.Name == "N") {
				found = true
			}
		}
		return !found
	})
	return found
}

// Each translation covers every string of the template, with nothing fuzzy, and passes msgfmt's checks
// (format directives kept, plural forms complete).
func TestTranslationsComplete(t *testing.T) {
	root := repoRoot(t)
	msgfmt := tool(t, "msgfmt", "gettext")
	template := readPO(t, filepath.Join(root, "po", "tattle.pot"))
	if len(template) < 10 {
		t.Fatalf("po/tattle.pot has %d messages; expected the app's strings", len(template))
	}
	for _, lang := range linguas(t) {
		t.Run(lang, func(t *testing.T) {
			po := filepath.Join(root, "po", lang+".po")
			stats := run(t, root, nil, msgfmt, "--check", "--statistics", "-o", os.DevNull, po)
			if strings.Contains(stats, "fuzzy") || strings.Contains(stats, "untranslated") {
				t.Errorf("msgfmt --statistics %s: %s", po, strings.TrimSpace(stats))
			}
			have := map[string]poEntry{}
			for _, e := range readPO(t, po) {
				if !e.Obsolete {
					have[e.ID] = e
				}
			}
			missing := 0
			for _, want := range template {
				got, ok := have[want.ID]
				switch {
				case !ok:
					missing++
					t.Errorf("%s.po has no entry for %q (run msgmerge, see po/README)", lang, want.ID)
				case got.fuzzy():
					t.Errorf("%s.po: %q is fuzzy", lang, want.ID)
				case got.Plural != want.Plural:
					t.Errorf("%s.po: %q has plural %q, the template %q", lang, want.ID, got.Plural, want.Plural)
				default:
					for i, s := range got.Str {
						if s == "" {
							t.Errorf("%s.po: %q form %d is untranslated", lang, want.ID, i)
						}
					}
				}
			}
			t.Logf("%s: %d of %d messages translated; msgfmt: %s", lang, len(template)-missing, len(template),
				strings.TrimSpace(stats))
		})
	}
}

// With LANG=de_DE.UTF-8 the app's strings come back in German: the installed catalog, loaded through
// app/i18n exactly as the app loads it, translates every message of the template.
func TestGermanFollowsLANG(t *testing.T) {
	root := repoRoot(t)
	build := mesonData(t)
	localeDir := filepath.Join(build, "po") // meson's build tree has the installed layout: de/LC_MESSAGES/tattle.mo
	t.Setenv("LOCPATH", i18ntest.Locale(t, "de_DE.UTF-8"))
	t.Setenv("LANG", "de_DE.UTF-8")
	t.Setenv("LC_ALL", "")
	t.Setenv("LC_MESSAGES", "")
	t.Setenv("LANGUAGE", "")
	if err := i18n.Init(i18n.Domain, localeDir); err != nil {
		t.Fatalf("i18n.Init: %v", err)
	}
	defer func() {
		// Leave the process in the C locale for whatever runs next.
		t.Setenv("LANG", "C")
		i18n.Init(i18n.Domain, localeDir)
	}()
	de := map[string]poEntry{}
	for _, e := range readPO(t, filepath.Join(root, "po", "de.po")) {
		de[e.ID] = e
	}
	checked := 0
	for _, e := range readPO(t, filepath.Join(root, "po", "tattle.pot")) {
		want, ok := de[e.ID]
		if !ok || want.fuzzy() || contains(want.Str, "") {
			continue // TestTranslationsComplete reports it
		}
		if e.Plural == "" {
			if got := i18n.T(e.ID); got != want.Str[0] {
				t.Errorf("T(%q) = %q, want %q", e.ID, got, want.Str[0])
			}
		} else {
			// German: form 0 for one, form 1 for the rest.
			for n, form := range map[int]int{1: 0, 2: 1, 5: 1} {
				if got := i18n.N(e.ID, e.Plural, n); got != want.Str[form] {
					t.Errorf("N(%q, %d) = %q, want %q", e.ID, n, got, want.Str[form])
				}
			}
		}
		checked++
	}
	if checked == 0 {
		t.Fatal("no German translation to check")
	}
	// A string everyone sees, spelled out so that a broken catalog cannot pass by comparing with itself.
	if got := i18n.T("Application Firewall"); got != "Anwendungs-Firewall" {
		t.Errorf(`T("Application Firewall") = %q, want "Anwendungs-Firewall"`, got)
	}
	t.Logf("%d German messages checked through gettext", checked)
}

// Format directives in German translations match the English ones in number and order (msgfmt checks
// c-format strings; this also covers Go-only verbs that msgfmt cannot check).
func TestGermanKeepsFormatDirectives(t *testing.T) {
	root := repoRoot(t)
	directive := regexp.MustCompile(`%[-+ #0]*[0-9]*(\.[0-9]+)?[a-zA-Z%]`)
	for _, e := range readPO(t, filepath.Join(root, "po", "de.po")) {
		if e.Obsolete {
			continue
		}
		want := fmt.Sprint(directive.FindAllString(e.ID, -1))
		for i, s := range e.Str {
			if s == "" {
				continue
			}
			got := fmt.Sprint(directive.FindAllString(s, -1))
			if e.Plural != "" && i == 0 && got == "[]" {
				continue // "Eine Verbindung" for n == 1 may spell the number out
			}
			if got != want {
				t.Errorf("de.po %q form %d: directives %s, English %s", e.ID, i, got, want)
			}
		}
	}
}

// meson's maintainer targets keep the template right: tattle-pot writes what the extractor writes, and
// tattle-update-po leaves a current template and a complete translation as they are. Run in a copy of the
// tree, since both targets write into the source directory.
func TestMesonTranslationTargets(t *testing.T) {
	meson := tool(t, "meson", "meson")
	tool(t, "ninja", "ninja-build")
	root := repoRoot(t)
	work := filepath.Join(t.TempDir(), "src")
	copyTree(t, root, work)
	// A template with a string too few, as after adding one to the code.
	pot := filepath.Join(work, "po", "tattle.pot")
	original, err := os.ReadFile(pot)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(pot, []byte(strings.Replace(string(original), `msgid "Application Firewall"`, `msgid "Stale"`, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	build := filepath.Join(t.TempDir(), "build")
	env := append(os.Environ(), "PATH="+filepath.Dir(goTool(t))+":"+os.Getenv("PATH"))
	run(t, work, env, meson, "setup", build, work)
	run(t, work, env, "ninja", "-C", build, "tattle-pot")
	if got, _ := os.ReadFile(pot); string(got) != string(original) {
		t.Fatal("ninja tattle-pot did not write the extractor's template")
	}
	po := filepath.Join(work, "po", "de.po")
	before := readPO(t, po)
	run(t, work, env, "ninja", "-C", build, "tattle-update-po")
	if got, _ := os.ReadFile(pot); string(got) != string(original) {
		t.Fatal("ninja tattle-update-po changed the template")
	}
	after := readPO(t, po)
	if fmt.Sprint(after) != fmt.Sprint(before) {
		t.Errorf("ninja tattle-update-po changed the messages of a complete de.po (%d before, %d after)", len(before), len(after))
	}
}
