package coord

import (
	"net/http"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/shard"
)

// PlannerState is the shard-count planner's view, as GET /v1/planner shows
// it: what the reported guild counts call for. The coordinator does not
// reshard on its own yet; this is advice.
type PlannerState struct {
	Current        int    `json:"current_shards"`
	Recommended    int    `json:"recommended_shards"`
	MaxConcurrency int    `json:"max_concurrency"`
	Reported       int    `json:"shards_reporting"`
	Guilds         int64  `json:"guilds"`
	Action         string `json:"action"`
	Target         int    `json:"target_shards"`
	Needed         int    `json:"needed_shards"`
	Reason         string `json:"reason"`
	Reshard        bool   `json:"reshard_advised"`
}

// Planner runs the shard-count planner on the guild counts reported so far
// (node heartbeats and Shardman beats) and returns its advice.
func (c *Coordinator) Planner(now time.Time) (PlannerState, error) {
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
		return PlannerState{}, err
	}
	c.plan = st
	return PlannerState{Current: c.shardCount(), Recommended: c.recommended, MaxConcurrency: c.cfg.MaxConcurrency,
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
