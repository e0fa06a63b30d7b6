package tray

import "testing"

// TestChangedPropsAnnouncesRelabelledIDs: a menu rebuilt with a different item at an id the host knows (the
// question where "No questions waiting" was) yields that id's new label and the dropped "enabled", which
// hosts that only reread the structure (GNOME's AppIndicator extension) need as ItemsPropertiesUpdated.
func TestChangedPropsAnnouncesRelabelledIDs(t *testing.T) {
	prev := newMenuTree([]Item{{Label: "Open"}, {Label: "No questions waiting", Disabled: true}}, 1)
	next := newMenuTree([]Item{{Label: "Open"}, {Label: "curl to 192.0.2.1 port 443"}}, 2)
	updated, removed := next.changedProps(prev)
	if len(updated) != 1 || updated[0].ID != 2 || updated[0].Props["label"].Value() != "curl to 192.0.2.1 port 443" || len(updated[0].Props) != 1 {
		t.Errorf("updated %+v, want only id 2's new label", updated)
	}
	if len(removed) != 1 || removed[0].ID != 2 || len(removed[0].Names) != 1 || removed[0].Names[0] != "enabled" {
		t.Errorf("removed %+v, want id 2's enabled", removed)
	}
	if u, r := next.changedProps(next); len(u) != 0 || len(r) != 0 {
		t.Errorf("an unchanged menu announced %+v %+v", u, r)
	}
}
