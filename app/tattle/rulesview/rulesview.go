// Package rulesview is the Rules page: the helper's rules grouped by application (the factory rules Tattle
// ships in a group of their own: switched off, never deleted or edited), with a filter, an enable toggle per
// rule, an add/edit dialog that validates with shared/rules exactly as the helper does, delete,
// and import/export through the desktop's file chooser. Changes the helper refuses (no polkit agent to ask
// for an administrator's password, an invalid rule) are shown in the page's message bar. Every change acts
// only on the user's own click or key (userinput.Gate), never on a button another program pressed.
package rulesview

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/gotk3/gotk3/glib"
	"github.com/gotk3/gotk3/gtk"

	"github.com/tattlefw/tattle/app/client"
	"github.com/tattlefw/tattle/app/i18n"
	"github.com/tattlefw/tattle/app/tattle/desktop"
	"github.com/tattlefw/tattle/app/tattle/ui"
	"github.com/tattlefw/tattle/app/tattle/userinput"
	"github.com/tattlefw/tattle/shared/api"
)

const (
	colIcon = iota
	colName
	colEnabled
	colToggleVisible
	colRemote
	colPort
	colProto
	colAction
	colDuration
	colScope
	colNote
	colID
	colVisible
)

// Page is the Rules page.
type Page struct {
	Widget *gtk.Box

	ctx    context.Context
	cl     *client.Client
	gate   *userinput.Gate
	parent *gtk.Window
	msg    *ui.MessageBar
	store  *gtk.TreeStore
	view   *gtk.TreeView
	search *gtk.SearchEntry
	rules  map[string]api.Rule
	uid    uint32
	// edit and del act on the selected rule; a factory rule can only be switched, so they go insensitive.
	editButton, delButton *gtk.Button
	// approval offers to approve the user's rules that arrived from outside the app (imports): they are in
	// force, marked "not approved" until their owner approves them here (with authentication), so a rule a
	// program slipped in is seen.
	entries       *desktop.Index // applications' names and icons, as the monitor shows them
	approval      *gtk.InfoBar
	approvalLabel *gtk.Label
	unapproved    []string // IDs of the user's unapproved rules shown
	// learnBar offers to approve (enable) or discard the proposals of learning mode, shown in their own
	// "Learned" group, disabled until approved.
	learnBar   *gtk.InfoBar
	learnLabel *gtk.Label
	learned    []string // IDs of the proposals the user may approve
}

