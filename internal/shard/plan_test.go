package shard

import (
	"errors"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// t0 is the time of the plans under test.
var t0 = time.Date(2026, 8, 6, 12, 0, 0, 0, time.UTC)

// even returns reports of n shards holding per guilds each.
func even(n, per int) map[int]int {
	m := make(map[int]int, n)
	for i := range n {
		m[i] = per
	}
	return m
}

// with returns m with the given shard: guilds pairs set, and a guild
// count of -1 removing the shard's report.
func with(m map[int]int, pairs ...int) map[int]int {
	for i := 0; i+1 < len(pairs); i += 2 {
		if pairs[i+1] < 0 {
			delete(m, pairs[i])
		} else {
			m[pairs[i]] = pairs[i+1]
		}
	}
	return m
}

func newPlanner(t *testing.T, cfg Config) *Planner {
	t.Helper()
	p, err := NewPlanner(cfg)
	if err != nil {
		t.Fatalf("NewPlanner(%+v): %v", cfg, err)
	}
	return p
}

func TestPlan(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		in   Input
		st   State
		want Decision // Reason is checked against reason instead
		// reason lists fragments the reason must contain.
		reason    []string
		wantState State
	}{
		{
			name:   "small bot starts with one shard",
			in:     Input{Recommended: 1, MaxConcurrency: 1},
			want:   Decision{Action: Start, Count: 1, Needed: 1},
			reason: []string{"no shards running: start 1 shard, as Discord recommends"},
		},
		{
			name:   "unknown recommendation starts one shard",
			in:     Input{},
			want:   Decision{Action: Start, Count: 1, Needed: 1},
			reason: []string{"start 1 shard, as Discord's recommendation is unknown"},
		},
		{
			name: "small bot with one quiet shard keeps it",
			in:   Input{Recommended: 1, MaxConcurrency: 1, Current: 1, Guilds: even(1, 340)},
			want: Decision{Action: Keep, Count: 1, Needed: 1, Guilds: 340, Reported: 1},
			reason: []string{
				"1 shard holds 340 guilds, 340 per shard on average (busiest: shard 0, 340)",
				"under the 500 shrink mark, but 1 shard is already the fewest allowed: keep 1 shard",
			},
		},
		{
			name:   "small bot grows when its one shard nears the cap",
			in:     Input{Recommended: 1, MaxConcurrency: 1, Current: 1, Guilds: even(1, 2300)},
			want:   Decision{Action: Grow, Count: 3, Needed: 3, Guilds: 2300, Reported: 1},
			reason: []string{"shard 0 holds 2,300 guilds, over the 2,250 high-water mark: grow from 1 to 3 shards"},
		},
		{
			name:   "start at the recommendation",
			in:     Input{Recommended: 9, MaxConcurrency: 1},
			want:   Decision{Action: Start, Count: 9, Needed: 9},
			reason: []string{"start 9 shards, as Discord recommends"},
		},
		{
			name: "growth goes at least to the recommendation",
			// 5,200 guilds need 6 shards, but Discord recommends 12.
			in:     Input{Recommended: 12, MaxConcurrency: 1, Current: 4, Guilds: even(4, 1300)},
			want:   Decision{Action: Grow, Count: 12, Needed: 12, Guilds: 5200, Reported: 4},
			reason: []string{"4 shards hold 5,200 guilds, 1,300 per shard on average, over the 1,250 grow mark: grow from 4 to 12 shards"},
		},
		{
			name:   "below the recommendation but within the marks keeps the count",
			in:     Input{Recommended: 12, MaxConcurrency: 1, Current: 10, Guilds: even(10, 1200)},
			want:   Decision{Action: Keep, Count: 10, Needed: 12, Guilds: 12000, Reported: 10},
			reason: []string{"fewer than the 12 Discord recommends but not over the 1,250 grow mark: keep 10 shards"},
		},
		{
			name: "shrinking stops at the recommendation",
			// 8,000 guilds need 8 shards, but Discord recommends 12.
			in:     Input{Recommended: 12, MaxConcurrency: 1, Current: 20, Guilds: even(20, 400), Now: t0},
			st:     State{LowSince: t0.Add(-25 * time.Hour)},
			want:   Decision{Action: Shrink, Count: 12, Needed: 12, Guilds: 8000, Reported: 20},
			reason: []string{"20 shards hold 8,000 guilds, 400 per shard on average, under the 500 shrink mark for 25h0m0s: shrink from 20 to 12 shards"},
		},
		{
			name: "large bot starts at a multiple of max_concurrency",
			in:   Input{Recommended: 150, MaxConcurrency: 16},
			// 150 rounds up to 10 × 16.
			want:   Decision{Action: Start, Count: 160, Needed: 160},
			reason: []string{"start 160 shards, Discord's recommendation of 150 rounded up to a multiple of max_concurrency 16"},
		},
		{
			name: "large bot grows to a multiple of 16",
			// 160 × 1,320 = 211,200 guilds need 212 shards: 14 × 16 = 224.
			in:     Input{Recommended: 160, MaxConcurrency: 16, Current: 160, Guilds: even(160, 1320)},
			want:   Decision{Action: Grow, Count: 224, Needed: 224, Guilds: 211200, Reported: 160},
			reason: []string{"1,320 per shard on average, over the 1,250 grow mark: grow from 160 to 224 shards"},
		},
		{
			name:   "large bot on a count that is not a multiple moves to one",
			in:     Input{Recommended: 160, MaxConcurrency: 16, Current: 150, Guilds: even(150, 1000)},
			want:   Decision{Action: Grow, Count: 160, Needed: 160, Guilds: 150000, Reported: 150},
			reason: []string{"150 shards is not a multiple of max_concurrency 16, and on large-bot sharding Discord closes such sessions with 4010: grow from 150 to 160 shards"},
		},
		{
			name: "one hot shard triggers growth",
			// 19 × 1,000 + 2,410 = 21,410 guilds, a mean of 1,070: the
			// mean alone would keep 20 shards; 22 hold them at the target.
			in:     Input{Recommended: 20, MaxConcurrency: 1, Current: 20, Guilds: with(even(20, 1000), 17, 2410)},
			want:   Decision{Action: Grow, Count: 22, Needed: 22, Guilds: 21410, Reported: 20},
			reason: []string{"shard 17 holds 2,410 guilds, over the 2,250 high-water mark: grow from 20 to 22 shards"},
		},
		{
			name: "one hot shard grows a large bot by one multiple",
			// 31 × 900 + 2,300 = 30,200 guilds need 31 shards, so 32:
			// the count the bot runs. The hot shard still forces a step,
			// and the smallest step is one more multiple of 16.
			in:     Input{Recommended: 32, MaxConcurrency: 16, Current: 32, Guilds: with(even(32, 900), 5, 2300)},
			want:   Decision{Action: Grow, Count: 48, Needed: 32, Guilds: 30200, Reported: 32},
			reason: []string{"shard 5 holds 2,300 guilds, over the 2,250 high-water mark: grow from 32 to 48 shards"},
		},
		{
			name:   "a shard over the cap is named with 4011",
			in:     Input{Recommended: 4, MaxConcurrency: 1, Current: 4, Guilds: with(even(4, 1000), 3, 2600)},
			want:   Decision{Action: Grow, Count: 6, Needed: 6, Guilds: 5600, Reported: 4},
			reason: []string{"shard 3 holds 2,600 guilds, over the 2,500 a shard may hold, so Discord closes its next IDENTIFY with 4011: grow from 4 to 6 shards"},
		},
		{
			name:   "the hottest of tied shards is the lowest",
			in:     Input{Recommended: 4, MaxConcurrency: 1, Current: 4, Guilds: with(even(4, 2300), 0, 2000)},
			want:   Decision{Action: Grow, Count: 9, Needed: 9, Guilds: 8900, Reported: 4},
			reason: []string{"shard 1 holds 2,300 guilds"},
		},
		{
			name:   "a mean over the grow mark grows to the target",
			in:     Input{Recommended: 10, MaxConcurrency: 1, Current: 10, Guilds: even(10, 1300)},
			want:   Decision{Action: Grow, Count: 13, Needed: 13, Guilds: 13000, Reported: 10},
			reason: []string{"10 shards hold 13,000 guilds, 1,300 per shard on average, over the 1,250 grow mark: grow from 10 to 13 shards"},
		},
		{
			name:   "a mean at the grow mark keeps the count",
			in:     Input{Recommended: 13, MaxConcurrency: 1, Current: 10, Guilds: even(10, 1250)},
			want:   Decision{Action: Keep, Count: 10, Needed: 13, Guilds: 12500, Reported: 10},
			reason: []string{"keep 10 shards"},
		},
		{
			name: "silent shards count at the mean of the others",
			// 12 shards report 1,400: the 4 silent ones count 1,400
			// each, for 22,400 guilds and 23 shards.
			in:   Input{Recommended: 16, MaxConcurrency: 1, Current: 16, Guilds: even(12, 1400)},
			want: Decision{Action: Grow, Count: 23, Needed: 23, Guilds: 22400, Reported: 12},
			reason: []string{
				"16 shards hold about 22,400 guilds, 1,400 per shard on average",
				"(12 of 16 shards reported; the 4 others count as their mean, 1,400 guilds)",
			},
		},
		{
			name: "one silent shard counts at the mean",
			// (900 + 1,000 + 1,100) / 3 = 1,000, so about 4,000 in all.
			in:     Input{Recommended: 4, MaxConcurrency: 1, Current: 4, Guilds: map[int]int{0: 900, 1: 1000, 3: 1100}},
			want:   Decision{Action: Keep, Count: 4, Needed: 4, Guilds: 4000, Reported: 3},
			reason: []string{"4 shards hold about 4,000 guilds", "keep 4 shards (3 of 4 shards reported; the other counts as their mean, 1,000 guilds)"},
		},
		{
			name:   "no reports keep the count",
			in:     Input{Recommended: 16, MaxConcurrency: 16, Current: 16},
			st:     State{LowSince: t0.Add(-time.Hour)},
			want:   Decision{Action: Keep, Count: 16, Needed: 16},
			reason: []string{"none of the 16 shards has reported its guilds yet: keep 16 shards"},
		},
		{
			name:      "a low mean starts the shrink clock",
			in:        Input{Recommended: 1, MaxConcurrency: 1, Current: 20, Guilds: even(20, 400), Now: t0},
			want:      Decision{Action: Keep, Count: 20, Needed: 8, Guilds: 8000, Reported: 20},
			reason:    []string{"under the 500 shrink mark since 2026-08-06T12:00:00Z: keep 20 shards, and shrink to 8 if it stays there until 2026-08-07T12:00:00Z"},
			wantState: State{LowSince: t0},
		},
		{
			name:      "a low mean short of the period keeps the count and the clock",
			in:        Input{Recommended: 1, MaxConcurrency: 1, Current: 20, Guilds: even(20, 400), Now: t0},
			st:        State{LowSince: t0.Add(-23 * time.Hour)},
			want:      Decision{Action: Keep, Count: 20, Needed: 8, Guilds: 8000, Reported: 20},
			reason:    []string{"since 2026-08-05T13:00:00Z"},
			wantState: State{LowSince: t0.Add(-23 * time.Hour)},
		},
		{
			name:   "a low mean for the whole period shrinks",
			in:     Input{Recommended: 1, MaxConcurrency: 1, Current: 20, Guilds: even(20, 400), Now: t0},
			st:     State{LowSince: t0.Add(-24 * time.Hour)},
			want:   Decision{Action: Shrink, Count: 8, Needed: 8, Guilds: 8000, Reported: 20},
			reason: []string{"under the 500 shrink mark for 24h0m0s: shrink from 20 to 8 shards"},
		},
		{
			name:   "a recovered mean stops the shrink clock",
			in:     Input{Recommended: 1, MaxConcurrency: 1, Current: 20, Guilds: even(20, 600), Now: t0},
			st:     State{LowSince: t0.Add(-23 * time.Hour)},
			want:   Decision{Action: Keep, Count: 20, Needed: 12, Guilds: 12000, Reported: 20},
			reason: []string{"between the 500 shrink and 1,250 grow marks: keep 20 shards"},
		},
		{
			name:      "a clock that went back restarts the shrink clock",
			in:        Input{Recommended: 1, MaxConcurrency: 1, Current: 20, Guilds: even(20, 400), Now: t0},
			st:        State{LowSince: t0.Add(time.Hour)},
			want:      Decision{Action: Keep, Count: 20, Needed: 8, Guilds: 8000, Reported: 20},
			wantState: State{LowSince: t0},
		},
		{
			name:   "a large bot shrinks to a multiple",
			in:     Input{Recommended: 16, MaxConcurrency: 16, Current: 64, Guilds: even(64, 300), Now: t0},
			st:     State{LowSince: t0.Add(-48 * time.Hour)},
			want:   Decision{Action: Shrink, Count: 32, Needed: 32, Guilds: 19200, Reported: 64},
			reason: []string{"shrink from 64 to 32 shards"},
		},
		{
			name: "custom thresholds",
			cfg:  Config{TargetGuilds: 2000, HighWater: 2400, ShrinkAfter: time.Hour},
			// The grow mark is 2,500 capped at 2,400; 10 × 2,350 is over
			// neither mark, and 10 shards hold 23,500 at 2,000 in 12.
			in:     Input{Recommended: 1, MaxConcurrency: 1, Current: 10, Guilds: even(10, 2350)},
			want:   Decision{Action: Keep, Count: 10, Needed: 12, Guilds: 23500, Reported: 10},
			reason: []string{"between the 1,000 shrink and 2,400 grow marks"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newPlanner(t, tc.cfg)
			if tc.in.Now.IsZero() {
				tc.in.Now = t0
			}
			got, st, err := p.Plan(tc.in, tc.st)
			if err != nil {
				t.Fatalf("Plan: %v", err)
			}
			for _, r := range tc.reason {
				if !strings.Contains(got.Reason, r) {
					t.Errorf("Reason = %q, want it to contain %q", got.Reason, r)
				}
			}
			got.Reason = ""
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("Plan decision mismatch (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.wantState, st); diff != "" {
				t.Errorf("Plan state mismatch (-want +got):\n%s", diff)
			}
			if got.Reshard() != (got.Action == Grow || got.Action == Shrink) {
				t.Errorf("Reshard() = %v for %v", got.Reshard(), got.Action)
			}
		})
	}
}

