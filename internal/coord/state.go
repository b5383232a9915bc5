package coord

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/coord/coordapi"
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
	Version    int `json:"version"`
	ShardCount int `json:"shard_count"`
	// Resharded says ShardCount came from a reshard: it wins over the
	// configured count on the next start.
	Resharded bool          `json:"resharded,omitempty"`
	NextToken uint64        `json:"next_token"`
	Leases    []lease.Lease `json:"leases"`
	// Shardman are the Shardman workers' sessions. Beats are not saved:
	// a restored session counts from the restore, as if it had just beaten.
	Shardman []savedSession `json:"shardman,omitempty"`
	// Glance are the glance shards' states; health reports are not saved
	// either, and count from the restore.
	Glance []savedGlance `json:"glance,omitempty"`
	// Reshard is a reshard under way: its progress, both generations'
	// publish modes and the new generation's leases, so a restarted
	// coordinator carries it on.
	Reshard *savedReshard `json:"reshard,omitempty"`
}

type savedReshard struct {
	Progress  coordapi.Reshard `json:"progress"`
	Mode      string           `json:"mode"`
	NextMode  string           `json:"next_mode"`
	NextToken uint64           `json:"next_token"`
	Leases    []lease.Lease    `json:"leases"`
}

type savedSession struct {
	ID         string          `json:"id"`
	Shard      int             `json:"shard"`
	Connected  time.Time       `json:"connected"`
	GuildCount *int            `json:"guild_count"`
	Latency    *float64        `json:"latency"`
	Extra      json.RawMessage `json:"extra,omitempty"`
}

type savedGlance struct {
	Cluster string      `json:"cluster"`
	ID      int         `json:"id"`
	State   GlanceState `json:"state"`
	Changed time.Time   `json:"changed"`
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
	if st.Resharded && st.ShardCount != c.shardCount() && st.ShardCount > 0 && st.ShardCount <= maxShards {
		c.log.Warn("a reshard set the shard count; it wins over the configured one (reshard again to change it)", "shard_count", st.ShardCount, "configured", c.shardCount())
		c.mu.Lock()
		c.count.Store(int64(st.ShardCount))
		c.fleet.count = st.ShardCount
		c.fleet.reshard = &coordapi.Reshard{To: st.ShardCount, Phase: coordapi.PhaseDone, Note: "restored: an earlier reshard set this count"}
		c.resizeShardmanLocked(st.ShardCount)
		c.mu.Unlock()
	}
	if st.ShardCount != c.shardCount() {
		c.log.Warn("saved leases are for another shard count; dropping them", "saved", st.ShardCount, "now", c.shardCount())
		leases = nil
	}
	now := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.fleet.leases.Restore(leases, max(st.NextToken, 1)); err != nil {
		return fmt.Errorf("coord: saved state: %w", err)
	}
	sessions := 0
	for _, ss := range st.Shardman {
		if ss.Shard < 0 || ss.Shard >= c.shardCount() || ss.ID == "" || c.shardman.byShard[ss.Shard] != nil {
			continue // another shard count, or a duplicate
		}
		sess := &shardmanSession{id: ss.ID, shard: ss.Shard, connected: ss.Connected, lastBeat: now,
			guildCount: ss.GuildCount, latency: ss.Latency, extra: ss.Extra}
		c.shardman.byShard[ss.Shard], c.shardman.byID[ss.ID] = sess, sess
		sessions++
	}
	for _, g := range st.Glance {
		if g.State < 0 || int(g.State) >= len(glanceNames) {
			continue
		}
		sh, err := c.glance.get(now, glanceKey{g.Cluster, g.ID})
		if err != nil {
			break
		}
		sh.state, sh.changed = g.State, g.Changed
		if watched(g.State) {
			sh.lastHealth = now // the health interval starts again
		}
	}
	if sr := st.Reshard; sr != nil && sr.Progress.Running() && sr.Progress.From == c.shardCount() && sr.Progress.To > 0 && sr.Progress.To <= maxShards {
		if err := c.restoreReshardLocked(now, sr); err != nil {
			c.log.Warn("the saved reshard cannot be restored; it is called off", "err", err)
		} else {
			c.log.Info("reshard restored", "from", sr.Progress.From, "to", sr.Progress.To, "phase", sr.Progress.Phase)
		}
	}
	c.fleet.dirty = false
	c.log.Info("state restored", "leases", len(leases), "next_token", st.NextToken, "shardman_sessions", sessions, "glance_shards", len(st.Glance))
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
	resharded := c.fleet.reshard != nil && c.fleet.reshard.Phase == coordapi.PhaseDone
	st := savedState{Version: stateVersion, ShardCount: c.shardCount(), Resharded: resharded, NextToken: c.fleet.leases.NextToken(), Leases: c.fleet.leases.Leases()}
	for _, s := range c.shardman.byShard {
		if s != nil {
			st.Shardman = append(st.Shardman, savedSession{ID: s.id, Shard: s.shard, Connected: s.connected, GuildCount: s.guildCount, Latency: s.latency, Extra: s.extra})
		}
	}
	for _, g := range c.glance.list() {
		st.Glance = append(st.Glance, savedGlance{Cluster: g.Cluster, ID: g.ID, State: GlanceState(g.State), Changed: g.Changed})
	}
	if f := c.fleet; f.reshard.Running() && f.next != nil {
		st.Reshard = &savedReshard{Progress: *f.reshard, Mode: f.mode, NextMode: f.next.mode,
			NextToken: f.next.leases.NextToken(), Leases: f.next.leases.Leases()}
	}
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

// restoreReshardLocked brings back a reshard saved under way: the new
// generation with its leases, and both modes. Its phase goes on from
// where it was; the phase's wait starts again.
func (c *Coordinator) restoreReshardLocked(now time.Time, sr *savedReshard) error {
	f := c.fleet
	nf, err := newFleet(sr.Progress.To, f.ttl, f.bucketAligned, f.maxConc, max(sr.NextToken, 1))
	if err != nil {
		return err
	}
	if err := nf.leases.Restore(sr.Leases, max(sr.NextToken, 1)); err != nil {
		return err
	}
	nf.nodes, nf.drained, nf.mode = f.nodes, f.drained, sr.NextMode
	p := sr.Progress
	p.PhaseSince = now.UTC()
	f.next, f.mode, f.reshard = nf, sr.Mode, &p
	return nil
}
