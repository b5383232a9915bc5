package coord

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/lease"
)

// StateStore keeps the coordinator's state across restarts: in a
// deployment, a key of the JetStream KV bucket the nodes' sessions live in.
type StateStore interface {
	// LoadCoordinator returns the saved state, or nil when none was saved.
	LoadCoordinator(ctx context.Context) ([]byte, error)
	// SaveCoordinator replaces the saved state.
	SaveCoordinator(ctx context.Context, state []byte) error
}

// savedState is what the coordinator keeps in the StateStore.
type savedState struct {
	Version    int           `json:"version"`
	ShardCount int           `json:"shard_count"`
	NextToken  uint64        `json:"next_token"`
	Leases     []lease.Lease `json:"leases"`
}

const stateVersion = 1

// Load restores the state saved by an earlier run: the shard leases and
// the fencing-token counter, so nodes keep their shards and tokens across
// a coordinator restart and no token is issued twice. Leases saved for
// another shard count are dropped (the token counter is kept). Call it
// before serving; without a Config.State it does nothing.
func (c *Coordinator) Load(ctx context.Context) error {
	if c.cfg.State == nil {
		return nil
	}
	data, err := c.cfg.State.LoadCoordinator(ctx)
	if err != nil || data == nil {
		return err
	}
	var st savedState
	if err := json.Unmarshal(data, &st); err != nil {
		return fmt.Errorf("coord: saved state: %w", err)
	}
	if st.Version != stateVersion {
		return fmt.Errorf("coord: saved state has version %d; this coordinator reads %d", st.Version, stateVersion)
	}
	leases := st.Leases
	if st.ShardCount != c.cfg.ShardCount {
		c.log.Warn("saved leases are for another shard count; dropping them", "saved", st.ShardCount, "now", c.cfg.ShardCount)
		leases = nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.fleet.leases.Restore(leases, max(st.NextToken, 1)); err != nil {
		return fmt.Errorf("coord: saved state: %w", err)
	}
	c.fleet.dirty = false
	c.log.Info("state restored", "leases", len(leases), "next_token", st.NextToken)
	return nil
}

// save writes the state when it changed since the last save.
func (c *Coordinator) save(ctx context.Context, force bool) {
	if c.cfg.State == nil {
		return
	}
	c.mu.Lock()
	if !c.fleet.dirty && !force {
		c.mu.Unlock()
		return
	}
	st := savedState{Version: stateVersion, ShardCount: c.cfg.ShardCount, NextToken: c.fleet.leases.NextToken(), Leases: c.fleet.leases.Leases()}
	c.fleet.dirty = false
	c.mu.Unlock()
	data, err := json.Marshal(st)
	if err == nil {
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err = c.cfg.State.SaveCoordinator(sctx, data)
		cancel()
	}
	if err != nil {
		c.log.Warn("saving the coordinator's state failed; retrying", "err", err)
		c.mu.Lock()
		c.fleet.dirty = true
		c.mu.Unlock()
	}
}