// New builds the page. parent is the window dialogs belong to; gate decides whether a change is the user's.
func New(ctx context.Context, cl *client.Client, gate *userinput.Gate, parent *gtk.Window, entries *desktop.Index) *Page {
	p := &Page{ctx: ctx, cl: cl, gate: gate, parent: parent, entries: entries, msg: ui.NewMessageBar(), rules: map[string]api.Rule{}, uid: uint32(os.Getuid())}
	p.store = ui.Must(gtk.TreeStoreNew(glib.TYPE_STRING, glib.TYPE_STRING, glib.TYPE_BOOLEAN, glib.TYPE_BOOLEAN,
		glib.TYPE_STRING, glib.TYPE_STRING, glib.TYPE_STRING, glib.TYPE_STRING, glib.TYPE_STRING, glib.TYPE_STRING,
		glib.TYPE_STRING, glib.TYPE_STRING, glib.TYPE_BOOLEAN))
	filter := ui.Must(p.store.ToTreeModel().FilterNew(nil))
	filter.SetVisibleColumn(colVisible)
	p.view = ui.Must(gtk.TreeViewNewWithModel(filter))
	ui.SetAccessible(p.view, i18n.T("Rules"), "")

	tr := ui.Must(gtk.CellRendererToggleNew())
	tc := ui.Must(gtk.TreeViewColumnNewWithAttribute(i18n.T("On"), tr, "active", colEnabled))
	tc.AddAttribute(tr, "visible", colToggleVisible)
	tr.Connect("toggled", func(_ *gtk.CellRendererToggle, path string) {
		fp, err := gtk.TreePathNewFromString(path)
		if err != nil {
			return
		}
		it, err := filter.GetIter(fp)
		if err != nil {
			return
		}
		id := p.idAt(filter.ToTreeModel(), it)
		p.gate.Do(p.msg, "switch a rule", func() { p.toggle(id) }, nil)
	})

	name := ui.Must(gtk.TreeViewColumnNew())
	name.SetTitle(i18n.T("Application / Remote"))
	name.SetExpand(true)
	name.SetMinWidth(230) // room for the program of a factory rule and its destination
	ir := ui.Must(gtk.CellRendererPixbufNew())
	name.PackStart(ir, false)
	name.AddAttribute(ir, "icon-name", colIcon)
	nr := ui.Must(gtk.CellRendererTextNew())
	nr.SetProperty("ellipsize", 3)
	name.PackStart(nr, true)
	name.AddAttribute(nr, "text", colName)
	p.view.AppendColumn(name)
	p.view.AppendColumn(tc)
	p.view.SetExpanderColumn(name)
	for _, c := range []struct {
		title string
		col   int
	}{{i18n.T("Port"), colPort}, {i18n.T("Protocol"), colProto}, {i18n.T("Action"), colAction},
		{i18n.T("Duration"), colDuration}, {i18n.T("Applies to"), colScope}, {i18n.T("Note"), colNote}} {
		r := ui.Must(gtk.CellRendererTextNew())
		col := ui.Must(gtk.TreeViewColumnNewWithAttribute(c.title, r, "text", c.col))
		col.SetResizable(true)
		p.view.AppendColumn(col)
	}
	p.view.Connect("row-activated", func() { p.edit() })

	p.search = ui.Must(gtk.SearchEntryNew())
	p.search.SetPlaceholderText(i18n.T("Filter rules"))
	p.search.SetHExpand(true)
	p.search.Connect("search-changed", func() { p.applyFilter() })

	button := func(icon, tip string, f func()) *gtk.Button { return ui.IconButton(icon, tip, tip, f) }
	bar := ui.Must(gtk.BoxNew(gtk.ORIENTATION_HORIZONTAL, 6))
	ui.SetMargins(bar, 6)
	bar.PackStart(p.search, true, true, 0)
	bar.PackStart(button("list-add-symbolic", i18n.T("Add rule"), func() { p.add() }), false, false, 0)
	p.editButton = button("document-edit-symbolic", i18n.T("Edit rule"), func() { p.edit() })
	p.delButton = button("list-remove-symbolic", i18n.T("Delete rule"), func() { p.remove() })
	bar.PackStart(p.editButton, false, false, 0)
	bar.PackStart(p.delButton, false, false, 0)
	if sel, err := p.view.GetSelection(); err == nil {
		sel.Connect("changed", func() {
			r, ok := p.rules[p.selectedID()]
			p.editButton.SetSensitive(!(ok && r.Factory))
			p.delButton.SetSensitive(!(ok && r.Factory))
		})
	}
	bar.PackStart(button("document-open-symbolic", i18n.T("Import rules"), func() { p.importRules() }), false, false, 0)
	bar.PackStart(button("document-save-symbolic", i18n.T("Export rules"), func() { p.exportRules() }), false, false, 0)

	scroll := ui.Must(gtk.ScrolledWindowNew(nil, nil))
	scroll.SetVExpand(true)
	scroll.Add(p.view)
	p.Widget = ui.Must(gtk.BoxNew(gtk.ORIENTATION_VERTICAL, 0))
	p.Widget.PackStart(p.msg.Bar, false, false, 0)
	p.approval = ui.Must(gtk.InfoBarNew())
	p.approval.SetMessageType(gtk.MESSAGE_WARNING)
	p.approvalLabel = ui.Must(gtk.LabelNew(""))
	p.approvalLabel.SetLineWrap(true)
	p.approvalLabel.SetXAlign(0)
	if content, err := p.approval.GetContentArea(); err == nil {
		content.Add(p.approvalLabel)
	}
	p.approval.AddButton(i18n.T("Approve"), gtk.RESPONSE_ACCEPT)
	p.approval.Connect("response", func(_ *gtk.InfoBar, resp gtk.ResponseType) {
		if resp == gtk.RESPONSE_ACCEPT {
			p.gate.Do(p.msg, "approve imported rules", p.approve, nil)
		}
	})
	p.approval.SetNoShowAll(true)
	p.Widget.PackStart(p.approval, false, false, 0)
	p.learnBar = ui.Must(gtk.InfoBarNew())
	p.learnBar.SetMessageType(gtk.MESSAGE_QUESTION)
	p.learnLabel = ui.Must(gtk.LabelNew(""))
	p.learnLabel.SetLineWrap(true)
	p.learnLabel.SetXAlign(0)
	if content, err := p.learnBar.GetContentArea(); err == nil {
		content.Add(p.learnLabel)
	}
	p.learnBar.AddButton(i18n.T("Approve the selected program's"), gtk.RESPONSE_APPLY)
	p.learnBar.AddButton(i18n.T("Approve all"), gtk.RESPONSE_ACCEPT)
	p.learnBar.AddButton(i18n.T("Discard all"), gtk.RESPONSE_REJECT)
	p.learnBar.Connect("response", func(_ *gtk.InfoBar, resp gtk.ResponseType) {
		switch resp {
		case gtk.RESPONSE_APPLY:
			p.gate.Do(p.msg, "approve a program's learned rules", p.approveLearnedProgram, nil)
		case gtk.RESPONSE_ACCEPT:
			p.gate.Do(p.msg, "approve the learned rules", func() { p.reviewLearned(true) }, nil)
		case gtk.RESPONSE_REJECT:
			p.gate.Do(p.msg, "discard the learned rules", func() { p.reviewLearned(false) }, nil)
		}
	})
	p.learnBar.SetNoShowAll(true)
	p.Widget.PackStart(p.learnBar, false, false, 0)
	p.Widget.PackStart(bar, false, false, 0)
	p.Widget.PackStart(scroll, true, true, 0)
	return p
}

