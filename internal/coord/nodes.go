package coord

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/coord/coordapi"
	"github.com/gatehouse-dev/gatehouse/internal/identify"
)

// nodeHeartbeat renews a node's leases and answers its orders. A replica
// writes the grants and releases the beat made to the lease authority
// first: an order goes out only once what it says is recorded.
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
	if b.Budget != nil && c.cfg.GatewayBot == nil {
		c.observeBudget(*b.Budget)
	}
	o, err := c.beat(r.Context(), id, b)
	if err != nil {
		return err
	}
	c.stepReshard(time.Now(), false)
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

// beat applies a heartbeat and, for a replica, writes what it changed
// through to the lease authority before the orders are final.
func (c *Coordinator) beat(ctx context.Context, id string, b coordapi.NodeBeat) (coordapi.NodeOrders, error) {
	if c.rep == nil {
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.fleet.beat(time.Now(), id, b)
	}
	c.rep.writeMu.Lock()
	defer c.rep.writeMu.Unlock()
	c.mu.Lock()
	o, err := c.fleet.beat(time.Now(), id, b)
	c.mu.Unlock()
	if err != nil {
		return o, err
	}
	if err := c.flushWrites(ctx, &o); err != nil {
		return coordapi.NodeOrders{}, err
	}
	o.Liveness = coordapi.LivenessKV
	return o, nil
}

// observeBudget takes the session-start budget a node read from Discord,
// for a coordinator without a bot token of its own.
func (c *Coordinator) observeBudget(b coordapi.SessionBudget) {
	if b.Remaining < 0 || b.Total < 0 || b.ResetAfterMS < 0 || b.AgeMS < 0 || b.AgeMS > int64(24*time.Hour/time.Millisecond) {
		return
	}
	now := time.Now()
	read := now.Add(-time.Duration(b.AgeMS) * time.Millisecond)
	c.gateNow().ObserveBudget(identify.Budget{Remaining: b.Remaining, Total: b.Total,
		ResetAt: read.Add(time.Duration(b.ResetAfterMS) * time.Millisecond)})
}

// nodeLeave releases a node's leases after a graceful shutdown, so its
// shards move at once instead of after the lease TTL.
func (c *Coordinator) nodeLeave(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("node")
	if c.rep != nil {
		c.rep.writeMu.Lock()
		defer c.rep.writeMu.Unlock()
	}
	c.mu.Lock()
	released := c.fleet.leave(id)
	c.mu.Unlock()
	if err := c.flushWrites(r.Context(), nil); err != nil {
		return err
	}
	c.log.Info("node left", "node", id, "shards_released", len(released))
	c.nudgeNodes()
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (c *Coordinator) nodeList(w http.ResponseWriter, r *http.Request) error {
	writeJSON(w, http.StatusOK, c.Status().Nodes)
	return nil
}

func (c *Coordinator) leaseList(w http.ResponseWriter, r *http.Request) error {
	writeJSON(w, http.StatusOK, c.Status().Leases)
	return nil
}
