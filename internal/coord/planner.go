package coord

import (
	"net/http"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/coord/coordapi"
	"github.com/gatehouse-dev/gatehouse/internal/shard"
)

// Planner runs the shard-count planner on the guild counts reported so far
// (node heartbeats and Shardman beats) and returns its advice.
func (c *Coordinator) Planner(now time.Time) (coordapi.PlannerState, error) {
	if v, _, ok := c.followerView(); ok {
		return v.Planner, nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	guilds := c.reportedGuildsLocked(now)
	rec := c.recommended
	if rec == 0 {
		rec = 1
	}
	d, st, err := c.planner.Plan(shard.Input{Recommended: rec, MaxConcurrency: c.cfg.MaxConcurrency, Current: c.shardCount(),
		Guilds: guilds, Now: now}, c.plan)
	if err != nil {
		return coordapi.PlannerState{}, err
	}
	c.plan = st
	return coordapi.PlannerState{Current: c.shardCount(), Recommended: c.recommended, MaxConcurrency: c.cfg.MaxConcurrency,
		Reported: d.Reported, Guilds: d.Guilds, Action: d.Action.String(), Target: d.Count, Needed: d.Needed,
		Reason: d.Reason, Reshard: d.Reshard()}, nil
}

func (c *Coordinator) plannerState(w http.ResponseWriter, r *http.Request) error {
	st, err := c.Planner(time.Now())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, st)
	return nil
}
