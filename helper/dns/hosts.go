package dns

import (
	"net/netip"
	"os"
	"strings"
)

// ReadHostsFile maps each address in a hosts file (hosts(5)) to its first name, lower case; a missing file maps nothing.
func ReadHostsFile(path string) map[netip.Addr]string {
	out := map[netip.Addr]string{}
	data, err := os.ReadFile(path)
	if err != nil {
		return out
	}
	for _, line := range strings.Split(string(data), "\n") {
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		a, err := netip.ParseAddr(f[0])
		if err != nil {
			continue
		}
		if _, seen := out[a.Unmap()]; !seen {
			out[a.Unmap()] = strings.ToLower(f[1])
		}
	}
	return out
}
