// Package xdg reads the XDG base directory specification's data directories.
package xdg

import (
	"os"
	"path/filepath"
	"strings"
)

// DataDirs are the data directories, most important first: XDG_DATA_HOME (default ~/.local/share), then
// XDG_DATA_DIRS (default /usr/local/share:/usr/share). Empty entries are left out.
func DataDirs() []string {
	home := os.Getenv("XDG_DATA_HOME")
	if home == "" {
		if h, err := os.UserHomeDir(); err == nil {
			home = filepath.Join(h, ".local", "share")
		}
	}
	dirs := os.Getenv("XDG_DATA_DIRS")
	if dirs == "" {
		dirs = "/usr/local/share:/usr/share"
	}
	out := []string{}
	for _, d := range append([]string{home}, strings.Split(dirs, ":")...) {
		if d != "" {
			out = append(out, d)
		}
	}
	return out
}
