package testrig

import (
	"encoding/json"
	"os/exec"
	"testing"
)

// IperfResult is what the tests read of an iperf3 client's JSON report (-J): the payload each side moved,
// the sender's resent segments and its MSS, the receiver's rate.
type IperfResult struct {
	End struct {
		SumSent struct {
			Bytes       uint64
			Retransmits uint64
		} `json:"sum_sent"`
		SumReceived struct {
			Bytes         uint64
			BitsPerSecond float64 `json:"bits_per_second"`
		} `json:"sum_received"`
	} `json:"end"`
	Start struct {
		MSS uint64 `json:"tcp_mss_default"`
	} `json:"start"`
	Error string `json:"error"`
}

// RunIperf runs one iperf3 client (cmd, with -J) and returns its report; a failed run, or one whose report
// names an error, fails the test, so callers read only figures.
func RunIperf(t testing.TB, cmd *exec.Cmd) IperfResult {
	t.Helper()
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%v: %v: %s", cmd.Args, err, out)
	}
	var r IperfResult
	if err := json.Unmarshal(out, &r); err != nil || r.Error != "" {
		t.Fatalf("iperf3 result %v %q: %.300s", err, r.Error, out)
	}
	return r
}