// TestPlanNoFlap runs a week of hourly plans in which the guilds swing
// around the target, and dip under the shrink mark for a few hours at a
// time, and checks that the planner never reshards.
func TestPlanNoFlap(t *testing.T) {
	for _, tc := range []struct {
		name    string
		current int // even
		mc      int
		// mean returns the mean guilds per shard at hour h.
		mean func(h int, r *rand.Rand) int
	}{
		{
			name: "around the target", current: 10, mc: 1,
			mean: func(_ int, r *rand.Rand) int { return 1000 + r.IntN(401) - 200 },
		},
		{
			name: "just under the grow mark", current: 10, mc: 1,
			mean: func(_ int, r *rand.Rand) int { return 1200 + r.IntN(51) }, // at most 1,250
		},
		{
			name: "around the shrink mark, never low for a day", current: 20, mc: 1,
			mean: func(h int, r *rand.Rand) int {
				if h%20 < 18 {
					return 460 + r.IntN(30) // under 500 for 18 hours...
				}
				return 510 + r.IntN(30) // ...then back over it
			},
		},
		{
			name: "large bot around the target", current: 160, mc: 16,
			mean: func(_ int, r *rand.Rand) int { return 1000 + r.IntN(301) - 150 },
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newPlanner(t, Config{})
			r := rand.New(rand.NewPCG(1, 2))
			var st State
			for h := range 7 * 24 {
				in := Input{Recommended: 1, MaxConcurrency: tc.mc, Current: tc.current, Now: t0.Add(time.Duration(h) * time.Hour)}
				in.Guilds = make(map[int]int, tc.current)
				mean := tc.mean(h, r)
				for s := 0; s < tc.current; s += 2 {
					// Shards differ from the mean by up to 10%, in pairs
					// that cancel out, so the mean is exact.
					dev := r.IntN(mean/10 + 1)
					in.Guilds[s], in.Guilds[s+1] = mean+dev, mean-dev
				}
				d, next, err := p.Plan(in, st)
				if err != nil {
					t.Fatalf("hour %d: Plan: %v", h, err)
				}
				if d.Action != Keep || d.Count != tc.current {
					t.Fatalf("hour %d: Plan = %v to %d, want keep %d: %s", h, d.Action, d.Count, tc.current, d.Reason)
				}
				st = next
			}
		})
	}
}