// Watch reloads the list now and whenever the helper's rules change, until the page's context ends.
func (p *Page) Watch() {
	p.Reload()
	ch, err := p.cl.WatchChanged(p.ctx)
	if err != nil {
		p.msg.Show(gtk.MESSAGE_WARNING, i18n.T("Rule changes made elsewhere will not show until you reopen Tattle: ")+err.Error())
		return
	}
	go func() {
		for range ch {
			glib.IdleAdd(func() { p.Reload() })
		}
	}()
}

// Reload fetches the rules.
func (p *Page) Reload() {
	ui.Background(func() ([]api.Rule, error) { return p.cl.Rules(p.ctx) }, func(rs []api.Rule, err error) {
		if err != nil {
			p.msg.Show(gtk.MESSAGE_ERROR, i18n.T("Cannot list the rules: ")+err.Error())
			return
		}
		p.show(rs)
	})
}

// Count is the number of rules shown.
func (p *Page) Count() int { return len(p.rules) }

func (p *Page) show(rs []api.Rule) {
	p.store.Clear()
	p.rules = map[string]api.Rule{}
	groups := map[string][]api.Rule{}
	var factory, learned []api.Rule
	for _, r := range rs {
		p.rules[r.ID] = r
		if r.Factory {
			factory = append(factory, r)
			continue
		}
		if r.Learned {
			learned = append(learned, r)
			continue
		}
		groups[r.Application] = append(groups[r.Application], r)
	}
	p.showFactory(factory)
	p.showLearned(learned)
	p.showApproval(rs)
	apps := make([]string, 0, len(groups))
	for a := range groups {
		apps = append(apps, a)
	}
	sort.Strings(apps)
	for _, a := range apps {
		parent := p.addGroupRow(p.appLabel(a))
		for _, r := range groups[a] {
			icon := "object-select-symbolic"
			if r.Action == "deny" {
				icon = "action-unavailable-symbolic"
			}
			scope := scopeLabel(r.Owner, p.uid)
			if r.ReadOnly {
				scope += " · " + i18n.T("administrator's file")
			}
			if r.Unapproved {
				scope += " · " + i18n.T("not approved")
				icon = "dialog-warning-symbolic"
			}
			p.addRuleRow(parent, r, icon, remoteLabel(r.Remote), scope, r.Note)
		}
	}
	p.view.ExpandAll()
	p.applyFilter()
}

