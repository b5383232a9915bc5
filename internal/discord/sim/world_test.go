package sim

import (
	"math"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gatehouse-dev/gatehouse/internal/discord"
)

func TestWorldDeterministic(t *testing.T) {
	ids := func(seed int64) []discord.Snowflake {
		w := newWorld(seed, 500)
		var out []discord.Snowflake
		for i := range w.table.len() {
			out = append(out, w.table.get(i).id)
		}
		return out
	}
	a, b := ids(7), ids(7)
	if diff := cmp.Diff(a, b); diff != "" {
		t.Errorf("newWorld(7) twice differs (-first +second):\n%s", diff)
	}
	if slices.Equal(a, ids(8)) {
		t.Errorf("newWorld(7) and newWorld(8) give the same guild IDs")
	}
}

func TestWorldGuildIDs(t *testing.T) {
	const n = 20000
	w := newWorld(1, n)
	var prev discord.Snowflake
	smallish, huge := 0, 0
	for i := range w.table.len() {
		g := w.table.get(i)
		if g.id <= prev {
			t.Fatalf("guild %d ID %d not above the previous %d", i, g.id, prev)
		}
		prev = g.id
		if ts := g.id.Time(); ts.Before(worldStart) || !ts.Before(worldEnd) {
			t.Fatalf("guild %d created %v, want within [%v, %v)", i, ts, worldStart, worldEnd)
		}
		if g.members < 2 || g.text < 2 || g.roles < 2 {
			t.Fatalf("guild %d: members %d text %d roles %d, want at least 2 each", i, g.members, g.text, g.roles)
		}
		if g.members <= 120 {
			smallish++
		}
		if g.members > 100000 {
			huge++
		}
		if got, ok := w.byID[g.id]; !ok || got != i {
			t.Fatalf("byID[%d] = %d, %v; want %d", g.id, got, ok, i)
		}
	}
	if f := float64(smallish) / n; f < 0.65 || f > 0.75 {
		t.Errorf("%.2f of guilds have at most 120 members, want about 0.70", f)
	}
	if huge == 0 || huge > n/50 {
		t.Errorf("%d guilds above 100k members, want a few (about 0.5%%)", huge)
	}
}

// TestWorldShardSpread checks that (id >> 22) % n spreads guilds evenly.
func TestWorldShardSpread(t *testing.T) {
	const guilds = 50000
	w := newWorld(3, guilds)
	for _, n := range []int{2, 16, 100, 1000} {
		r := w.routeFor(n)
		want := float64(guilds) / float64(n)
		var chi2 float64
		total := 0
		for k, list := range r.shards {
			total += len(list)
			for _, gi := range list {
				if got := discord.ShardForGuild(w.table.get(gi).id, n); got != k {
					t.Fatalf("route %d lists guild %d on shard %d, but it routes to %d", n, gi, k, got)
				}
			}
			d := float64(len(list)) - want
			chi2 += d * d / want
		}
		if total != guilds {
			t.Errorf("route %d holds %d guilds, want %d", n, total, guilds)
		}
		// chi-square with n-1 degrees of freedom: mean n-1, sd sqrt(2(n-1)).
		if limit := float64(n-1) + 5*math.Sqrt(2*float64(n-1)); chi2 > limit {
			t.Errorf("route %d: chi-square %.0f above %.0f, guilds not spread evenly", n, chi2, limit)
		}
	}
}

