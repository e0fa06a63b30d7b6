package dnscapture

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/tattlefw/tattle/bpf"
)

// TestRecordLayout checks that decode reads the fields where the C struct puts them (bpf2go's Go mirror of
// struct dns_event, encoded the way the kernel lays it out).
func TestRecordLayout(t *testing.T) {
	var e bpf.DnsDnsEvent
	e.TimeNs, e.Cookie, e.CgroupId, e.Uid = 5e9, 0xc00c1e, 77, 1000
	e.WireLen, e.CapLen, e.LocalPort, e.ServerPort = 9000, 3, 40000, 53
	copy(e.LocalAddr[:], netip.MustParseAddr("::ffff:10.1.2.3").AsSlice())
	copy(e.ServerAddr[:], netip.MustParseAddr("::ffff:10.9.9.9").AsSlice())
	e.Family, e.Truncated = 4, 1
	copy(e.Payload[:], "abc")
	var buf bytes.Buffer
	if err := binary.Write(&buf, binary.LittleEndian, &e); err != nil {
		t.Fatal(err)
	}
	raw := buf.Bytes()[:hdrLen+3]
	p, err := decode(raw, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	want := Packet{Payload: []byte("abc"), Truncated: true, WireLen: 9000, SocketCookie: 0xc00c1e, UID: 1000, CgroupID: 77,
		LocalAddr: netip.MustParseAddrPort("10.1.2.3:40000"), Server: netip.MustParseAddrPort("10.9.9.9:53"),
		Time: time.Unix(6, 0)}
	if fmt.Sprint(p) != fmt.Sprint(want) || !p.Time.Equal(want.Time) {
		t.Fatalf("decoded\n %+v\nwant\n %+v", p, want)
	}
	if _, err := decode(raw[:hdrLen-1], 0); err == nil {
		t.Fatal("a short record decoded without error")
	}
	if _, err := decode(raw[:hdrLen+2], 0); err == nil {
		t.Fatal("a record shorter than its cap_len decoded without error")
	}
}