// appLabel names a rule's application as the monitor names it (its desktop entry's name and icon, else its
// file's name), with the rule's own identity beside it: a name alone could hide which file it is.
func (p *Page) appLabel(app string) (label, icon string) {
	if app == "any" {
		return i18n.T("Any application"), "application-x-executable"
	}
	name, icon := p.entries.App(app)
	return name + "  (" + app + ")", icon
}

// showApproval offers to approve the user's own unapproved rules (system rules are an administrator's, who
// approves them with tattlectl).
func (p *Page) showApproval(rs []api.Rule) {
	p.unapproved = p.unapproved[:0]
	for _, r := range rs {
		if r.Unapproved && !r.Learned && r.Owner == int64(p.uid) && !r.ReadOnly {
			p.unapproved = append(p.unapproved, r.ID)
		}
	}
	n := len(p.unapproved)
	offer(p.approval, p.approvalLabel, n, fmt.Sprintf(i18n.N(
		"%d rule came from outside Tattle (an import) and is in force but not approved. Check it below (marked \"not approved\"), then approve it.",
		"%d rules came from outside Tattle (an import) and are in force but not approved. Check them below (marked \"not approved\"), then approve them.", n), n))
}

// offer shows bar, its label saying text, when there are n > 0 rules to act on, and hides it when there are none.
func offer(bar *gtk.InfoBar, label *gtk.Label, n int, text string) {
	if n == 0 {
		bar.Hide()
		return
	}
	label.SetText(text)
	// Not ShowAll: it does nothing to a widget marked no-show-all.
	label.Show()
	bar.Show()
}

// approve approves the unapproved rules shown (polkit asks for the user's password).
func (p *Page) approve() { p.approveIDs(append([]string(nil), p.unapproved...)) }

// approveIDs approves rules (imported ones, learned proposals) in the background and reports the outcome.
func (p *Page) approveIDs(ids []string) {
	ui.Background(func() (struct{}, error) { return struct{}{}, p.cl.Approve(p.ctx, ids) },
		func(_ struct{}, err error) { p.report(i18n.T("Approving the rules"), err) })
}

// showLearned puts learning mode's proposals in a group of their own, each row naming its program, and offers
// to approve or discard the user's (root's: the system's too).
func (p *Page) showLearned(rs []api.Rule) {
	p.learned = p.learned[:0]
	if len(rs) == 0 {
		p.learnBar.Hide()
		return
	}
	parent := p.addGroupRow(fmt.Sprintf(i18n.N("Learned (%d proposal)", "Learned (%d proposals)", len(rs)), len(rs)),
		"dialog-information-symbolic")
	for _, r := range rs {
		app := filepath.Base(r.Application)
		if r.Via != "" {
			app += " " + filepath.Base(r.Via)
		}
		scope := scopeLabel(r.Owner, p.uid) + " · " + i18n.T("learned, not approved")
		p.addRuleRow(parent, r, "dialog-information-symbolic", app+" → "+r.Remote, scope, r.Application)
		if r.Owner == int64(p.uid) || (p.uid == 0 && r.Owner == api.NoOwner) {
			p.learned = append(p.learned, r.ID)
		}
	}
	n := len(p.learned)
	offer(p.learnBar, p.learnLabel, n, fmt.Sprintf(i18n.N(
		"Learning mode proposed %d rule (group \"Learned\"), disabled until you approve it. Approve it to enable it, or discard it.",
		"Learning mode proposed %d rules (group \"Learned\"), disabled until you approve them. Approve them to enable them, or discard them.", n), n))
}

