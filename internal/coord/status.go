package coord

import (
	"net/http"
	"time"
)

// Status is the coordinator's state as GET /v1/status shows it.
type Status struct {
	ShardCount     int               `json:"shard_count"`
	MaxConcurrency int               `json:"max_concurrency"`
	Identify       IdentifyQueue     `json:"identify"`
	Nodes          []NodeInfo        `json:"nodes"`
	Leases         []ShardLease      `json:"leases"`
	Shardman       []ShardmanSession `json:"shardman_sessions"`
	Glance         []GlanceShard     `json:"glance_shards"`
	// Reshard is the reshard under way or the last one; nil when there
	// was none.
	Reshard *Reshard `json:"reshard"`
}

// Status returns the coordinator's state.
func (c *Coordinator) Status() Status {
	st := Status{ShardCount: c.shardCount(), MaxConcurrency: c.cfg.MaxConcurrency, Identify: c.Queue()}
	c.mu.Lock()
	st.Nodes, st.Leases = c.fleet.status(time.Now())
	st.Shardman = c.shardman.list()
	st.Glance = c.glance.list()
	if c.fleet.reshard != nil {
		r := *c.fleet.reshard
		st.Reshard = &r
	}
	c.mu.Unlock()
	return st
}

func (c *Coordinator) status(w http.ResponseWriter, r *http.Request) error {
	writeJSON(w, http.StatusOK, c.Status())
	return nil
}
