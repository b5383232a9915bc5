package coord

import (
	"log/slog"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/coord/coordapi"
)

// TestReshardTriggers: a shard report of close 4011 starts an emergency
// reshard at once; with AutoReshard, guilds past the planner's threshold
// start one on the next check; without it, they do not.
func TestReshardTriggers(t *testing.T) {
	newC := func(auto bool) *Coordinator {
		c, err := New(Config{Tokens: Tokens{Admin: "a"}, ShardCount: 2, SessionStarts: -1, AutoReshard: auto, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	now := time.Now()
	beat := func(c *Coordinator, guilds int, errText string) {
		t.Helper()
		c.mu.Lock()
		o, err := c.fleet.beat(now, "a", coordapi.NodeBeat{})
		if err == nil {
			var reports []coordapi.ShardReport
			for _, h := range o.Assign {
				reports = append(reports, coordapi.ShardReport{Shard: h.Shard, State: "ready", Guilds: &guilds, Error: errText})
			}
			_, err = c.fleet.beat(now, "a", coordapi.NodeBeat{GenBeat: coordapi.GenBeat{ShardCount: 2, Shards: o.Assign, Reports: reports}})
		}
		c.mu.Unlock()
		if err != nil {
			t.Fatal(err)
		}
		c.stepReshard(now, true)
	}

	c := newC(false)
	beat(c, 1000, "gateway: close 4011: Sharding required")
	r := c.CurrentReshard()
	if !r.Running() || r.Trigger != "emergency" || r.To != 4 {
		t.Fatalf("after a 4011 report: %+v", r)
	}

	c = newC(false)
	beat(c, 2400, "")
	if r := c.CurrentReshard(); r != nil {
		t.Fatalf("a reshard without AutoReshard: %+v", r)
	}
	c = newC(true)
	beat(c, 2400, "")
	r = c.CurrentReshard()
	if !r.Running() || r.Trigger != "auto" || r.To <= 2 {
		t.Fatalf("guilds at 96%% of 2 × 2,500 with AutoReshard: %+v", r)
	}
}