// approveLearnedProgram approves the proposals of the program whose proposal is selected (the same
// executable and script), leaving the other programs' for review.
func (p *Page) approveLearnedProgram() {
	sel, ok := p.rules[p.selectedID()]
	if !ok || !sel.Learned {
		p.msg.Show(gtk.MESSAGE_INFO, i18n.T("Select a proposal in the group \"Learned\" first: its program's proposals are approved."))
		return
	}
	var ids []string
	for _, id := range p.learned {
		if r := p.rules[id]; r.Application == sel.Application && r.Via == sel.Via {
			ids = append(ids, id)
		}
	}
	p.approveIDs(ids)
}

// reviewLearned approves (enables) or discards the proposals shown (polkit asks for the user's password).
func (p *Page) reviewLearned(approve bool) {
	ids := append([]string(nil), p.learned...)
	if approve {
		p.approveIDs(ids)
		return
	}
	ui.Background(func() (struct{}, error) { return struct{}{}, p.cl.RemoveRules(p.ctx, ids) },
		func(_ struct{}, err error) { p.report(i18n.T("Discarding the proposals"), err) })
}

// showFactory puts the factory rules first, in a group of their own: each row names its program, since the
// group is not one application's.
func (p *Page) showFactory(rs []api.Rule) {
	if len(rs) == 0 {
		return
	}
	parent := p.addGroupRow(i18n.T("Factory rules"), "emblem-system-symbolic")
	for _, r := range rs {
		app := r.Application
		if app == "any" {
			app = i18n.T("Any application")
		} else if r.Via != "" {
			app = filepath.Base(app) + " " + filepath.Base(r.Via)
		} else {
			app = filepath.Base(app)
		}
		// The program names the row; the destination only when the rule has one.
		label := app
		if r.Remote != "any" {
			label += " → " + r.Remote
		}
		scope := i18n.T("Everyone (system)") + " · " + fmt.Sprintf(i18n.T("Factory (%s)"), filepath.Base(r.Source))
		p.addRuleRow(parent, r, "object-select-symbolic", label, scope, strings.TrimPrefix(r.Note, "Factory: "))
	}
}

// addGroupRow adds a top-level row, labelled and with icon, for a group of rules (no switch of its own), and
// returns it to add the rules under.
func (p *Page) addGroupRow(label, icon string) *gtk.TreeIter {
	parent := &gtk.TreeIter{}
	p.store.InsertWithValues(parent, nil, -1, []int{colIcon, colName, colToggleVisible, colVisible},
		[]any{icon, label, false, true})
	return parent
}

// addRuleRow adds rule r under parent, shown as icon and name, with its scope and note; the other columns
// are the rule's own fields, the same in every group.
func (p *Page) addRuleRow(parent *gtk.TreeIter, r api.Rule, icon, name, scope, note string) {
	p.store.InsertWithValues(&gtk.TreeIter{}, parent, -1,
		[]int{colIcon, colName, colEnabled, colToggleVisible, colRemote, colPort, colProto, colAction, colDuration, colScope, colNote, colID, colVisible},
		[]any{icon, name, r.Enabled, true, r.Remote, r.Port, r.Protocol, actionLabel(r.Action), durationLabel(r.Duration),
			scope, note, r.ID, true})
}

// scopeLabel says whose connections a rule of owner covers, as the user uid sees it.
func scopeLabel(owner int64, uid uint32) string {
	switch owner {
	case api.NoOwner:
		return i18n.T("Everyone (system)")
	case int64(uid):
		return i18n.T("You")
	}
	return fmt.Sprintf(i18n.T("User %d"), owner)
}

