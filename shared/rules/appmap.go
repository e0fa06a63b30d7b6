package rules

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
)

// appmap.json is the documented table of macOS applications and their Linux counterparts (see its "about").
//
//go:embed appmap.json
var appMapJSON []byte

type appMapEntry struct {
	Name    string   `json:"name"`
	Bundles []string `json:"bundles"`
	App     []string `json:"app"`
	Team    string   `json:"team"`
	Linux   []string `json:"linux"`
	Flatpak []string `json:"flatpak"`
	Snap    []string `json:"snap"`
}

// appMap is read once; it is constant data compiled into the binary, so this is not mutable state.
var appMap = sync.OnceValue(func() []appMapEntry {
	var m struct {
		Apps []appMapEntry `json:"apps"`
	}
	if err := json.Unmarshal(appMapJSON, &m); err != nil {
		panic(fmt.Sprintf("shared/rules/appmap.json: %v", err)) // a broken table is a build defect; tests catch it
	}
	return m.Apps
})

// macApplications maps a macOS code identity to Tattle applications. It understands a bundle id
// ("org.mozilla.firefox"), a bundle id with its team id ("org.mozilla.firefox.43AQ936H96" or
// "43AQ936H96.org.mozilla.firefox") and a path inside an application bundle ("/Applications/Firefox.app/…").
// ok is false when the identity is not one of the table's applications.
func macApplications(identity string) (apps []string, name string, ok bool) {
	id := strings.TrimSpace(identity)
	var e *appMapEntry
	if strings.HasPrefix(id, "/") {
		for _, part := range strings.Split(id, "/") {
			if !strings.HasSuffix(part, ".app") {
				continue
			}
			for i := range appMap() {
				for _, a := range appMap()[i].App {
					if strings.EqualFold(a, part) {
						e = &appMap()[i]
					}
				}
			}
			break // the outermost bundle names the application; helpers inside it are the same app
		}
	} else {
		for i := range appMap() {
			c := &appMap()[i]
			for _, b := range c.Bundles {
				switch {
				case strings.EqualFold(id, b):
					e = c
				case c.Team != "" && (strings.EqualFold(id, b+"."+c.Team) || strings.EqualFold(id, c.Team+"."+b)):
					e = c
				case c.Team == "" && len(id) == len(b)+11 && strings.EqualFold(id[:len(b)+1], b+".") && isTeamID(id[len(b)+1:]):
					e = c
				}
			}
		}
	}
	if e == nil {
		return nil, "", false
	}
	for _, p := range e.Linux {
		apps = append(apps, p)
	}
	for _, f := range e.Flatpak {
		apps = append(apps, appFlatpak+f)
	}
	for _, s := range e.Snap {
		apps = append(apps, appSnap+s)
	}
	return apps, e.Name, true
}

// isTeamID: Apple team ids are ten upper-case letters and digits.
func isTeamID(s string) bool {
	if len(s) != 10 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}
