package gateway

import (
	"strconv"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/discord/sim"
)

// TestSilenceWatch runs transcripts through the pure watcher: per second,
// the events of each type, and whether the check must report a type.
func TestSilenceWatch(t *testing.T) {
	type sec struct {
		counts map[string]int
		want   string
	}
	steady := func(n int, counts map[string]int) []sec {
		out := make([]sec, n)
		for i := range out {
			out[i] = sec{counts: counts}
		}
		return out
	}
	cat := func(parts ...[]sec) []sec {
		var out []sec
		for _, p := range parts {
			out = append(out, p...)
		}
		return out
	}
	both := map[string]int{"MESSAGE_CREATE": 10, "TYPING_START": 5}
	typing := map[string]int{"TYPING_START": 5}
	silentAt := func(s []sec, i int, typ string) []sec { s[i].want = typ; return s }
	tests := map[string]struct {
		after  time.Duration
		events float64
		secs   []sec
	}{
		// 10/s, 20 events to miss, 3 s floor: silent on the third quiet second.
		"a type stops": {3 * time.Second, 20, silentAt(cat(steady(10, both), steady(5, typing)), 12, "MESSAGE_CREATE")},
		// Only 5 s of history, under SilenceAfter's 8 s: no baseline, nothing reported.
		"no baseline yet": {8 * time.Second, 20, cat(steady(5, both), steady(10, typing))},
		// 1 event/s needs 20 s of absence for 20 missed events.
		"slow type needs longer": {2 * time.Second, 20, silentAt(cat(steady(30, map[string]int{"A": 1, "B": 10}), steady(20, map[string]int{"B": 10})), 49, "A")},
		// Bursty but never absent for long enough: never silent.
		"gaps shorter than the threshold": {3 * time.Second, 20, cat(steady(10, both), steady(2, typing), steady(5, both), steady(2, typing), steady(5, both))},
		// Everything stops: the busiest type is reported.
		"all types stop": {3 * time.Second, 20, silentAt(cat(steady(10, both), steady(5, map[string]int{})), 12, "MESSAGE_CREATE")},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			w := newSilenceWatch(tt.after, tt.events)
			now := time.Unix(1000, 0)
			w.check(now, false)
			reported := false
			for i, s := range tt.secs {
				for typ, n := range s.counts {
					w.observe(typ, n)
				}
				now = now.Add(time.Second)
				got, _ := w.check(now, false)
				if reported {
					continue // the shell resets after a report
				}
				if got != s.want {
					t.Fatalf("second %d: check = %q, want %q", i, got, s.want)
				}
				if got != "" {
					reported = true
					w.reset()
				}
			}
		})
	}
}

// TestSilenceWatchReset: after a cycle the silent type must build a new
// baseline, so a type that really ended costs one cycle only.
func TestSilenceWatchReset(t *testing.T) {
	w := newSilenceWatch(2*time.Second, 10)
	now := time.Unix(1000, 0)
	w.check(now, false)
	for range 10 {
		w.observe("A", 10)
		now = now.Add(time.Second)
		w.check(now, false)
	}
	var reports int
	for range 60 {
		now = now.Add(time.Second)
		if typ, _ := w.check(now, false); typ != "" {
			reports++
			w.reset()
		}
	}
	if reports != 1 {
		t.Errorf("%d reports over a minute of a type that ended, want 1", reports)
	}
}

