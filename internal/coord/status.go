package coord

import (
	"net/http"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/coord/coordapi"
)

// Status returns the coordinator's state: a follower's is the leader's
// last view.
func (c *Coordinator) Status() coordapi.Status {
	me := c.Replica()
	if v, age, ok := c.followerView(); ok {
		st := v.Status
		st.Replica, st.Leader, st.ViewAge = &me, c.leader(), age.Milliseconds()
		return st
	}
	st := coordapi.Status{ShardCount: c.shardCount(), MaxConcurrency: c.cfg.MaxConcurrency, Identify: c.Queue(), Replica: &me, Leader: c.leader()}
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