// applyFilter shows rules (and their applications) whose text contains the filter.
func (p *Page) applyFilter() {
	text, _ := p.search.GetText()
	text = strings.ToLower(strings.TrimSpace(text))
	m := p.store.ToTreeModel()
	it, ok := m.GetIterFirst()
	for ok {
		appV, _ := m.GetValue(it, colName)
		app, _ := appV.GetString()
		any := false
		child := &gtk.TreeIter{}
		cok := m.IterChildren(it, child)
		for cok {
			id := p.idAt(m, child)
			r := p.rules[id]
			show := text == "" || strings.Contains(strings.ToLower(strings.Join([]string{app, r.Application, r.Remote, r.Port, r.Protocol, r.Action, r.Note, r.ID}, " ")), text)
			p.store.SetValue(child, colVisible, show)
			any = any || show
			cok = m.IterNext(child)
		}
		p.store.SetValue(it, colVisible, any)
		ok = m.IterNext(it)
	}
}

func (p *Page) idAt(m *gtk.TreeModel, it *gtk.TreeIter) string {
	v, err := m.GetValue(it, colID)
	if err != nil {
		return ""
	}
	s, _ := v.GetString()
	return s
}

func (p *Page) selectedID() string {
	sel := ui.Must(p.view.GetSelection())
	model, it, ok := sel.GetSelected()
	if !ok {
		return ""
	}
	return p.idAt(model.(*gtk.TreeModel), it)
}

// report shows what a change call returned: nothing on success, else why it failed and what to do.
func (p *Page) report(what string, err error) {
	if err == nil {
		p.msg.Hide()
		p.Reload()
		return
	}
	p.msg.Show(gtk.MESSAGE_ERROR, explain(what, err))
}

// explain turns a failed change into a message a person can act on.
func explain(what string, err error) string {
	switch client.KindOf(err) {
	case client.AccessDenied:
		return fmt.Sprintf(i18n.T("%s: not authorized. Changing rules for everyone needs an administrator's password, and no authentication agent of the desktop answered (is a polkit agent running in this session?). Details: %s"), what, err)
	case client.ReadOnly:
		return fmt.Sprintf(i18n.T("%s: this rule comes from an administrator's rule file; change that file instead. Details: %s"), what, err)
	case client.Unreachable:
		return fmt.Sprintf(i18n.T("%s: the Tattle service is not running or not answering. Details: %s"), what, err)
	}
	return fmt.Sprintf("%s: %v", what, err)
}

func (p *Page) toggle(id string) {
	r, ok := p.rules[id]
	if !ok {
		return
	}
	if r.ReadOnly && !r.Factory {
		p.msg.Show(gtk.MESSAGE_INFO, i18n.T("This rule comes from an administrator's rule file; change that file to switch it."))
		return
	}
	ui.Background(func() (struct{}, error) { return struct{}{}, p.cl.SetEnabled(p.ctx, id, !r.Enabled) },
		func(_ struct{}, err error) { p.report(i18n.T("Switching the rule"), err) })
}

func (p *Page) add() {
	r, ok, real := runDialog(p.parent, nil, p.uid)
	if !ok {
		return
	}
	p.gate.Decided(real, p.msg, "add a rule", func() {
		ui.Background(func() ([]string, error) { return p.cl.AddRules(p.ctx, []api.Rule{r}) },
			func(_ []string, err error) { p.report(i18n.T("Adding the rule"), err) })
	}, nil)
}