// TestPlanSettles checks that a count the planner chose is kept when the
// guilds stay as they were: growth and shrinking both land between the
// marks.
func TestPlanSettles(t *testing.T) {
	p := newPlanner(t, Config{})
	r := rand.New(rand.NewPCG(3, 4))
	for i := range 2000 {
		mc := []int{1, 1, 16, 32}[r.IntN(4)]
		current := 1 + r.IntN(300)
		if mc > 1 {
			current = mc * (1 + r.IntN(20))
		}
		total := int64(r.IntN(2500*current + 1))
		in := Input{Recommended: 1, MaxConcurrency: mc, Current: current, Guilds: spread(total, current), Now: t0}
		d, _, err := p.Plan(in, State{LowSince: t0.Add(-48 * time.Hour)})
		if err != nil {
			t.Fatalf("Plan(%+v): %v", in, err)
		}
		if !d.Reshard() {
			continue
		}
		in.Current, in.Guilds = d.Count, spread(total, d.Count)
		again, _, err := p.Plan(in, State{LowSince: t0.Add(-48 * time.Hour)})
		if err != nil {
			t.Fatalf("Plan(%+v): %v", in, err)
		}
		if again.Action != Keep {
			t.Errorf("case %d: %d guilds on %d shards: %v to %d (%s), then %v to %d (%s)",
				i, total, current, d.Action, d.Count, d.Reason, again.Action, again.Count, again.Reason)
		}
	}
}

