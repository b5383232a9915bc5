package coord

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/broker"
	"github.com/gatehouse-dev/gatehouse/internal/coord/coordapi"
	"github.com/gatehouse-dev/gatehouse/internal/identify"
	"github.com/gatehouse-dev/gatehouse/internal/lease"
)

// savedState is what the leader keeps under "coordinator" in the control
// bucket, beside the lease records: what is not a lease but must survive
// a failover. The leases themselves are records of their own (see
// leaseBook), written before they are acted on.
type savedState struct {
	Version    int `json:"version"`
	ShardCount int `json:"shard_count"`
	// Resharded says ShardCount came from a reshard: it wins over the
	// configured count on the next start.
	Resharded bool `json:"resharded,omitempty"`
	// NextToken and Leases are what a coordinator of an older version
	// saved (its own token counter and leases). They are read only to
	// keep the token base above every token it issued.
	NextToken uint64        `json:"next_token,omitempty"`
	Leases    []lease.Lease `json:"leases,omitempty"`
	// Shardman are the Shardman workers' sessions. Beats are not saved:
	// a restored session counts from the restore, as if it had just beaten.
	Shardman []savedSession `json:"shardman,omitempty"`
	// Glance are the glance shards' states; health reports are not saved
	// either, and count from the restore.
	Glance []savedGlance `json:"glance,omitempty"`
	// Reshard is a reshard under way: its progress and both
	// generations' publish modes, so a new leader carries it on.
	Reshard *savedReshard `json:"reshard,omitempty"`
	// Drained are the nodes an operator drained.
	Drained []string `json:"drained,omitempty"`
}