func (p *Page) edit() {
	r, ok := p.rules[p.selectedID()]
	if !ok {
		return
	}
	if r.Factory {
		p.msg.Show(gtk.MESSAGE_INFO, factoryInfo(r))
		return
	}
	if r.ReadOnly {
		p.msg.Show(gtk.MESSAGE_INFO, fmt.Sprintf(i18n.T("This rule comes from the administrator's file %s; change that file to edit it."), r.Source))
		return
	}
	nr, ok, real := runDialog(p.parent, &r, p.uid)
	if !ok {
		return
	}
	p.gate.Decided(real, p.msg, "change a rule", func() {
		ui.Background(func() (struct{}, error) { return struct{}{}, p.cl.UpdateRule(p.ctx, nr) },
			func(_ struct{}, err error) { p.report(i18n.T("Changing the rule"), err) })
	}, nil)
}

func (p *Page) remove() {
	id := p.selectedID()
	r, ok := p.rules[id]
	if !ok {
		return
	}
	if r.Factory {
		p.msg.Show(gtk.MESSAGE_INFO, factoryInfo(r))
		return
	}
	d := gtk.MessageDialogNew(p.parent, gtk.DIALOG_MODAL|gtk.DIALOG_DESTROY_WITH_PARENT, gtk.MESSAGE_QUESTION, gtk.BUTTONS_NONE,
		"%s", fmt.Sprintf(i18n.T("Delete the rule for %s to %s?"), r.Application, r.Remote))
	d.AddButton(i18n.T("_Cancel"), gtk.RESPONSE_CANCEL)
	d.AddButton(i18n.T("_Delete"), gtk.RESPONSE_ACCEPT)
	resp, real := userinput.Run(&d.Dialog)
	d.Destroy()
	if resp != gtk.RESPONSE_ACCEPT {
		return
	}
	p.gate.Decided(real, p.msg, "delete a rule", func() {
		ui.Background(func() (struct{}, error) { return struct{}{}, p.cl.RemoveRules(p.ctx, []string{id}) },
			func(_ struct{}, err error) { p.report(i18n.T("Deleting the rule"), err) })
	}, nil)
}

// factoryInfo says what can be done with a factory rule instead of editing or deleting it.
func factoryInfo(r api.Rule) string {
	return fmt.Sprintf(i18n.T("This is a factory rule, shipped with Tattle to keep the system online; it cannot be deleted or edited. Switch it off instead, or replace its group with a file named %s in /etc/tattle/rules.d."), filepath.Base(r.Source))
}

// formats offered by import and export, with their file patterns.
var formats = []struct{ id, pattern string }{
	{api.FormatTattle, "*.json"}, {api.FormatLittleSnitch, "*.lsrules"}, {api.FormatOpenSnitch, "*.json"},
}

func formatName(id string) string {
	switch id {
	case api.FormatLittleSnitch:
		return i18n.T("Little Snitch rule group (.lsrules)")
	case api.FormatOpenSnitch:
		return i18n.T("OpenSnitch rule (.json)")
	}
	return i18n.T("Tattle rules (.json)")
}

// chooseFormat asks which format (and, for import, whether the rules are for everyone).
func (p *Page) chooseFormat(title string, withSystem bool) (string, bool, bool) {
	d := ui.Must(gtk.DialogNewWithButtons(title, p.parent, gtk.DIALOG_MODAL|gtk.DIALOG_DESTROY_WITH_PARENT,
		[]any{i18n.T("_Cancel"), gtk.RESPONSE_CANCEL}, []any{i18n.T("_Continue"), gtk.RESPONSE_ACCEPT}))
	area := ui.Must(d.GetContentArea())
	area.SetSpacing(8)
	area.SetMarginStart(12)
	area.SetMarginEnd(12)
	area.SetMarginTop(12)
	combo := ui.Must(gtk.ComboBoxTextNew())
	for _, f := range formats {
		combo.Append(f.id, formatName(f.id))
	}
	combo.SetActiveID(api.FormatTattle)
	area.Add(combo)
	sys := ui.Must(gtk.CheckButtonNewWithMnemonic(i18n.T("Rules for _all users (needs an administrator)")))
	if withSystem {
		area.Add(sys)
	}
	d.ShowAll()
	resp, _ := userinput.Run(d)
	f, system := combo.GetActiveID(), sys.GetActive()
	d.Destroy()
	return f, system, resp == gtk.RESPONSE_ACCEPT
}