// spread returns reports of total guilds spread as evenly as possible over
// n shards.
func spread(total int64, n int) map[int]int {
	m := make(map[int]int, n)
	for s := range n {
		m[s] = int(total / int64(n))
		if int64(s) < total%int64(n) {
			m[s]++
		}
	}
	return m
}

// TestPlanShrinkAfterSustainedPeriod steps an hour at a time through a low
// mean and checks that the shrink comes exactly when the mean has been low
// for ShrinkAfter, counting from the last time it was not.
func TestPlanShrinkAfterSustainedPeriod(t *testing.T) {
	p := newPlanner(t, Config{})
	var st State
	plan := func(h, per int) Decision {
		t.Helper()
		in := Input{Recommended: 1, MaxConcurrency: 1, Current: 20, Guilds: even(20, per), Now: t0.Add(time.Duration(h) * time.Hour)}
		d, next, err := p.Plan(in, st)
		if err != nil {
			t.Fatalf("hour %d: Plan: %v", h, err)
		}
		st = next
		return d
	}
	for h := range 12 {
		if d := plan(h, 400); d.Action != Keep {
			t.Fatalf("hour %d: %v to %d, want keep: %s", h, d.Action, d.Count, d.Reason)
		}
	}
	// One plan over the mark resets the clock.
	if d := plan(12, 520); d.Action != Keep || !st.LowSince.IsZero() {
		t.Fatalf("hour 12: %v, LowSince %v; want keep and the clock stopped", d.Action, st.LowSince)
	}
	for h := 13; h < 13+24; h++ {
		if d := plan(h, 400); d.Action != Keep {
			t.Fatalf("hour %d: %v to %d, want keep: %s", h, d.Action, d.Count, d.Reason)
		}
		if want := t0.Add(13 * time.Hour); !st.LowSince.Equal(want) {
			t.Fatalf("hour %d: LowSince = %v, want %v", h, st.LowSince, want)
		}
	}
	d := plan(13+24, 400)
	if d.Action != Shrink || d.Count != 8 {
		t.Fatalf("hour 37: %v to %d, want shrink to 8: %s", d.Action, d.Count, d.Reason)
	}
	if !st.LowSince.IsZero() {
		t.Errorf("after the shrink, LowSince = %v, want zero", st.LowSince)
	}
}