type savedReshard struct {
	Progress coordapi.Reshard `json:"progress"`
	Mode     string           `json:"mode"`
	NextMode string           `json:"next_mode"`
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

// loadState reads the saved state and its revision from the control
// bucket, or, when there is none yet, what an older coordinator saved
// (revision 0). No state at all is the zero savedState.
func (c *Coordinator) loadState(ctx context.Context) (savedState, uint64, error) {
	var st savedState
	data, rev, err := c.rep.ctl.Ctl.Get(ctx, stateKey)
	switch {
	case errors.Is(err, broker.ErrNotFound):
		rev = 0
		if c.rep.ctl.Legacy == nil {
			return st, 0, nil
		}
		if data, err = c.rep.ctl.Legacy(ctx); err != nil {
			return st, 0, fmt.Errorf("coord: the older saved state: %w", err)
		}
		if data == nil {
			return st, 0, nil
		}
		c.log.Info("reading the state an older coordinator saved")
	case err != nil:
		return st, 0, fmt.Errorf("coord: saved state: %w", err)
	}
	if err := json.Unmarshal(data, &st); err != nil {
		return st, 0, fmt.Errorf("coord: saved state: %w", err)
	}
	if st.Version != stateVersion {
		return st, 0, fmt.Errorf("coord: saved state has version %d; this coordinator reads %d", st.Version, stateVersion)
	}
	return st, rev, nil
}

// restoreLocked applies saved state to a fresh leader state. The caller
// holds c.mu.
func (c *Coordinator) restoreLocked(now time.Time, st savedState) {
	if st.Resharded && st.ShardCount != c.shardCount() && st.ShardCount > 0 && st.ShardCount <= maxShards {
		c.log.Warn("a reshard set the shard count; it wins over the configured one (reshard again to change it)", "shard_count", st.ShardCount, "configured", c.shardCount())
		c.count.Store(int64(st.ShardCount))
		c.fleet.count = st.ShardCount
		c.fleet.reshard = &coordapi.Reshard{To: st.ShardCount, Phase: coordapi.PhaseDone, Note: "restored: an earlier reshard set this count"}
		c.resizeShardmanLocked(st.ShardCount)
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
	for _, id := range st.Drained {
		c.fleet.drained[id] = true
	}
	if sr := st.Reshard; sr != nil && sr.Progress.Running() && sr.Progress.From == c.shardCount() && sr.Progress.To > 0 && sr.Progress.To <= maxShards {
		if err := c.restoreReshardLocked(now, sr); err != nil {
			c.log.Warn("the saved reshard cannot be restored; it is called off", "err", err)
		} else {
			c.log.Info("reshard restored", "from", sr.Progress.From, "to", sr.Progress.To, "phase", sr.Progress.Phase)
		}
	}
	c.log.Info("state restored", "shardman_sessions", sessions, "glance_shards", len(st.Glance), "drained", len(st.Drained))
}

// save writes the state when it changed since the last save (or always,
// with force), by compare-and-set: a state someone else wrote means
// another coordinator leads, and this one steps down.
func (c *Coordinator) save(ctx context.Context, force bool) {
	if c.rep == nil || !c.Leading() {
		return
	}
	c.rep.writeMu.Lock()
	defer c.rep.writeMu.Unlock()
	c.mu.Lock()
	if !c.fleet.dirty && !force {
		c.mu.Unlock()
		return
	}
	resharded := c.fleet.reshard != nil && c.fleet.reshard.Phase == coordapi.PhaseDone
	st := savedState{Version: stateVersion, ShardCount: c.shardCount(), Resharded: resharded}
	for _, s := range c.shardman.byShard {
		if s != nil {
			st.Shardman = append(st.Shardman, savedSession{ID: s.id, Shard: s.shard, Connected: s.connected, GuildCount: s.guildCount, Latency: s.latency, Extra: s.extra})
		}
	}
	for _, g := range c.glance.list() {
		st.Glance = append(st.Glance, savedGlance{Cluster: g.Cluster, ID: g.ID, State: GlanceState(g.State), Changed: g.Changed})
	}
	for id := range c.fleet.drained {
		st.Drained = append(st.Drained, id)
	}
	slices.Sort(st.Drained)
	if f := c.fleet; f.reshard.Running() && f.next != nil {
		st.Reshard = &savedReshard{Progress: *f.reshard, Mode: f.mode, NextMode: f.next.mode}
	}
	c.fleet.dirty = false
	c.mu.Unlock()
	data, err := json.Marshal(st)
	if err != nil {
		return
	}
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var rev uint64
	if c.rep.stateRev == 0 {
		rev, err = c.rep.ctl.Ctl.Create(sctx, stateKey, data)
	} else {
		rev, err = c.rep.ctl.Ctl.Update(sctx, stateKey, data, c.rep.stateRev)
	}
	switch {
	case err == nil:
		c.rep.stateRev = rev
	case errors.Is(err, broker.ErrConflict):
		go c.stepDown("the saved state was written by another coordinator")
	default:
		c.log.Warn("saving the coordinator's state failed; retrying", "err", err)
		c.mu.Lock()
		c.fleet.dirty = true
		c.mu.Unlock()
	}
}

// restoreReshardLocked brings back a reshard saved under way: the new
// generation (its leases come from their records) and both modes. Its
// phase goes on from where it was; the phase's wait starts again.
func (c *Coordinator) restoreReshardLocked(now time.Time, sr *savedReshard) error {
	f := c.fleet
	nf, err := newFleetMode(sr.Progress.To, f.ttl, f.bucketAligned, f.maxConc, 1, f.journal)
	if err != nil {
		return err
	}
	nf.nodes, nf.drained, nf.live, nf.mode = f.nodes, f.drained, f.live, sr.NextMode
	p := sr.Progress
	p.PhaseSince = now.UTC()
	f.next, f.mode, f.reshard = nf, sr.Mode, &p
	return nil
}

// savedBudget is the identify budget under "identify": written before
// each grant is answered, so a new leader starts from what was spent.
type savedBudget struct {
	Remaining int       `json:"remaining"`
	Total     int       `json:"total,omitempty"`
	ResetAt   time.Time `json:"reset_at,omitzero"`
}

// loadBudget reads the saved identify budget; nil when none is saved.
func (c *Coordinator) loadBudget(ctx context.Context) (*identify.Budget, uint64, error) {
	data, rev, err := c.rep.ctl.Ctl.Get(ctx, identifyKey)
	switch {
	case errors.Is(err, broker.ErrNotFound):
		return nil, 0, nil
	case err != nil:
		return nil, 0, fmt.Errorf("coord: identify budget: %w", err)
	}
	var sb savedBudget
	if err := json.Unmarshal(data, &sb); err != nil {
		return nil, rev, nil // unreadable: start from Discord's figures
	}
	return &identify.Budget{Remaining: sb.Remaining, Total: sb.Total, ResetAt: sb.ResetAt}, rev, nil
}

// saveBudget writes the identify budget, by compare-and-set, before a
// grant is answered. The caller holds c.rep.writeMu.
func (c *Coordinator) saveBudget(ctx context.Context) error {
	b := c.gateNow().Budget()
	data, _ := json.Marshal(savedBudget{Remaining: b.Remaining, Total: b.Total, ResetAt: b.ResetAt.UTC()})
	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var rev uint64
	var err error
	if c.rep.identRev == 0 {
		rev, err = c.rep.ctl.Ctl.Create(sctx, identifyKey, data)
	} else {
		rev, err = c.rep.ctl.Ctl.Update(sctx, identifyKey, data, c.rep.identRev)
	}
	switch {
	case err == nil:
		c.rep.identRev = rev
		return nil
	case errors.Is(err, broker.ErrConflict):
		go c.stepDown("the identify budget was written by another coordinator")
		return fmt.Errorf("%w: another coordinator leads", ErrUnavailable)
	}
	return fmt.Errorf("%w: saving the identify budget: %v", ErrUnavailable, err)
}
