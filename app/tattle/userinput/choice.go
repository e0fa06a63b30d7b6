package userinput

import "github.com/gotk3/gotk3/gtk"

// Choice keeps a combo box's choice to what the user or the app made it. Through AT-SPI any program of the
// user can select an item without pressing anything; the user's next click on Allow or Apply would then
// submit the program's choice (a wider scope, a longer duration, silent-allow). A change that no real input
// made is undone at once, unless scripted says GUI scripting is allowed, and forged is told.
type Choice struct {
	Combo    *gtk.ComboBoxText
	last     string
	quiet    int // the app's own changes in progress (Set, Rebuild)
	scripted func() bool
	forged   func()
}

// NewChoice guards combo. scripted (nil: never) says whether GUI scripting is allowed now; forged (may be
// nil) is called after a change was undone.
func NewChoice(combo *gtk.ComboBoxText, scripted func() bool, forged func()) *Choice {
	c := &Choice{Combo: combo, last: combo.GetActiveID(), scripted: scripted, forged: forged}
	combo.Connect("changed", c.changed)
	return c
}

func (c *Choice) changed() {
	id := c.Combo.GetActiveID()
	if c.quiet > 0 || id == c.last || RealChange() || (c.scripted != nil && c.scripted()) {
		c.last = id
		return
	}
	c.Set(c.last)
	if c.forged != nil {
		c.forged()
	}
}

// Set is the app's own choice.
func (c *Choice) Set(id string) {
	c.Rebuild(func() { c.Combo.SetActiveID(id) })
}

// Rebuild runs the app's own changes of the items and choice (RemoveAll, Append, SetActiveID).
func (c *Choice) Rebuild(f func()) {
	c.quiet++
	defer func() {
		c.quiet--
		c.last = c.Combo.GetActiveID()
	}()
	f()
}

// ID is the choice made.
func (c *Choice) ID() string { return c.Combo.GetActiveID() }