// TestPlanProperties checks random inputs against a brute-force reference
// for Needed and against the rules every decision keeps.
func TestPlanProperties(t *testing.T) {
	p := newPlanner(t, Config{})
	c := p.Config()
	r := rand.New(rand.NewPCG(5, 6))
	for i := range 20000 {
		mc := []int{0, 1, 2, 16, 32}[r.IntN(5)]
		in := Input{
			Recommended:    r.IntN(200),
			MaxConcurrency: mc,
			Current:        r.IntN(200),
			Guilds:         map[int]int{},
			Now:            t0,
		}
		for s := range in.Current {
			if r.IntN(10) > 0 { // a tenth of the shards stay silent
				in.Guilds[s] = r.IntN(2800)
			}
		}
		st := State{}
		if r.IntN(2) == 0 {
			st.LowSince = t0.Add(-time.Duration(r.IntN(48)) * time.Hour)
		}
		d, next, err := p.Plan(in, st)
		if err != nil {
			t.Fatalf("case %d: Plan(%+v): %v", i, in, err)
		}
		m := max(mc, 1)
		// The reference: the smallest multiple of m that is at least
		// the recommendation and holds the guilds at the target.
		want := 0
		for n := m; ; n += m {
			if n >= max(in.Recommended, 1) && (d.Reported == 0 || int64(n)*int64(c.TargetGuilds) >= d.Guilds) {
				want = n
				break
			}
		}
		if d.Needed != want {
			t.Errorf("case %d: Needed = %d, want %d (%d guilds, rec %d, mc %d)", i, d.Needed, want, d.Guilds, in.Recommended, mc)
		}
		switch d.Action {
		case Start:
			if in.Current != 0 || d.Count != d.Needed {
				t.Errorf("case %d: start %d from %d, Needed %d", i, d.Count, in.Current, d.Needed)
			}
		case Keep:
			if d.Count != in.Current || in.Current == 0 {
				t.Errorf("case %d: keep %d, Current %d", i, d.Count, in.Current)
			}
		case Grow:
			if d.Count <= in.Current || d.Count < d.Needed {
				t.Errorf("case %d: grow from %d to %d, Needed %d", i, in.Current, d.Count, d.Needed)
			}
		case Shrink:
			if d.Count >= in.Current || d.Count != d.Needed {
				t.Errorf("case %d: shrink from %d to %d, Needed %d", i, in.Current, d.Count, d.Needed)
			}
		default:
			t.Errorf("case %d: action %v", i, d.Action)
		}
		if d.Action != Keep && d.Count%m != 0 {
			t.Errorf("case %d: %v to %d, not a multiple of %d", i, d.Action, d.Count, m)
		}
		if d.Action != Keep && d.Count < max(in.Recommended, 1) {
			t.Errorf("case %d: %v to %d, below the recommendation %d", i, d.Action, d.Count, in.Recommended)
		}
		var hot bool
		for _, g := range in.Guilds {
			hot = hot || g > c.HighWater
		}
		if hot && in.Current > 0 && d.Action != Grow {
			t.Errorf("case %d: a shard over %d, but %v: %s", i, c.HighWater, d.Action, d.Reason)
		}
		if !next.LowSince.IsZero() && d.Action != Keep {
			t.Errorf("case %d: %v with LowSince %v kept", i, d.Action, next.LowSince)
		}
		if d.Reason == "" {
			t.Errorf("case %d: no reason", i)
		}
	}
}