// TestSilenceWatchHeld: time the broker held publishing back is not
// silence. A type flowing at 10/s, then 5 s held (nothing published), then
// a second quiet: no report, since the shard was only quiet for that one
// second; it is reported once its absence outlasts the window again. B,
// a burst shorter than the window before the hold (GUILD_CREATEs after
// READY), never has a baseline, before the hold or after.
func TestSilenceWatchHeld(t *testing.T) {
	w := newSilenceWatch(2*time.Second, 10)
	now := time.Unix(1000, 0)
	w.check(now, false)
	for i := range 10 {
		if i < 2 {
			w.observe("B", 300)
		}
		w.observe("A", 10)
		now = now.Add(time.Second)
		w.check(now, false)
	}
	for i := range 5 {
		now = now.Add(time.Second)
		if typ, _ := w.check(now, true); typ != "" {
			t.Fatalf("held second %d: reported %s", i+1, typ)
		}
	}
	now = now.Add(time.Second)
	if typ, _ := w.check(now, false); typ != "" {
		t.Fatalf("1 s after the hold: reported %s, want nothing", typ)
	}
	now = now.Add(time.Second)
	if typ, _ := w.check(now, false); typ != "A" {
		t.Fatalf("2 s after the hold: reported %q, want A", typ)
	}
}

func TestPublishStalled(t *testing.T) {
	t0 := time.Unix(1000, 0)
	for _, tc := range []struct {
		unanswered int
		since      time.Duration
		want       bool
	}{
		{0, time.Hour, false},             // nothing outstanding: idle, not stalled
		{3, 10 * time.Millisecond, false}, // answers coming
		{1, stallAfter - time.Millisecond, false},
		{1, stallAfter, true},
		{64, 5 * time.Second, true},
	} {
		if got := publishStalled(tc.unanswered, t0, t0.Add(tc.since)); got != tc.want {
			t.Errorf("publishStalled(%d, %v since progress) = %v, want %v", tc.unanswered, tc.since, got, tc.want)
		}
	}
}

// TestNodeSilentShard: the simulator silences MESSAGE_CREATE on shard 1's
// connection while its heartbeats are answered. The node notices from the
// shard's own rate, cycles it by RESUME (no IDENTIFY), and MESSAGE_CREATE
// flows again; the other shards are left alone.
func TestNodeSilentShard(t *testing.T) {
	cfg := testSimConfig()
	cfg.EventTypes = []string{"MESSAGE_CREATE", "TYPING_START"}
	srv, api := startSim(t, cfg)
	b := newMemBroker(t)
	nc := testNodeConfig(t, api, b)
	nc.SilenceAfter, nc.SilenceEvents = 500*time.Millisecond, 20
	n, _ := runNode(t, nc)
	waitFor(t, 10*time.Second, "all shards ready", func() bool { return allReady(n) })
	time.Sleep(time.Second) // baselines
	if s := n.Metrics().Silences; s != 0 {
		t.Fatalf("%d silent cycles before any fault", s)
	}
	before := srv.Stats()
	if _, err := srv.ApplyFault(sim.Fault{Kind: sim.FaultSilence, EventType: "MESSAGE_CREATE", Shards: []int{1}, UntilResume: true}); err != nil {
		t.Fatal(err)
	}
	applied := time.Now()
	waitFor(t, 10*time.Second, "the silent shard cycled", func() bool { return n.Metrics().Silences >= 1 })
	t.Logf("silent shard cycled %v after the fault", time.Since(applied).Round(10*time.Millisecond))
	waitFor(t, 10*time.Second, "MESSAGE_CREATE on shard 1 after the cycle", func() bool {
		for _, e := range b.events(t) {
			if e.shard == 1 && e.typ == "MESSAGE_CREATE" && e.simID != "" && mustAtoi(t, e.simID) > before.EventIDs {
				return true
			}
		}
		return false
	})
	time.Sleep(time.Second)
	after := srv.Stats()
	if after.Identifies != before.Identifies {
		t.Errorf("%d IDENTIFYs during the cycle, want 0 (RESUME)", after.Identifies-before.Identifies)
	}
	if after.Resumes <= before.Resumes {
		t.Errorf("no RESUME after the silence")
	}
	if s := n.Metrics().Silences; s != 1 {
		t.Errorf("%d silent cycles, want exactly 1 (shard 1 once)", s)
	}
	checkStream(t, b.events(t))
}

func mustAtoi(t testing.TB, s string) int64 {
	t.Helper()
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		t.Fatalf("%q: %v", s, err)
	}
	return n
}