func TestWorldJoinLeave(t *testing.T) {
	w := newWorld(1, 100)
	r := w.routeFor(4)
	count := func() int {
		c := 0
		for _, l := range r.shards {
			c += len(l)
		}
		return c
	}
	now := time.Date(2026, 8, 6, 0, 0, 0, 0, time.UTC)
	j1, j2 := w.join(now), w.join(now)
	g1, g2 := w.table.get(j1), w.table.get(j2)
	if g2.id <= g1.id || g1.id <= w.table.get(99).id {
		t.Errorf("joined guild IDs %d, %d not increasing after %d", g1.id, g2.id, w.table.get(99).id)
	}
	if got := count(); got != 102 {
		t.Errorf("route holds %d guilds after 2 joins, want 102", got)
	}
	left := w.leave()
	if g := w.table.get(left); g.state.Load()&guildLeft == 0 {
		t.Errorf("left guild %d has state %d, want guildLeft", left, g.state.Load())
	}
	if got := count(); got != 101 || len(w.live) != 101 {
		t.Errorf("after a leave: route %d guilds, live %d; want 101 and 101", got, len(w.live))
	}
	if _, ok := w.byID[w.table.get(left).id]; ok {
		t.Errorf("byID still has the guild that left")
	}
	for range 200 {
		w.leave()
	}
	if got := w.leave(); got != -1 || count() != 0 {
		t.Errorf("leave from an empty world = %d (route %d guilds), want -1 and 0", got, count())
	}
}

func TestMixPick(t *testing.T) {
	tests := []struct {
		name    string
		intents discord.Intents
		dm      bool
		allowed func(typ uint8) bool
	}{
		{"non-privileged: no presences, no members", discord.IntentsNonPrivileged, false, func(typ uint8) bool {
			return typ != evPresenceUpdate && typ != evMemberUpdate && typ != evMemberAdd && !evTypes[typ].dm
		}},
		{"messages only", discord.IntentGuildMessages, false, func(typ uint8) bool {
			return typ == evMessageCreate || typ == evMessageUpdate || typ == evMessageDelete
		}},
		{"DMs on shard 0", discord.IntentGuildMessages | discord.IntentDirectMessages, true, func(typ uint8) bool {
			return typ == evMessageCreate || typ == evMessageUpdate || typ == evMessageDelete || typ == evDMMessageCreate
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := newMix(tt.intents, nil)
			seen := map[uint8]int{}
			for i := range uint64(20000) {
				typ, ok := m.pick(mix64(i), tt.dm)
				if !ok {
					t.Fatalf("pick = !ok with intents %v", tt.intents)
				}
				if !tt.allowed(typ) {
					t.Fatalf("pick = %s, not allowed by %v", evTypes[typ].name, tt.intents)
				}
				seen[typ]++
			}
			if tt.dm && seen[evDMMessageCreate] == 0 {
				t.Errorf("no DM event in 20000 picks on shard 0")
			}
		})
	}
	if guildsOnly := newMix(discord.IntentGuilds, nil); func() bool { _, ok := guildsOnly.pick(1, false); return ok }() {
		t.Errorf("pick with GUILDS only = ok, want no generated type")
	}
	all := newMix(discord.IntentsAll, nil)
	presences := 0
	for i := range uint64(10000) {
		if typ, _ := all.pick(mix64(i), false); typ == evPresenceUpdate {
			presences++
		}
	}
	if presences < 5000 || presences > 6000 {
		t.Errorf("all intents: %d of 10000 are PRESENCE_UPDATE, want about 55%%", presences)
	}
}

func TestRates(t *testing.T) {
	tests := []struct {
		name     string
		perShard float64
		shards   int
		ticks    int
		dt       float64
	}{
		{"1/s over 100 shards", 1, 100, 500, 0.02},
		{"100/s over 10 shards", 100, 10, 50, 0.02},
		{"fractional 0.3/s", 0.3, 50, 1000, 0.01},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := rates{perShard: tt.perShard, seed: 9}
			per := make([]int, tt.shards)
			firstTick := map[int]bool{}
			for tick := range tt.ticks {
				r.counts(tt.shards, tt.dt, func(k, c int) {
					per[k] += c
					if tick == 0 {
						firstTick[k] = true
					}
				})
			}
			want := tt.perShard * float64(tt.ticks) * tt.dt
			for k, c := range per {
				if math.Abs(float64(c)-want) > 1 {
					t.Errorf("shard %d got %d events, want %.1f ± 1", k, c, want)
				}
			}
			if tt.perShard*tt.dt < 0.5 && len(firstTick) == tt.shards {
				t.Errorf("every shard fired in the first tick; want the phases spread")
			}
		})
	}
}
