package service

import (
	"fmt"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/tattlefw/tattle/helper/store"
	"github.com/tattlefw/tattle/shared/api"
	"github.com/tattlefw/tattle/shared/rules"
)

// rulesIface implements io.github.tattlefw.Tattle1.Rules.
type rulesIface struct{ s *Service }

// visible reports whether c may see a rule: system rules and c's own; everything for those who may manage.
func (s *Service) visible(c caller, manage bool, r rules.Rule) bool {
	return manage || r.Owner == nil || *r.Owner == c.uid
}

func (s *Service) mayManage(c caller) bool {
	ok, err := s.allowed(c, api.ActionManageRules, false)
	return err == nil && ok
}

func (i rulesIface) List(msg dbus.Message, sender dbus.Sender) ([]api.Rule, *dbus.Error) {
	c, release, derr := i.s.caller(msg, sender)
	if derr != nil {
		return nil, derr
	}
	defer release()
	manage := i.s.mayManage(c)
	out := []api.Rule{}
	for _, e := range i.s.store.Entries() {
		if i.s.visible(c, manage, e.Rule) {
			out = append(out, api.FromRule(e.Rule, e.Source.File, e.Source.ReadOnly))
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

func (i rulesIface) Add(msg dbus.Message, sender dbus.Sender, ws []api.Rule) ([]string, *dbus.Error) {
	c, release, derr := i.s.caller(msg, sender)
	if derr != nil {
		return nil, derr
	}
	defer release()
	rs, derr := fromWire(ws, time.Now().UTC().Truncate(time.Second), api.MaxRulesPerCall)
	if derr != nil {
		return nil, derr
	}
	if derr := i.s.requireForOwners(c, owners(rs)); derr != nil {
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

func (i rulesIface) Update(msg dbus.Message, sender dbus.Sender, w api.Rule) *dbus.Error {
	c, release, derr := i.s.caller(msg, sender)
	if derr != nil {
		return derr
	}
	defer release()
	old, derr := i.s.find(w.ID)
	if derr != nil {
		return derr
	}
	rs, derr := fromWire([]api.Rule{w}, time.Now().UTC().Truncate(time.Second), 1)
	if derr != nil {
		return derr
	}
	if derr := i.s.requireForOwners(c, []*uint32{old.Owner, rs[0].Owner}); derr != nil {
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

func (i rulesIface) Remove(msg dbus.Message, sender dbus.Sender, ids []string) *dbus.Error {
	c, release, derr := i.s.caller(msg, sender)
	if derr != nil {
		return derr
	}
	defer release()
	if len(ids) == 0 || len(ids) > api.MaxRulesPerCall {
		return invalid("give between 1 and %d rule ids", api.MaxRulesPerCall)
	}
	var callOwners []*uint32
	authorized := map[string]*uint32{}
	for _, id := range ids {
		r, derr := i.s.find(id)
		if derr != nil {
			return derr
		}
		callOwners = append(callOwners, r.Owner)
		authorized[id] = r.Owner
	}
	if derr := i.s.requireForOwners(c, callOwners); derr != nil {
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

func (i rulesIface) SetEnabled(msg dbus.Message, sender dbus.Sender, id string, enabled bool) *dbus.Error {
	c, release, derr := i.s.caller(msg, sender)
	if derr != nil {
		return derr
	}
	defer release()
	r, derr := i.s.find(id)
	if derr != nil {
		return derr
	}
	if derr := i.s.requireForOwners(c, []*uint32{r.Owner}); derr != nil {
		return derr
	}
	err := i.s.store.Modify(id, func(cur rules.Rule) (rules.Rule, error) {
		if !sameOwner(cur.Owner, r.Owner) {
			return cur, fmt.Errorf("rule %q: %w", id, store.ErrChanged)
		}
		cur.Enabled = enabled
		cur.Modified = time.Now().UTC().Truncate(time.Second)
		return cur, nil
	})
	if err != nil {
		return storeError(err)
	}
	return i.s.changed()
}

func (i rulesIface) Import(msg dbus.Message, sender dbus.Sender, format string, data []byte, system bool) (uint32, []string, *dbus.Error) {
	c, release, derr := i.s.caller(msg, sender)
	if derr != nil {
		return 0, nil, derr
	}
	defer release()
	if len(data) > api.MaxImportSize {
		return 0, nil, invalid("%d bytes to import; the limit is %d", len(data), api.MaxImportSize)
	}
	// Authorize before parsing: parsing a large file is the expensive part.
	uid := c.uid
	owner := &uid
	if system {
		owner = nil
	}
	if derr := i.s.requireForOwners(c, []*uint32{owner}); derr != nil {
		return 0, nil, derr
	}
	now := time.Now().UTC().Truncate(time.Second)
	var (
		rs      []rules.Rule
		skipped []string
	)
	switch format {
	case api.FormatTattle:
		f, err := rules.Parse("import", data)
		if err != nil {
			return 0, nil, invalid("%v", err)
		}
		rs = f.Rules
	case api.FormatLittleSnitch, api.FormatOpenSnitch:
		imp := rules.ImportLittleSnitch
		if format == api.FormatOpenSnitch {
			imp = rules.ImportOpenSnitch
		}
		var rep rules.ImportReport
		var err error
		rs, rep, err = imp("import", data, now)
		if err != nil {
			return 0, nil, invalid("%v", err)
		}
		skipped = rep.Skipped
	default:
		return 0, nil, invalid("unknown format %q: use %s, %s or %s", format, api.FormatTattle, api.FormatLittleSnitch, api.FormatOpenSnitch)
	}
	if len(rs) == 0 {
		return 0, nonNil(skipped), nil
	}
	taken := map[string]bool{}
	for n := range rs {
		if !system {
			uid := c.uid
			rs[n].Owner = &uid
		}
		// Imported ids come from the source (group names, rule names), so another import may have used them:
		// such a rule gets the next free id instead of failing the whole import.
		id := rs[n].ID
		for k := 2; taken[id] || i.s.store.HasID(id); k++ {
			id = fmt.Sprintf("%s-%d", rs[n].ID, k)
		}
		if id != rs[n].ID {
			skipped = append(skipped, fmt.Sprintf("rule %q was imported as %q: the id was taken", rs[n].ID, id))
			rs[n].ID = id
		}
		taken[id] = true
	}
	ws := make([]api.Rule, len(rs))
	for n, r := range rs {
		ws[n] = api.FromRule(r, "", false)
	}
	valid, derr := fromWire(ws, now, rules.MaxRulesPerFile)
	if derr != nil {
		return 0, nil, derr
	}
	if derr := i.s.requireForOwners(c, owners(valid)); derr != nil {
		return 0, nil, derr
	}
	if err := i.s.store.Add(valid); err != nil {
		return 0, nil, storeError(err)
	}
	return uint32(len(valid)), nonNil(skipped), i.s.changed()
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

func (i rulesIface) Export(msg dbus.Message, sender dbus.Sender, format string) ([]byte, []string, *dbus.Error) {
	c, release, derr := i.s.caller(msg, sender)
	if derr != nil {
		return nil, nil, derr
	}
	defer release()
	manage := i.s.mayManage(c)
	var rs []rules.Rule
	for _, e := range i.s.store.Entries() {
		if i.s.visible(c, manage, e.Rule) {
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

func (i rulesIface) Problems() ([]api.Problem, *dbus.Error) {
	out := []api.Problem{}
	for _, p := range i.s.store.Problems() {
		out = append(out, api.Problem{File: p.File, Error: p.Error, Since: p.Since.Unix()})
	}
	return out, nil
}