func TestPlanInvalidInput(t *testing.T) {
	p := newPlanner(t, Config{})
	st := State{LowSince: t0.Add(-time.Hour)}
	for _, tc := range []struct {
		name string
		in   Input
		want string
	}{
		{"negative recommendation", Input{Recommended: -1, Now: t0}, "Recommended -1 is outside 0..1048576"},
		{"negative max_concurrency", Input{MaxConcurrency: -16, Now: t0}, "MaxConcurrency -16 is outside"},
		{"negative count", Input{Current: -1, Now: t0}, "Current -1 is outside"},
		{"count too large", Input{Current: MaxCount + 1, Now: t0}, "Current 1048577 is outside"},
		{"zero time", Input{Current: 1}, "Now is zero"},
		{"report for a shard past the count", Input{Current: 8, Guilds: map[int]int{8: 10}, Now: t0}, "Guilds reports shard 8, which is out of range for 8 shards"},
		{"report for a negative shard", Input{Current: 8, Guilds: map[int]int{-1: 10}, Now: t0}, "Guilds reports shard -1"},
		{"report before any shard runs", Input{Guilds: map[int]int{0: 10}, Now: t0}, "out of range for 0 shards"},
		{"negative guilds", Input{Current: 2, Guilds: map[int]int{1: -5}, Now: t0}, "shard 1 reports -5 guilds"},
		{"start count over the limit", Input{Recommended: MaxCount, MaxConcurrency: 3, Now: t0}, "that would take 1048578 shards"},
		{"guilds that need too many shards", Input{Current: MaxCount, Guilds: map[int]int{0: MaxCount}, Now: t0}, "more than 1048576"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, got, err := p.Plan(tc.in, st)
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("Plan error = %v, want ErrInvalid", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Plan error = %q, want it to contain %q", err, tc.want)
			}
			if got != st {
				t.Errorf("Plan state = %+v, want %+v unchanged", got, st)
			}
			if d != (Decision{}) {
				t.Errorf("Plan decision = %+v, want zero", d)
			}
		})
	}
}

