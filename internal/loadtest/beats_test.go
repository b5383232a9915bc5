package loadtest

import (
	"testing"
	"time"
)

// TestRunBeats runs the beat benchmark small: every worker connects, every
// beat in the window is answered 204, and the percentiles are ordered.
func TestRunBeats(t *testing.T) {
	exe := buildGatehouse(t)
	r, err := RunBeats(t.Context(), BeatConfig{Exe: exe, Workers: 50, Interval: 100 * time.Millisecond,
		Warmup: 300 * time.Millisecond, Measure: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if r.Errors != 0 || r.FirstError != "" {
		t.Errorf("%d errors, first %q", r.Errors, r.FirstError)
	}
	// 50 workers at 10 beats/s for about a second.
	if r.Beats < 250 || r.Beats > 750 {
		t.Errorf("%d beats in %v, want about 500", r.Beats, r.Window)
	}
	if !(0 < r.P50 && r.P50 <= r.P90 && r.P90 <= r.P99 && r.P99 <= r.Max+histStep) {
		t.Errorf("percentiles out of order: p50 %v p90 %v p99 %v max %v", r.P50, r.P90, r.P99, r.Max)
	}
	if r.CoordCPUSeconds <= 0 {
		t.Errorf("coordinator CPU %v, want it measured", r.CoordCPUSeconds)
	}
}

func TestLatencyHistQuantile(t *testing.T) {
	var h latencyHist
	h.on.Store(true)
	for i := 1; i <= 100; i++ {
		h.add(time.Duration(i) * time.Millisecond)
	}
	h.add(5 * time.Second) // beyond the last bucket
	for _, tc := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 51*time.Millisecond + histStep}, {0.99, 100*time.Millisecond + histStep}, {1, 2*time.Second + histStep}} {
		if got := h.quantile(tc.q); got != tc.want {
			t.Errorf("quantile(%v) = %v, want %v", tc.q, got, tc.want)
		}
	}
	if time.Duration(h.max.Load()) != 5*time.Second {
		t.Errorf("max = %v", time.Duration(h.max.Load()))
	}
}
