// Package sysusers tells system accounts (root, service users, nobody) from people's accounts, as the
// system's own tools do: by UID_MIN of /etc/login.defs.
package sysusers

import (
	"bufio"
	"io"
	"os"
	"strconv"
	"strings"
)

// Nobody is the overflow uid: it runs sandboxed system services, never a person.
const Nobody = 65534

// DefaultUIDMin is login.defs' own default, used when the file or the key is missing or unreadable.
const DefaultUIDMin = 1000

// Classifier says which uids are system accounts.
type Classifier struct{ UIDMin uint32 }

// FromLoginDefs reads UID_MIN from path (normally /etc/login.defs); a missing file or key gives the default.
func FromLoginDefs(path string) Classifier {
	f, err := os.Open(path)
	if err != nil {
		return Classifier{UIDMin: DefaultUIDMin}
	}
	defer f.Close()
	return Classifier{UIDMin: parseUIDMin(f)}
}

func parseUIDMin(r io.Reader) uint32 {
	min := uint32(DefaultUIDMin)
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) >= 2 && f[0] == "UID_MIN" {
			if n, err := strconv.ParseUint(f[1], 10, 32); err == nil && n > 0 {
				min = uint32(n)
			}
		}
	}
	return min
}

// IsSystem reports whether uid is a system account: below UID_MIN (root included), or nobody.
func (c Classifier) IsSystem(uid uint32) bool {
	return uid < c.UIDMin || uid == Nobody
}
