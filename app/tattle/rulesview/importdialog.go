package rulesview

import (
	"context"
	"fmt"
	"strings"

	"github.com/gotk3/gotk3/glib"
	"github.com/gotk3/gotk3/gtk"

	"github.com/tattlefw/tattle/app/i18n"
	"github.com/tattlefw/tattle/app/tattle/ui"
	"github.com/tattlefw/tattle/shared/api"
	"github.com/tattlefw/tattle/shared/rules"
)

// previewRows bounds the rows each table of the preview shows; the summary line counts them all.
const previewRows = 1000

// previewImport reads the chosen files, asks the helper for a dry run and shows what the import would do:
// the summary, the rules it would make and the report lines. Import then runs the same request for real
// (one transaction); Cancel changes nothing. A dry run the helper refuses shows why, with only Close.
func (p *Page) previewImport(req api.ImportRequest, paths []string) {
	d := ui.Must(gtk.DialogNewWithButtons(i18n.T("Import rules"), p.parent, gtk.DIALOG_MODAL|gtk.DIALOG_DESTROY_WITH_PARENT))
	d.SetDefaultSize(560, -1)
	cancel := ui.Must(d.AddButton(i18n.T("_Cancel"), gtk.RESPONSE_CANCEL))
	area := ui.Must(d.GetContentArea())
	box := ui.Must(gtk.BoxNew(gtk.ORIENTATION_VERTICAL, 8))
	ui.SetMargins(box, 12)
	box.SetVExpand(true)
	area.PackStart(box, true, true, 0)
	label := func(text string) *gtk.Label {
		l := ui.Must(gtk.LabelNew(text))
		l.SetLineWrap(true)
		l.SetXAlign(0)
		l.SetSelectable(true)
		return l
	}
	status := label(i18n.T("Checking what the import would do…"))
	// A wrapping label asks for the height it needs at its narrowest width: give it a sensible one, so an
	// error does not make the dialog tall and mostly empty.
	status.SetWidthChars(60)
	status.SetMaxWidthChars(110)
	box.PackStart(status, false, false, 0)
	spinner := ui.Must(gtk.SpinnerNew())
	spinner.Start()
	box.PackStart(spinner, false, false, 0)
	d.ShowAll()

	ctx, stop := context.WithCancel(p.ctx)
	closed := false
	var final api.ImportRequest
	d.Connect("response", func(_ *gtk.Dialog, resp int) {
		closed = true
		stop()
		d.Destroy()
		if gtk.ResponseType(resp) == gtk.RESPONSE_ACCEPT {
			req := final
			p.gate.Do(p.msg, "import rules", func() { p.runImport(req) }, nil)
		}
	})

	type preview struct {
		req    api.ImportRequest
		sum    api.ImportSummary
		report []string
	}
	ui.Background(func() (preview, error) {
		r, err := readImport(req, paths)
		if err != nil {
			return preview{}, err
		}
		r.DryRun = true
		sum, report, err := p.cl.ImportFiles(ctx, r)
		r.DryRun = false
		return preview{r, sum, report}, err
	}, func(pv preview, err error) {
		if closed {
			return
		}
		spinner.Stop()
		spinner.Hide()
		cancel.SetLabel(i18n.T("_Close"))
		if err != nil {
			status.SetText(explain(i18n.T("These files cannot be imported"), err))
			box.PackStart(label(i18n.T("Nothing was changed.")), false, false, 0)
			box.ShowAll()
			spinner.Hide()
			return
		}
		status.SetMarkup("<b>" + glib.MarkupEscapeText(importSummary(pv.sum)) + "</b>")
		d.Resize(960, 600)
		centerOn(d, p.parent, 960, 600)
		if pv.sum.Imported == 0 {
			box.PackStart(label(i18n.T("Nothing would be imported.")), false, false, 0)
		} else {
			box.PackStart(label(i18n.T("Nothing changes until you press Import; then all of it is imported, or nothing.")), false, false, 0)
			box.PackStart(heading(i18n.T("Rules it would make")), false, false, 0)
			box.PackStart(previewRules(pv.sum.Preview, p.uid), true, true, 0)
		}
		if len(pv.report) > 0 {
			box.PackStart(heading(i18n.T("Not imported exactly")), false, false, 0)
			box.PackStart(previewReport(pv.report), true, true, 0)
		}
		box.ShowAll()
		spinner.Hide() // ShowAll showed it again
		if pv.sum.Imported > 0 {
			final = pv.req
			cancel.SetLabel(i18n.T("_Cancel"))
			imp := ui.Must(d.AddButton(i18n.T("_Import"), gtk.RESPONSE_ACCEPT))
			if sc, err := imp.GetStyleContext(); err == nil {
				sc.AddClass("suggested-action")
			}
			imp.GrabFocus()
		}
	})
}

