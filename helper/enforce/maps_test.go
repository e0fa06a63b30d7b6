package enforce

import (
	"fmt"
	"reflect"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/tattlefw/tattle/bpf"
)

// TestMapNamesAgree checks the one list of map names against the struct tags that coll.Assign goes by and
// against the embedded objects: a map renamed in the C, or a tag that drifts, fails here rather than at load.
func TestMapNamesAgree(t *testing.T) {
	var m maps
	byField := map[**ebpf.Map]string{}
	for _, nm := range m.named() {
		byField[nm.m] = nm.name
	}
	v := reflect.ValueOf(&m).Elem()
	if len(byField) != v.NumField() {
		t.Errorf("named lists %d maps, the maps struct has %d fields", len(byField), v.NumField())
	}
	for i := 0; i < v.NumField(); i++ {
		f := v.Type().Field(i)
		name, ok := byField[v.Field(i).Addr().Interface().(**ebpf.Map)]
		if !ok {
			t.Errorf("field %s is missing from named", f.Name)
			continue
		}
		if tag := f.Tag.Get("ebpf"); tag != name {
			t.Errorf("field %s: tag %q, named says %q", f.Name, tag, name)
		}
	}

	// Both backends load against the same pinned maps, so they must declare each one alike.
	cg, err := bpf.LoadCgroup()
	if err != nil {
		t.Fatal(err)
	}
	lsm, err := bpf.LoadLsm()
	if err != nil {
		t.Fatal(err)
	}
	traffic, err := bpf.LoadTraffic()
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range pinnedMapNames() {
		c, l := cg.Maps[name], lsm.Maps[name]
		if c == nil || l == nil {
			t.Errorf("map %s: in the cgroup object %t, in the lsm object %t", name, c != nil, l != nil)
			continue
		}
		if err := sameLayout(c, l); err != nil {
			t.Errorf("map %s differs between the cgroup and lsm objects: %v", name, err)
		}
	}
	if tr := traffic.Maps[trafficMapName]; tr == nil {
		t.Errorf("map %s is missing from the traffic object", trafficMapName)
	} else if c := cg.Maps[trafficMapName]; c != nil {
		if err := sameLayout(c, tr); err != nil {
			t.Errorf("map %s differs between the cgroup and traffic objects: %v", trafficMapName, err)
		}
	}
}

// sameLayout compares what the kernel checks when a program's object takes a pinned map.
func sameLayout(a, b *ebpf.MapSpec) error {
	if a.Type != b.Type || a.KeySize != b.KeySize || a.ValueSize != b.ValueSize || a.MaxEntries != b.MaxEntries ||
		a.Flags != b.Flags {
		return fmt.Errorf("%s key %d value %d max %d flags %#x, against %s key %d value %d max %d flags %#x",
			a.Type, a.KeySize, a.ValueSize, a.MaxEntries, a.Flags, b.Type, b.KeySize, b.ValueSize, b.MaxEntries, b.Flags)
	}
	return nil
}
