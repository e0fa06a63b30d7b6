package userinput

import (
	"log/slog"

	"github.com/gotk3/gotk3/gtk"

	"github.com/tattlefw/tattle/app/i18n"
	"github.com/tattlefw/tattle/app/tattle/ui"
)

// Gate lets a change that the helper authorizes through polkit (a rule, a setting, the mode) go ahead only
// when the user's own input asked for it. polkit cannot tell: its kept authorizations (auth_admin_keep,
// auth_self_keep) belong to the app's bus connection, so for minutes after the user typed a password any
// program of the user that presses the app's buttons through AT-SPI would act with it, without a prompt.
//
// An administrator may let assistive and test tools through (Settings.AllowGUIScripting); the helper is
// asked afresh each time input was not real, so a change of that setting counts at once.
type Gate struct {
	scripting func() (bool, error) // nil: scripting is never allowed
	log       *slog.Logger
}

// NewGate makes a gate; scripting reads whether the administrator allows GUI scripting.
func NewGate(scripting func() (bool, error), log *slog.Logger) *Gate {
	if log == nil {
		log = slog.Default()
	}
	return &Gate{scripting: scripting, log: log}
}

// Refusal is what the app shows when it ignored a change that no real input made.
func Refusal() string {
	return i18n.T("A program tried to make this change for you; it was ignored. Use your mouse or keyboard.")
}

// Do runs act when the signal GTK is handling now came from the user's own input: call it from the signal
// handler itself, not from a callback that runs later. Otherwise act runs only if GUI scripting is allowed;
// if it is not, bar shows the refusal and undo (if not nil) puts back what the page showed before.
func (g *Gate) Do(bar *ui.MessageBar, what string, act, undo func()) {
	g.Decided(Real(), bar, what, act, undo)
}

// Decided is Do for input taken earlier, with Real, at the moment the user decided (a dialog's response,
// read while GTK emitted it: after Dialog.Run returns, the current event is the one that opened the dialog).
func (g *Gate) Decided(real bool, bar *ui.MessageBar, what string, act, undo func()) {
	if real {
		act()
		return
	}
	refuse := func() {
		g.log.Warn("ignored a change that came from no real input (an accessibility action or a synthetic event)", "change", what)
		bar.Show(gtk.MESSAGE_WARNING, Refusal())
		if undo != nil {
			undo()
		}
	}
	if g.scripting == nil {
		refuse()
		return
	}
	ui.Background(g.scripting, func(allowed bool, err error) {
		if err != nil || !allowed {
			refuse()
			return
		}
		act()
	})
}

// Run runs a modal dialog like Dialog.Run and also says whether the user's own input gave its response.
func Run(d *gtk.Dialog) (resp gtk.ResponseType, real bool) {
	h := d.Connect("response", func() { real = Real() })
	Nested(func() { resp = d.Run() })
	d.HandlerDisconnect(h)
	return resp, real
}
