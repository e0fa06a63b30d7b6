package service

import (
	"context"
	"fmt"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/tattlefw/tattle/helper/daemon"
	"github.com/tattlefw/tattle/helper/store"
	"github.com/tattlefw/tattle/shared/api"
	"github.com/tattlefw/tattle/shared/rules"
)

// rulesIface implements io.github.tattlefw.Tattle1.Rules.
type rulesIface struct{ s *Service }

// visible reports whether the call (managersSeeAll) may see a rule: system rules and the caller's own;
// everything for those who may manage.
func visible(c *call, r rules.Rule) bool {
	return c.all || r.Owner == nil || *r.Owner == c.uid
}

func (s *Service) mayManage(c caller) bool {
	ok, err := s.allowed(c, api.ActionManageRules, false)
	return err == nil && ok
}

func (i rulesIface) List(c *call) ([]api.Rule, *dbus.Error) {
	out := []api.Rule{}
	for _, e := range i.s.store.Entries() {
		if visible(c, e.Rule) {
			w := api.FromRule(e.Rule, e.Source.File, e.Source.ReadOnly)
			w.Factory = e.Source.Factory
			out = append(out, w)
		}
	}
	return out, nil
}

// fromWire converts and validates rules from a call, filling in times.
func fromWire(ws []api.Rule, now time.Time, limit int) ([]rules.Rule, *dbus.Error) {
	if len(ws) == 0 {
		return nil, invalid("no rules given")
	}
	if len(ws) > limit {
		return nil, invalid("%d rules in one call; the limit is %d: split the request or import a file", len(ws), limit)
	}
	out := make([]rules.Rule, 0, len(ws))
	for n, w := range ws {
		r, ok := w.ToRule()
		if !ok {
			return nil, invalid("rule %d: owner %d is not a uid (use %d for a system rule)", n+1, w.Owner, api.NoOwner)
		}
		if r.Created.IsZero() {
			r.Created = now
		}
		r.Modified = now
		// Made through the app, authenticated: approved. Import marks its own rules afterwards.
		r.Unapproved = false
		r.Learned = false // only learning mode proposes
		if err := r.Validate(); err != nil {
			return nil, invalid("rule %d: %v", n+1, err)
		}
		out = append(out, r)
	}
	return out, nil
}

func owners(rs []rules.Rule) []*uint32 {
	out := make([]*uint32, len(rs))
	for i := range rs {
		out[i] = rs[i].Owner
	}
	return out
}

func (i rulesIface) Add(c *call, ws []api.Rule) ([]string, *dbus.Error) {
	rs, derr := fromWire(ws, time.Now().UTC().Truncate(time.Second), api.MaxRulesPerCall)
	if derr != nil {
		return nil, derr
	}
	if derr := c.requireOwners(owners(rs)); derr != nil {
		return nil, derr
	}
	if err := i.s.store.Add(rs); err != nil {
		return nil, storeError(err)
	}
	ids := make([]string, len(rs))
	for n, r := range rs {
		ids[n] = r.ID
	}
	i.s.log.Info("rules added", "ids", ids, "uid", c.uid)
	return ids, i.s.changed()
}

// find returns the user rule with id, or a D-Bus error (read-only admin rules included).
func (s *Service) find(id string) (rules.Rule, *dbus.Error) {
	r, err := s.store.UserRule(id)
	if err != nil {
		return rules.Rule{}, storeError(err)
	}
	return r, nil
}

func (i rulesIface) Update(c *call, w api.Rule) *dbus.Error {
	old, derr := i.s.find(w.ID)
	if derr != nil {
		return derr
	}
	rs, derr := fromWire([]api.Rule{w}, time.Now().UTC().Truncate(time.Second), 1)
	if derr != nil {
		return derr
	}
	if derr := c.requireOwners([]*uint32{old.Owner, rs[0].Owner}); derr != nil {
		return derr
	}
	err := i.s.store.Modify(w.ID, func(cur rules.Rule) (rules.Rule, error) {
		if !sameOwner(cur.Owner, old.Owner) {
			return cur, fmt.Errorf("rule %q: %w", w.ID, store.ErrChanged)
		}
		next := rs[0]
		next.Created = cur.Created
		return next, nil
	})
	if err != nil {
		return storeError(err)
	}
	return i.s.changed()
}

