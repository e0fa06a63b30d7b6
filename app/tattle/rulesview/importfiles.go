package rulesview

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/tattlefw/tattle/app/i18n"
	"github.com/tattlefw/tattle/shared/api"
	"github.com/tattlefw/tattle/shared/rules"
)

// errTooLarge is a selection larger than one import may be.
var errTooLarge = errors.New("larger than one import may be")

// readImport reads the chosen files into req: each named by its base name (the helper's report says
// name:line:column, which a person finds in the chooser) unless two share one, then by its path; for
// OpenSnitch also the list directories the rules name, where they name them (as tattlectl does without
// --lists). A directory that is not there is left out; the helper then reports the rules that need it.
func readImport(req api.ImportRequest, paths []string) (api.ImportRequest, error) {
	paths = append([]string(nil), paths...)
	sort.Strings(paths)
	bases := map[string]int{}
	for _, p := range paths {
		bases[filepath.Base(p)]++
	}
	total := 0
	add := func(p string) ([]byte, error) {
		data, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		if total += len(data); total > api.MaxImportSize {
			return nil, fmt.Errorf("%s: %w (%d MiB); import fewer files at once", p, errTooLarge, api.MaxImportSize>>20)
		}
		return data, nil
	}
	req.Files = nil
	for _, p := range paths {
		data, err := add(p)
		if err != nil {
			return req, err
		}
		name := filepath.Base(p)
		if bases[name] > 1 {
			name = p
		}
		req.Files = append(req.Files, api.ImportFile{Name: name, Data: data})
	}
	req.ListDirs = nil
	if req.Format != api.FormatOpenSnitch {
		return req, nil
	}
	src := make([]rules.SourceFile, len(req.Files))
	for i, f := range req.Files {
		src[i] = rules.SourceFile{Name: f.Name, Data: f.Data}
	}
	for _, dir := range rules.OpenSnitchListDirs(src) {
		entries, err := os.ReadDir(dir)
		if err != nil {
			continue
		}
		d := api.ImportListDir{Path: dir, Files: []api.ImportFile{}}
		for _, e := range entries {
			if e.IsDir() {
				continue
			}
			data, err := add(filepath.Join(dir, e.Name()))
			if err != nil {
				return req, err
			}
			d.Files = append(d.Files, api.ImportFile{Name: e.Name(), Data: data})
		}
		req.ListDirs = append(req.ListDirs, d)
	}
	return req, nil
}

// importSummary is the summary line of an import in the user's language: in English the words tattlectl
// prints (rules.ImportReport.Summary).
func importSummary(s api.ImportSummary) string {
	n := func(v uint32) int { return int(v) }
	return fmt.Sprintf(i18n.N("%d file", "%d files", n(s.Files)), s.Files) + ", " +
		fmt.Sprintf(i18n.N("%d source rule", "%d source rules", n(s.RulesIn)), s.RulesIn) + ": " +
		fmt.Sprintf(i18n.T("%d imported exactly"), s.Exact) + ", " +
		fmt.Sprintf(i18n.T("%d reported"), s.Reported) + ", " +
		fmt.Sprintf(i18n.T("%d refused"), s.Refused) + "; " +
		fmt.Sprintf(i18n.N("%d Tattle rule", "%d Tattle rules", n(s.Imported)), s.Imported) + ", " +
		fmt.Sprintf(i18n.N("%d named list", "%d named lists", n(s.Lists)), s.Lists)
}

// importSource names what was imported for the message after it: the file, or how many.
func importSource(req api.ImportRequest) string {
	if len(req.Files) == 1 {
		return filepath.Base(req.Files[0].Name)
	}
	return fmt.Sprintf(i18n.N("%d file", "%d files", len(req.Files)), len(req.Files))
}
