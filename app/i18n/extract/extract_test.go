package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"
)

// setup lays out a tree with a POTFILES listing the given testdata files (as .go files).
func setup(t *testing.T, files ...string) string {
	t.Helper()
	root := t.TempDir()
	var list []string
	for _, f := range files {
		data, err := os.ReadFile(filepath.Join("testdata", f+".go.txt"))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, f+".go"), data, 0o644); err != nil {
			t.Fatal(err)
		}
		list = append(list, f+".go")
	}
	os.Mkdir(filepath.Join(root, "po"), 0o755)
	if err := os.WriteFile(filepath.Join(root, "po", "POTFILES"), []byte("# test\n"+strings.Join(list, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return root
}

func TestExtractGo(t *testing.T) {
	root := setup(t, "marked")
	pot, err := extract(root, "po/POTFILES")
	if err != nil {
		t.Fatalf("extract: %v", err)
	}
	s := string(pot)
	for _, want := range []string{
		"#: marked.go\nmsgid \"Allow\"\nmsgstr \"\"\n",
		"#. TRANSLATORS: the button that refuses the connection\n#: marked.go\nmsgid \"Deny\"\n",
		"msgid \"A long sentence, split over lines\"\n",
		"#, c-format\nmsgid \"%d connection\"\nmsgid_plural \"%d connections\"\nmsgstr[0] \"\"\nmsgstr[1] \"\"\n",
		"msgid \"\"\n\"Quote \\\" and backslash \\\\ and\\n\"\n\"newline\"\n",
		"#, no-c-format\nmsgid \"raw %v\"\n",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("template lacks\n%s\n--- template:\n%s", want, s)
		}
	}
	if strings.Count(s, "msgid \"Allow\"") != 1 {
		t.Error("a string used twice is listed twice")
	}
	if strings.Contains(s, "not marked") {
		t.Error("an unmarked string was extracted")
	}
	if strings.Contains(s, "POT-Creation-Date") {
		t.Error("the template carries a creation date, so extraction would not be reproducible")
	}
	// gettext's own tools accept the template.
	path := filepath.Join(root, "t.pot")
	os.WriteFile(path, pot, 0o644)
	if out, err := exec.Command("msgcat", "-o", os.DevNull, path).CombinedOutput(); err != nil {
		t.Errorf("msgcat rejects the template: %v\n%s", err, out)
	}
	again, err := extract(root, "po/POTFILES")
	if err != nil || string(again) != s {
		t.Errorf("a second extraction differs (err %v)", err)
	}
}

// A computed msgid cannot be translated; the extractor says where it is instead of skipping it.
func TestComputedMsgidRefused(t *testing.T) {
	root := setup(t, "computed")
	_, err := extract(root, "po/POTFILES")
	if err == nil || !strings.Contains(err.Error(), "computed.go:5") || !strings.Contains(err.Error(), "string literals") {
		t.Fatalf("extract of a computed msgid: err = %v, want one naming computed.go:5", err)
	}
}

func TestFormatFlag(t *testing.T) {
	for s, want := range map[string]string{
		"plain": "", "%d rules": "c-format", "%s to %s:%d": "c-format", "%.1f%%": "c-format",
		"%v": "no-c-format", "%q name": "no-c-format", "%s and %v": "no-c-format", "100%": "",
	} {
		if got := formatFlag(s); got != want {
			t.Errorf("formatFlag(%q) = %q, want %q", s, got, want)
		}
	}
}

// Any msgid survives extraction byte for byte: the Go literal it came from and the PO string it becomes
// mean the same text.
func FuzzExtractRoundTrip(f *testing.F) {
	for _, s := range []string{"Allow", "a\nb", `q"uote\`, "tab\tbell\a", "ümlaut „quotes“", "\x01\x7f"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, msgid string) {
		if msgid == "" || !utf8.ValidString(msgid) {
			return
		}
		root := t.TempDir()
		src := "package p\nimport \"github.com/tattlefw/tattle/app/i18n\"\nvar _ = i18n.T(" + strconv.Quote(msgid) + ")\n"
		if err := os.WriteFile(filepath.Join(root, "p.go"), []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
		cat := newCatalog()
		if err := extractGo(cat, root, "p.go"); err != nil {
			t.Fatalf("extractGo: %v", err)
		}
		if len(cat.order) != 1 || cat.order[0] != msgid {
			t.Fatalf("extracted %q, want %q", cat.order, msgid)
		}
		// The PO form, read back as C escapes (which Go's unquoting shares), is the msgid again.
		var b strings.Builder
		writeString(&b, "msgid", msgid)
		var got strings.Builder
		for _, line := range strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n") {
			line = strings.TrimPrefix(line, "msgid ")
			u, err := strconv.Unquote(line)
			if err != nil {
				t.Fatalf("PO line %s does not unquote: %v", line, err)
			}
			got.WriteString(u)
		}
		if got.String() != msgid {
			t.Fatalf("PO form %q reads back as %q, want %q", b.String(), got.String(), msgid)
		}
	})
}