func (p *Page) importRules() {
	format, system, ok := p.chooseFormat(i18n.T("Import rules"), true)
	if !ok {
		return
	}
	fc, err := gtk.FileChooserNativeDialogNew(i18n.T("Import rules"), p.parent, gtk.FILE_CHOOSER_ACTION_OPEN, i18n.T("_Import"), i18n.T("_Cancel"))
	if err != nil {
		return
	}
	defer fc.Destroy()
	// Several files make one import: an OpenSnitch rules directory is one file per rule.
	fc.SetSelectMultiple(true)
	for _, f := range formats {
		if f.id != format {
			continue
		}
		filter := ui.Must(gtk.FileFilterNew())
		filter.SetName(formatName(f.id))
		filter.AddPattern(f.pattern)
		fc.AddFilter(filter)
	}
	all := ui.Must(gtk.FileFilterNew())
	all.SetName(i18n.T("All files"))
	all.AddPattern("*")
	fc.AddFilter(all)
	var resp int
	userinput.Nested(func() { resp = fc.Run() })
	if gtk.ResponseType(resp) != gtk.RESPONSE_ACCEPT {
		return
	}
	paths, err := fc.GetFilenames()
	if err != nil || len(paths) == 0 {
		return
	}
	p.previewImport(api.ImportRequest{Format: format, System: system}, paths)
}

func (p *Page) exportRules() {
	format, _, ok := p.chooseFormat(i18n.T("Export rules"), false)
	if !ok {
		return
	}
	fc, err := gtk.FileChooserNativeDialogNew(i18n.T("Export rules"), p.parent, gtk.FILE_CHOOSER_ACTION_SAVE, i18n.T("_Export"), i18n.T("_Cancel"))
	if err != nil {
		return
	}
	defer fc.Destroy()
	fc.SetDoOverwriteConfirmation(true)
	ext := ".json"
	if format == api.FormatLittleSnitch {
		ext = ".lsrules"
	}
	fc.SetCurrentName("tattle-rules" + ext)
	var resp int
	userinput.Nested(func() { resp = fc.Run() })
	if gtk.ResponseType(resp) != gtk.RESPONSE_ACCEPT {
		return
	}
	path := fc.GetFilename()
	type result struct {
		data    []byte
		skipped []string
	}
	ui.Background(func() (result, error) {
		data, skipped, err := p.cl.Export(p.ctx, format)
		return result{data, skipped}, err
	}, func(r result, err error) {
		if err != nil {
			p.report(i18n.T("Exporting rules"), err)
			return
		}
		if err := os.WriteFile(path, r.data, 0o644); err != nil {
			p.msg.Show(gtk.MESSAGE_ERROR, fmt.Sprintf(i18n.T("Cannot write %s: %s"), path, err))
			return
		}
		text := fmt.Sprintf(i18n.T("Exported the rules to %s."), path)
		if len(r.skipped) > 0 {
			text += " " + i18n.T("Left out:") + "\n" + strings.Join(r.skipped, "\n")
		}
		p.msg.Show(gtk.MESSAGE_INFO, text)
	})
}

func remoteLabel(remote string) string {
	if remote == "any" {
		return i18n.T("Any destination")
	}
	return remote
}

func actionLabel(a string) string {
	if a == "deny" {
		return i18n.T("Deny")
	}
	return i18n.T("Allow")
}

func durationLabel(d string) string {
	switch d {
	case "once":
		return i18n.T("Once")
	case "until-quit":
		return i18n.T("Until the application quits")
	case "until-restart":
		return i18n.T("Until restart")
	case "until-time":
		return i18n.T("Until a time")
	}
	return i18n.T("Forever")
}