// authorizeIDs checks that the caller may change the rules ids names (1 to MaxRulesPerCall of them) and
// returns the owner each had when authorized: the change refuses a rule whose owner changed meanwhile.
func (i rulesIface) authorizeIDs(c *call, ids []string) (map[string]*uint32, *dbus.Error) {
	if len(ids) == 0 || len(ids) > api.MaxRulesPerCall {
		return nil, invalid("give between 1 and %d rule ids", api.MaxRulesPerCall)
	}
	var callOwners []*uint32
	authorized := map[string]*uint32{}
	for _, id := range ids {
		r, derr := i.s.find(id)
		if derr != nil {
			return nil, derr
		}
		callOwners = append(callOwners, r.Owner)
		authorized[id] = r.Owner
	}
	if derr := c.requireOwners(callOwners); derr != nil {
		return nil, derr
	}
	return authorized, nil
}

func (i rulesIface) Remove(c *call, ids []string) *dbus.Error {
	authorized, derr := i.authorizeIDs(c, ids)
	if derr != nil {
		return derr
	}
	err := i.s.store.RemoveIf(ids, func(cur rules.Rule) error {
		if !sameOwner(cur.Owner, authorized[cur.ID]) {
			return fmt.Errorf("rule %q: %w", cur.ID, store.ErrChanged)
		}
		return nil
	})
	if err != nil {
		return storeError(err)
	}
	i.s.log.Info("rules removed", "ids", ids, "uid", c.uid)
	return i.s.changed()
}

func (i rulesIface) SetEnabled(c *call, id string, enabled bool) *dbus.Error {
	if i.s.store.IsFactory(id) {
		// A factory rule covers every user: switching it is an administrator's change.
		if derr := c.requireOwners([]*uint32{nil}); derr != nil {
			return derr
		}
		if err := i.s.store.SetFactoryEnabled(id, enabled); err != nil {
			return storeError(err)
		}
		i.s.log.Info("factory rule switched", "id", id, "enabled", enabled, "uid", c.uid)
		return i.s.changed()
	}
	r, derr := i.s.find(id)
	if derr != nil {
		return derr
	}
	if derr := c.requireOwners([]*uint32{r.Owner}); derr != nil {
		return derr
	}
	err := i.s.store.Modify(id, func(cur rules.Rule) (rules.Rule, error) {
		if !sameOwner(cur.Owner, r.Owner) {
			return cur, fmt.Errorf("rule %q: %w", id, store.ErrChanged)
		}
		cur.Enabled = enabled
		if enabled && cur.Learned { // switching a proposal on approves it (the same authorization)
			cur.Learned, cur.Unapproved = false, false
		}
		cur.Modified = time.Now().UTC().Truncate(time.Second)
		return cur, nil
	})
	if err != nil {
		return storeError(err)
	}
	return i.s.changed()
}

func (i rulesIface) Import(c *call, format string, data []byte, system bool) (uint32, []string, *dbus.Error) {
	sum, report, derr := i.importFiles(c, api.ImportRequest{Format: format, Files: []api.ImportFile{{Name: "import", Data: data}}, System: system})
	if derr != nil {
		return 0, nil, derr
	}
	return sum.Imported, report, nil
}

func (i rulesIface) ImportFiles(c *call, req api.ImportRequest) (api.ImportSummary, []string, *dbus.Error) {
	return i.importFiles(c, req)
}

