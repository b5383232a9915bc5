package coord

import (
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/coord/coordapi"
)

// nodeHeartbeat renews a node's leases and answers its orders.
func (c *Coordinator) nodeHeartbeat(w http.ResponseWriter, r *http.Request) error {
	var b coordapi.NodeBeat
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&b); err != nil {
		if statusOf(err) == http.StatusRequestEntityTooLarge {
			return err
		}
		return fmt.Errorf("%w: heartbeat body: %v", ErrBadRequest, err)
	}
	id := r.PathValue("node")
	now := time.Now()
	c.mu.Lock()
	o, err := c.fleet.beat(now, id, b)
	c.mu.Unlock()
	if err != nil {
		return err
	}
	c.stepReshard(now, false)
	if len(b.Released) > 0 || b.Next != nil && len(b.Next.Released) > 0 {
		// A shard came free: the node that takes it hears now rather than
		// at its next heartbeat, so a handoff's gap is a round trip.
		c.nudgeNodes()
	}
	if len(o.Assign) > 0 || len(o.Revoke) > 0 {
		c.log.Info("node orders", "node", id, "assign", len(o.Assign), "revoke", o.Revoke)
	}
	writeJSON(w, http.StatusOK, o)
	return nil
}

// nodeLeave releases a node's leases after a graceful shutdown, so its
// shards move at once instead of after the lease TTL.
func (c *Coordinator) nodeLeave(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("node")
	c.mu.Lock()
	released := c.fleet.leave(id)
	c.mu.Unlock()
	c.log.Info("node left", "node", id, "shards_released", len(released))
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (c *Coordinator) nodeList(w http.ResponseWriter, r *http.Request) error {
	c.mu.Lock()
	nodes, _ := c.fleet.status(time.Now())
	c.mu.Unlock()
	writeJSON(w, http.StatusOK, nodes)
	return nil
}

func (c *Coordinator) leaseList(w http.ResponseWriter, r *http.Request) error {
	c.mu.Lock()
	_, leases := c.fleet.status(time.Now())
	c.mu.Unlock()
	writeJSON(w, http.StatusOK, leases)
	return nil
}
