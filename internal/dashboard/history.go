package dashboard

import (
	"encoding/json"
	"fmt"
	"time"
)

// Point is one history sample of the whole fleet.
type Point struct {
	T            int64   `json:"t"` // Unix seconds
	EventsPerSec float64 `json:"eps"`
	LatencyMS    float64 `json:"lat"`
	Guilds       int     `json:"guilds"`
}

// History keeps the fleet's history downsampled in two tiers: every sample
// for the last FineSpan, and CoarseStep averages for the last CoarseSpan.
// It is pure: the caller adds samples with their times, and saves and
// restores it as JSON, so neither a page reload nor a coordinator restart
// loses it.
type History struct {
	fine   []Point
	coarse []Point
	acc    accum // the coarse step being averaged
}

type accum struct {
	step             int64 // start of the step, Unix seconds; 0 when empty
	n                int
	eps, lat, guilds float64
}

// History tiers.
const (
	FineSpan   = time.Hour
	CoarseStep = 5 * time.Minute
	CoarseSpan = 24 * time.Hour
)

// Add records p. Samples must come in time order; an older one is ignored.
func (h *History) Add(p Point) {
	if n := len(h.fine); n > 0 && p.T <= h.fine[n-1].T {
		return
	}
	h.fine = append(h.fine, p)
	cut := p.T - int64(FineSpan/time.Second)
	i := 0
	for i < len(h.fine) && h.fine[i].T <= cut {
		i++
	}
	h.fine = append(h.fine[:0], h.fine[i:]...)

	step := p.T - p.T%int64(CoarseStep/time.Second)
	if h.acc.n > 0 && h.acc.step != step {
		h.flush()
	}
	h.acc.step = step
	h.acc.n++
	h.acc.eps += p.EventsPerSec
	h.acc.lat += p.LatencyMS
	h.acc.guilds += float64(p.Guilds)
	cut = p.T - int64(CoarseSpan/time.Second)
	i = 0
	for i < len(h.coarse) && h.coarse[i].T <= cut {
		i++
	}
	h.coarse = append(h.coarse[:0], h.coarse[i:]...)
}

func (h *History) flush() {
	n := float64(h.acc.n)
	h.coarse = append(h.coarse, Point{T: h.acc.step, EventsPerSec: h.acc.eps / n, LatencyMS: h.acc.lat / n, Guilds: int(h.acc.guilds/n + 0.5)})
	h.acc = accum{}
}

// Points returns the history, oldest first: coarse averages up to where
// the fine samples start, then the fine samples.
func (h *History) Points() []Point {
	out := make([]Point, 0, len(h.coarse)+len(h.fine))
	start := int64(1<<63 - 1)
	if len(h.fine) > 0 {
		start = h.fine[0].T
	}
	for _, p := range h.coarse {
		if p.T+int64(CoarseStep/time.Second) <= start {
			out = append(out, p)
		}
	}
	return append(out, h.fine...)
}

type savedHistory struct {
	Version int     `json:"version"`
	Fine    []Point `json:"fine"`
	Coarse  []Point `json:"coarse"`
	Acc     *Point  `json:"acc,omitempty"`
	AccN    int     `json:"acc_n,omitempty"`
}

// MarshalJSON saves the history.
func (h *History) MarshalJSON() ([]byte, error) {
	s := savedHistory{Version: 1, Fine: h.fine, Coarse: h.coarse}
	if h.acc.n > 0 {
		s.Acc = &Point{T: h.acc.step, EventsPerSec: h.acc.eps, LatencyMS: h.acc.lat, Guilds: int(h.acc.guilds)}
		s.AccN = h.acc.n
	}
	return json.Marshal(s)
}

// UnmarshalJSON restores a saved history.
func (h *History) UnmarshalJSON(b []byte) error {
	var s savedHistory
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	if s.Version != 1 {
		return fmt.Errorf("dashboard: history version %d, want 1", s.Version)
	}
	*h = History{fine: s.Fine, coarse: s.Coarse}
	if s.Acc != nil && s.AccN > 0 {
		h.acc = accum{step: s.Acc.T, n: s.AccN, eps: s.Acc.EventsPerSec, lat: s.Acc.LatencyMS, guilds: float64(s.Acc.Guilds)}
	}
	return nil
}