// importFiles converts the request's files and stores the rules and the named lists they need as one
// transaction: everything is checked first, the lists are written and loaded, then the rules are added; if
// adding fails the lists are removed again. With DryRun nothing is written.
func (i rulesIface) importFiles(c *call, req api.ImportRequest) (api.ImportSummary, []string, *dbus.Error) {
	var none api.ImportSummary
	size, nfiles := 0, len(req.Files)
	for _, f := range req.Files {
		size += len(f.Data)
	}
	for _, d := range req.ListDirs {
		nfiles += len(d.Files)
		for _, f := range d.Files {
			size += len(f.Data)
		}
	}
	if size > api.MaxImportSize {
		return none, nil, invalid("%d bytes to import; the limit is %d", size, api.MaxImportSize)
	}
	if len(req.Files) == 0 || nfiles > api.MaxImportFiles {
		return none, nil, invalid("give between 1 and %d files to import", api.MaxImportFiles)
	}
	// Authorize before parsing: parsing a large file is the expensive part.
	uid := c.uid
	owner := &uid
	if req.System {
		owner = nil
	}
	if derr := c.requireOwners([]*uint32{owner}); derr != nil {
		return none, nil, derr
	}
	now := time.Now().UTC().Truncate(time.Second)
	opts := rules.ImportOptions{Owner: owner, Now: now}
	res, derr := convertImport(req, opts)
	if derr != nil {
		return none, nil, derr
	}
	report := nonNil(res.Report.Skipped)
	rs := res.Rules

	// Lists get names no defined list has; the rules follow the renames.
	var newLists []daemon.NewList
	if len(res.Lists) > 0 && i.s.daemon == nil {
		return none, nil, invalid("this import needs named lists, which this helper cannot keep (it runs without the rule daemon)")
	}
	rename := map[string]string{}
	takenList := map[string]bool{}
	for _, l := range res.Lists {
		name := l.Name
		for k := 2; takenList[name] || i.s.daemon.HasList(name); k++ {
			name = fmt.Sprintf("%s-%d", l.Name, k)
		}
		takenList[name] = true
		if name != l.Name {
			rename["list:"+l.Name] = "list:" + name
		}
		newLists = append(newLists, daemon.NewList{Name: name, Exact: l.Exact, Entries: l.Entries, Source: l.Source})
	}
	taken := map[string]bool{}
	for n := range rs {
		if to, ok := rename[rs[n].Remote]; ok {
			rs[n].Remote = to
		}
		if !req.System {
			uid := c.uid
			rs[n].Owner = &uid
		}
		// Imported ids come from the source (group names, rule names), so another import may have used them:
		// such a rule gets the next free id instead of failing the whole import.
		id := rs[n].ID
		for k := 2; taken[id] || i.s.store.HasID(id); k++ {
			id = fmt.Sprintf("%s-%d", rs[n].ID, k)
		}
		rs[n].ID = id
		taken[id] = true
	}
	sum := api.ImportSummary{Files: uint32(res.Report.Files), RulesIn: uint32(res.Report.RulesIn), Exact: uint32(res.Report.Exact),
		Reported: uint32(res.Report.Reported), Refused: uint32(res.Report.Refused), Imported: uint32(len(rs)), Lists: uint32(len(newLists))}
	res.Report.Imported, res.Report.Lists = len(rs), len(newLists)
	sum.Summary = res.Report.Summary()
	if len(rs) == 0 {
		sum.Lists = 0
		return sum, report, nil
	}
	ws := make([]api.Rule, len(rs))
	for n, r := range rs {
		ws[n] = api.FromRule(r, "", false)
	}
	if len(ws) > rules.MaxRulesPerFile {
		return none, nil, invalid("this import makes %d rules, more than the %d the rule store holds; import fewer files at once", len(ws), rules.MaxRulesPerFile)
	}
	valid, derr := fromWire(ws, now, rules.MaxRulesPerFile)
	if derr != nil {
		return none, nil, derr
	}
	if derr := c.requireOwners(owners(valid)); derr != nil {
		return none, nil, derr
	}
	if req.DryRun {
		sum.Preview = make([]api.Rule, len(valid))
		for n, r := range valid {
			r.Unapproved = true // as the real import stores it
			sum.Preview[n] = api.FromRule(r, "", false)
		}
		return sum, report, nil
	}
	undo := func() {}
	if len(newLists) > 0 {
		u, err := i.s.daemon.CreateLists(context.Background(), newLists)
		if err != nil {
			return none, nil, failed("create the import's named lists", err)
		}
		undo = u
	}
	// Rules from outside the app: in force, but shown as not approved until their owner approves them.
	for n := range valid {
		valid[n].Unapproved = true
		valid[n].Learned = false
	}
	if err := i.s.store.Add(valid); err != nil {
		undo()
		return none, nil, storeError(err)
	}
	i.s.log.Info("rules imported", "format", req.Format, "rules", len(valid), "lists", len(newLists), "uid", c.uid)
	return sum, report, i.s.changed()
}

