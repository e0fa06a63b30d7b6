package benchstat

import (
	"math"
	"testing"
)

func TestSpreadOfRounds(t *testing.T) {
	// Eight rounds, one wild: the median and quartiles ignore it.
	s := SpreadOf([]float64{0.95, 0.97, 0.96, 0.33, 0.98, 0.94, 0.97, 0.96})
	if s.Median != 0.96 || s.Min != 0.33 || s.Max != 0.98 || s.Q1 != 0.95 || s.Q3 != 0.97 {
		t.Errorf("spread %+v", s)
	}
	if want := 1.253 * 0.02 / 1.349 / math.Sqrt(8); math.Abs(s.Noise-want) > 1e-12 {
		t.Errorf("noise %v, want %v", s.Noise, want)
	}
	if Median([]float64{3, 1, 2}) != 2 || Median([]float64{4, 1, 2, 3}) != 2.5 || !math.IsNaN(Median(nil)) {
		t.Error("median of odd, even or no rounds is wrong")
	}
}

func TestKnobsFromTheEnvironment(t *testing.T) {
	t.Setenv("BENCHSTAT_N", "12")
	t.Setenv("BENCHSTAT_BAD", "-3")
	t.Setenv("BENCHSTAT_F", "0.5")
	if Int("BENCHSTAT_N", 1) != 12 || Int("BENCHSTAT_BAD", 7) != 7 || Int("BENCHSTAT_UNSET", 9) != 9 {
		t.Error("Int")
	}
	if Float("BENCHSTAT_F", 1) != 0.5 || Float("BENCHSTAT_BAD", 0.9) != 0.9 {
		t.Error("Float")
	}
}

func TestOrderAlternates(t *testing.T) {
	if o := Order(0); len(o) != 2 || !o[0] || o[1] {
		t.Errorf("round 0 runs %v, want with Tattle first", o)
	}
	if o := Order(3); len(o) != 2 || o[0] || !o[1] {
		t.Errorf("round 3 runs %v, want without Tattle first", o)
	}
}
