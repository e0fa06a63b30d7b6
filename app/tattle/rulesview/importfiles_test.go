package rulesview

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tattlefw/tattle/shared/api"
	"github.com/tattlefw/tattle/shared/rules"
)

// The preview's summary line says what tattlectl says (untranslated), for every plural form.
func TestImportSummaryIsTattlectlsLine(t *testing.T) {
	for _, c := range [][7]int{{1, 1, 1, 0, 0, 1, 1}, {2, 9, 3, 4, 2, 5, 0}, {0, 0, 0, 0, 0, 0, 0}, {3, 30000, 29999, 1, 0, 2, 2}} {
		r := rules.ImportReport{Files: c[0], RulesIn: c[1], Exact: c[2], Reported: c[3], Refused: c[4], Imported: c[5], Lists: c[6]}
		s := api.ImportSummary{Files: uint32(c[0]), RulesIn: uint32(c[1]), Exact: uint32(c[2]), Reported: uint32(c[3]),
			Refused: uint32(c[4]), Imported: uint32(c[5]), Lists: uint32(c[6])}
		if got, want := importSummary(s), r.Summary(); got != want {
			t.Errorf("importSummary = %q, tattlectl says %q", got, want)
		}
	}
}

func TestReadImport(t *testing.T) {
	dir := t.TempDir()
	write := func(p, data string) string {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	a := write(filepath.Join(dir, "a", "group.lsrules"), "{}")
	b := write(filepath.Join(dir, "b", "group.lsrules"), "{}")
	c := write(filepath.Join(dir, "c.lsrules"), "{}")
	req, err := readImport(api.ImportRequest{Format: api.FormatLittleSnitch, System: true}, []string{c, b, a})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range req.Files {
		names = append(names, f.Name)
	}
	// Sorted; a base name two files share becomes the path, so report lines say which file.
	if got, want := strings.Join(names, " "), a+" "+b+" c.lsrules"; got != want || !req.System || req.Format != api.FormatLittleSnitch {
		t.Errorf("files %q, want %q (request %+v)", got, want, req)
	}
	if _, err := readImport(api.ImportRequest{Format: api.FormatLittleSnitch}, []string{filepath.Join(dir, "missing")}); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a missing file: %v", err)
	}
	big := filepath.Join(dir, "big.lsrules")
	if err := os.WriteFile(big, make([]byte, api.MaxImportSize/2+1), 0o644); err != nil {
		t.Fatal(err)
	}
	big2 := filepath.Join(dir, "big2.lsrules")
	if err := os.Link(big, big2); err != nil {
		t.Fatal(err)
	}
	if _, err := readImport(api.ImportRequest{Format: api.FormatLittleSnitch}, []string{big, big2}); !errors.Is(err, errTooLarge) {
		t.Errorf("two files over the limit together: %v", err)
	}

	// OpenSnitch: the list directories the rules name are sent with them; one that is not there is left out.
	lists := filepath.Join(dir, "lists", "ips")
	write(filepath.Join(lists, "bad.txt"), "192.0.2.1\n")
	rule := func(name, data string) string {
		return write(filepath.Join(dir, "rules", name+".json"), `{"name":"`+name+`","enabled":true,"action":"deny","duration":"always",
"operator":{"type":"lists","operand":"lists.ips","data":"`+data+`"}}`)
	}
	r1 := rule("001-bad", lists)
	r2 := rule("002-gone", filepath.Join(dir, "nowhere"))
	req, err = readImport(api.ImportRequest{Format: api.FormatOpenSnitch}, []string{r2, r1})
	if err != nil {
		t.Fatal(err)
	}
	if len(req.Files) != 2 || req.Files[0].Name != "001-bad.json" || len(req.ListDirs) != 1 || req.ListDirs[0].Path != lists ||
		len(req.ListDirs[0].Files) != 1 || req.ListDirs[0].Files[0].Name != "bad.txt" || string(req.ListDirs[0].Files[0].Data) != "192.0.2.1\n" {
		t.Errorf("request %+v", req)
	}
}