// runImport runs the previewed request for real and says what it did in the page's message bar.
func (p *Page) runImport(req api.ImportRequest) {
	ui.Background(func() (api.ImportSummary, error) {
		sum, _, err := p.cl.ImportFiles(p.ctx, req)
		return sum, err
	}, func(sum api.ImportSummary, err error) {
		if err != nil {
			p.report(i18n.T("Importing rules"), err)
			return
		}
		p.Reload()
		text := fmt.Sprintf(i18n.N("Imported %d rule from %s.", "Imported %d rules from %s.", int(sum.Imported)), sum.Imported, importSource(req))
		p.msg.Show(gtk.MESSAGE_INFO, text+" "+importSummary(sum))
	})
}

func heading(text string) *gtk.Label {
	l := ui.Must(gtk.LabelNew(""))
	l.SetMarkup("<b>" + glib.MarkupEscapeText(text) + "</b>")
	l.SetXAlign(0)
	return l
}

// previewRules is the table of the rules an import would make.
func previewRules(rs []api.Rule, uid uint32) *gtk.ScrolledWindow {
	cols := []string{i18n.T("Application"), i18n.T("Remote"), i18n.T("Port"), i18n.T("Protocol"), i18n.T("Action"),
		i18n.T("State"), i18n.T("Applies to"), i18n.T("Note")}
	types := make([]glib.Type, len(cols))
	for i := range types {
		types[i] = glib.TYPE_STRING
	}
	store := ui.Must(gtk.ListStoreNew(types...))
	idx := make([]int, len(cols))
	for i := range idx {
		idx[i] = i
	}
	for n, r := range rs {
		if n == previewRows {
			store.InsertWithValues(nil, -1, []int{0}, []any{fmt.Sprintf(i18n.T("… and %d more"), len(rs)-n)})
			break
		}
		app := r.Application
		if app == "any" {
			app = i18n.T("Any application")
		}
		state := i18n.T("Enabled")
		switch {
		case !r.Enabled && strings.HasPrefix(r.Note, rules.FlaggedNotePrefix):
			// A narrowing condition was lost: the note says which.
			state = i18n.T("Disabled, flagged")
		case !r.Enabled:
			state = i18n.T("Disabled")
		}
		store.InsertWithValues(nil, -1, idx, []any{app, remoteLabel(r.Remote), r.Port, r.Protocol, actionLabel(r.Action), state,
			scopeLabel(r.Owner, uid), r.Note})
	}
	view := ui.Must(gtk.TreeViewNewWithModel(store))
	view.SetTooltipColumn(len(cols) - 1) // the note, often longer than its column
	ui.SetAccessible(view, i18n.T("Rules it would make"), "")
	for i, title := range cols {
		rend := ui.Must(gtk.CellRendererTextNew())
		col := ui.Must(gtk.TreeViewColumnNewWithAttribute(title, rend, "text", i))
		col.SetResizable(true)
		if i == 0 || i == len(cols)-1 {
			rend.SetProperty("ellipsize", 3)
			col.SetExpand(true)
		}
		view.AppendColumn(col)
	}
	return scrolled(view)
}

// previewReport is the list of the report's lines (file:line:column and what was not kept exactly).
func previewReport(lines []string) *gtk.ScrolledWindow {
	store := ui.Must(gtk.ListStoreNew(glib.TYPE_STRING))
	for n, l := range lines {
		if n == previewRows {
			l = fmt.Sprintf(i18n.T("… and %d more"), len(lines)-n)
		}
		store.InsertWithValues(nil, -1, []int{0}, []any{l})
		if n == previewRows {
			break
		}
	}
	view := ui.Must(gtk.TreeViewNewWithModel(store))
	view.SetHeadersVisible(false)
	ui.SetAccessible(view, i18n.T("Not imported exactly"), "")
	rend := ui.Must(gtk.CellRendererTextNew())
	rend.SetProperty("wrap-mode", 2) // PANGO_WRAP_WORD_CHAR: long lines stay whole
	rend.SetProperty("wrap-width", 880)
	col := ui.Must(gtk.TreeViewColumnNewWithAttribute("", rend, "text", 0))
	view.AppendColumn(col)
	return scrolled(view)
}

func scrolled(w gtk.IWidget) *gtk.ScrolledWindow {
	s := ui.Must(gtk.ScrolledWindowNew(nil, nil))
	s.SetPolicy(gtk.POLICY_AUTOMATIC, gtk.POLICY_AUTOMATIC)
	s.SetShadowType(gtk.SHADOW_IN)
	s.SetMinContentHeight(140)
	s.SetVExpand(true)
	s.Add(w)
	return s
}

// centerOn moves a dialog that grew back over the middle of its parent (the window manager placed it for
// its first, smaller size). Compositors that place windows themselves (Wayland) ignore this.
func centerOn(d *gtk.Dialog, parent *gtk.Window, w, h int) {
	if parent == nil {
		return
	}
	px, py := parent.GetPosition()
	pw, ph := parent.GetSize()
	x, y := px+(pw-w)/2, py+(ph-h)/2
	d.Move(max(x, 0), max(y, 0))
}
