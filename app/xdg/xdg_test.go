package xdg

import (
	"reflect"
	"testing"
)

func TestDataDirs(t *testing.T) {
	for _, tc := range []struct {
		home, dataHome, dataDirs string
		want                     []string
	}{
		{"/home/u", "", "", []string{"/home/u/.local/share", "/usr/local/share", "/usr/share"}},
		{"/home/u", "/data", "/a::/b", []string{"/data", "/a", "/b"}},
	} {
		t.Setenv("HOME", tc.home)
		t.Setenv("XDG_DATA_HOME", tc.dataHome)
		t.Setenv("XDG_DATA_DIRS", tc.dataDirs)
		if got := DataDirs(); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("HOME=%s XDG_DATA_HOME=%q XDG_DATA_DIRS=%q: %v, want %v", tc.home, tc.dataHome, tc.dataDirs, got, tc.want)
		}
	}
}