// convertImport turns the request's files into rules and lists. Input that is not of the format at all is an
// error naming the file, line and column.
func convertImport(req api.ImportRequest, opts rules.ImportOptions) (*rules.ImportResult, *dbus.Error) {
	switch req.Format {
	case api.FormatTattle:
		out := &rules.ImportResult{}
		for _, f := range req.Files {
			file, err := rules.Parse(f.Name, f.Data)
			if err != nil {
				return nil, invalid("%v", err)
			}
			out.Rules = append(out.Rules, file.Rules...)
			out.Report.Files++
			out.Report.RulesIn += len(file.Rules)
			out.Report.Exact += len(file.Rules)
		}
		return out, nil
	case api.FormatLittleSnitch:
		out := &rules.ImportResult{}
		for _, f := range req.Files {
			res, err := rules.ImportLittleSnitchFile(f.Name, f.Data, opts)
			if err != nil {
				return nil, invalid("%v", err)
			}
			out.Rules = append(out.Rules, res.Rules...)
			out.Lists = append(out.Lists, res.Lists...)
			r := &out.Report
			r.Files += res.Report.Files
			r.RulesIn += res.Report.RulesIn
			r.Exact += res.Report.Exact
			r.Reported += res.Report.Reported
			r.Refused += res.Report.Refused
			for _, line := range res.Report.Skipped {
				if len(req.Files) > 1 {
					line = f.Name + ": " + line
				}
				r.Skipped = append(r.Skipped, line)
			}
		}
		return out, nil
	case api.FormatOpenSnitch:
		files := make([]rules.SourceFile, len(req.Files))
		for n, f := range req.Files {
			files[n] = rules.SourceFile{Name: f.Name, Data: f.Data}
		}
		var dirs []rules.ListDir
		for _, d := range req.ListDirs {
			ld := rules.ListDir{Path: d.Path}
			for _, f := range d.Files {
				ld.Files = append(ld.Files, rules.SourceFile{Name: f.Name, Data: f.Data})
			}
			dirs = append(dirs, ld)
		}
		res, err := rules.ImportOpenSnitchSet(files, dirs, opts)
		if err != nil {
			return nil, invalid("%v", err)
		}
		return res, nil
	}
	return nil, invalid("unknown format %q: use %s, %s or %s", req.Format, api.FormatTattle, api.FormatLittleSnitch, api.FormatOpenSnitch)
}

// Approve marks imported rules approved: their owner has looked at them (same authorization as changing
// them, so the user's own password for their own rules).
func (i rulesIface) Approve(c *call, ids []string) *dbus.Error {
	authorized, derr := i.authorizeIDs(c, ids)
	if derr != nil {
		return derr
	}
	for _, id := range ids {
		err := i.s.store.Modify(id, func(cur rules.Rule) (rules.Rule, error) {
			if !sameOwner(cur.Owner, authorized[id]) {
				return cur, fmt.Errorf("rule %q: %w", id, store.ErrChanged)
			}
			cur.Unapproved = false
			if cur.Learned { // a proposal of learning mode: approving it puts it in force
				cur.Learned, cur.Enabled = false, true
			}
			return cur, nil
		})
		if err != nil {
			return storeError(err)
		}
	}
	i.s.log.Info("rules approved", "ids", ids, "uid", c.uid)
	return i.s.changed()
}

func sameOwner(a, b *uint32) bool {
	return (a == nil) == (b == nil) && (a == nil || *a == *b)
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func (i rulesIface) Export(c *call, format string) ([]byte, []string, *dbus.Error) {
	var rs []rules.Rule
	for _, e := range i.s.store.Entries() {
		if visible(c, e.Rule) {
			rs = append(rs, e.Rule)
		}
	}
	switch format {
	case api.FormatTattle:
		data, err := rules.Marshal(&rules.File{Version: rules.FormatVersion, Name: "Tattle export", Rules: nonNilRules(rs)})
		if err != nil {
			return nil, nil, failed("export", err)
		}
		return data, []string{}, nil
	case api.FormatLittleSnitch:
		data, rep, err := rules.ExportLittleSnitch(rs)
		if err != nil {
			return nil, nil, failed("export", err)
		}
		return data, nonNil(rep.Skipped), nil
	}
	return nil, nil, invalid("cannot export to %q: use %s or %s", format, api.FormatTattle, api.FormatLittleSnitch)
}

func nonNilRules(rs []rules.Rule) []rules.Rule {
	if rs == nil {
		return []rules.Rule{}
	}
	return rs
}

func (i rulesIface) Problems(*call) ([]api.Problem, *dbus.Error) {
	out := []api.Problem{}
	for _, p := range i.s.store.Problems() {
		out = append(out, api.Problem{File: p.File, Error: p.Error, Since: p.Since.Unix()})
	}
	return out, nil
}