func TestNewPlannerDefaults(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		want Config
	}{
		{"zero", Config{}, Config{TargetGuilds: 1000, HighWater: 2250, GrowAverage: 1250, ShrinkAverage: 500, ShrinkAfter: 24 * time.Hour}},
		{"target 2000 caps the grow mark at the high-water mark", Config{TargetGuilds: 2000},
			Config{TargetGuilds: 2000, HighWater: 2250, GrowAverage: 2250, ShrinkAverage: 1000, ShrinkAfter: 24 * time.Hour}},
		{"target 1 turns shrinking off", Config{TargetGuilds: 1},
			Config{TargetGuilds: 1, HighWater: 2250, GrowAverage: 2, ShrinkAverage: 0, ShrinkAfter: 24 * time.Hour}},
		{"set fields stay", Config{TargetGuilds: 800, HighWater: 2500, GrowAverage: 900, ShrinkAverage: 300, ShrinkAfter: time.Hour},
			Config{TargetGuilds: 800, HighWater: 2500, GrowAverage: 900, ShrinkAverage: 300, ShrinkAfter: time.Hour}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newPlanner(t, tc.cfg)
			if diff := cmp.Diff(tc.want, p.Config()); diff != "" {
				t.Errorf("NewPlanner(%+v).Config() mismatch (-want +got):\n%s", tc.cfg, diff)
			}
		})
	}
}

func TestNewPlannerInvalid(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"negative target", Config{TargetGuilds: -1}, "TargetGuilds -1 is negative"},
		{"negative high water", Config{HighWater: -1}, "HighWater -1 is negative"},
		{"negative grow mark", Config{GrowAverage: -1}, "GrowAverage -1 is negative"},
		{"negative shrink mark", Config{ShrinkAverage: -1}, "ShrinkAverage -1 is negative"},
		{"negative period", Config{ShrinkAfter: -time.Second}, "ShrinkAfter -1s is negative"},
		{"target over the cap", Config{TargetGuilds: 2600}, "TargetGuilds 2600 is above the 2,500 guilds a shard may hold"},
		{"high water over the cap", Config{HighWater: 2501}, "HighWater 2501 is above the 2,500 guilds"},
		{"target at the high water", Config{TargetGuilds: 2250}, "TargetGuilds 2250 must be below HighWater 2250"},
		{"target 2500 needs room above it", Config{TargetGuilds: 2500, HighWater: 2500}, "TargetGuilds 2500 must be below HighWater 2500"},
		{"grow mark at the target", Config{GrowAverage: 1000}, "GrowAverage 1000 must be above TargetGuilds 1000"},
		{"grow mark over the high water", Config{GrowAverage: 2300}, "GrowAverage 2300 is above HighWater 2250"},
		{"shrink mark at the target", Config{ShrinkAverage: 1000}, "ShrinkAverage 1000 must be below TargetGuilds 1000"},
		{"shrink mark over a custom target", Config{TargetGuilds: 400, ShrinkAverage: 500}, "ShrinkAverage 500 must be below TargetGuilds 400"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := NewPlanner(tc.cfg)
			if !errors.Is(err, ErrConfig) {
				t.Fatalf("NewPlanner(%+v) = %v, %v; want ErrConfig", tc.cfg, p, err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("NewPlanner(%+v) error = %q, want it to contain %q", tc.cfg, err, tc.want)
			}
		})
	}
}

func TestActionString(t *testing.T) {
	for a, want := range map[Action]string{Keep: "keep", Start: "start", Grow: "grow", Shrink: "shrink", 9: "Action(9)"} {
		if got := a.String(); got != want {
			t.Errorf("Action(%d).String() = %q, want %q", int(a), got, want)
		}
	}
}

func TestCommas(t *testing.T) {
	for n, want := range map[int64]string{0: "0", 7: "7", 999: "999", 1000: "1,000", 2410: "2,410", 123456: "123,456", 1234567: "1,234,567", -2500: "-2,500"} {
		if got := commas(n); got != want {
			t.Errorf("commas(%d) = %q, want %q", n, got, want)
		}
	}
}
