package coord

import (
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"strings"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/coord/coordapi"
	"github.com/gatehouse-dev/gatehouse/internal/shard"
)

// PlanReshard returns what resharding to `to` shards would take, and what
// stands in its way: a count that is not a multiple of max_concurrency on
// large-bot sharding, more than 2,500 guilds a shard, or a session-start
// budget that cannot cover the new generation plus the reserve (unless
// spendReserve: an operator's decision).
func (c *Coordinator) PlanReshard(now time.Time, to int, spendReserve bool) (coordapi.ReshardPlan, error) {
	if to < 1 || to > 1_000_000 {
		return coordapi.ReshardPlan{}, fmt.Errorf("%w: shard count %d: want 1 to 1000000", ErrBadRequest, to)
	}
	mc := max(c.cfg.MaxConcurrency, 1)
	q := c.Queue()
	c.mu.Lock()
	guilds := c.reportedGuildsLocked(now)
	c.mu.Unlock()
	var total int64
	for _, g := range guilds {
		total += int64(g)
	}
	if len(guilds) > 0 && len(guilds) < c.shardCount() {
		total = total * int64(c.shardCount()) / int64(len(guilds)) // shards not reporting count at the mean
	}
	interval := c.cfg.IdentifyInterval + max(c.cfg.IdentifyMargin, 0)
	p := coordapi.ReshardPlan{
		From: c.shardCount(), To: to, MaxConcurrency: mc, Identifies: to,
		Rounds: (to + mc - 1) / mc, ETASeconds: shard.StartTime(to, mc, interval).Seconds(),
		SessionStartsRemaining: q.Remaining, Reserve: c.reserve(), BudgetResetAt: q.ResetAt,
		Problems: []string{},
	}
	if total > 0 {
		p.GuildsPerShard = float64(total) / float64(to)
	}
	if to == p.From {
		p.Problems = append(p.Problems, fmt.Sprintf("the bot already runs %d shards", to))
	}
	if mc > 1 && to%mc != 0 {
		p.Problems = append(p.Problems, fmt.Sprintf("large-bot sharding needs a multiple of max_concurrency %d: try %d", mc, (to+mc-1)/mc*mc))
	}
	if p.GuildsPerShard > discordMaxGuildsPerShard {
		p.Problems = append(p.Problems, fmt.Sprintf("%.0f guilds a shard is over Discord's %d: use at least %d shards", p.GuildsPerShard, discordMaxGuildsPerShard, (total+discordMaxGuildsPerShard-1)/discordMaxGuildsPerShard))
	}
	keep := p.Reserve
	if spendReserve {
		keep = 0
	}
	if q.Remaining >= 0 {
		p.Fits = q.Remaining >= p.Identifies+keep
		if !p.Fits {
			msg := fmt.Sprintf("the session-start budget has %d left, the reshard needs %d plus a reserve of %d", q.Remaining, p.Identifies, keep)
			if keep > 0 && q.Remaining >= p.Identifies {
				msg += " (an operator may spend the reserve: spend_reserve, gatehouse reshard -spend-reserve)"
			}
			if q.ResetAt != nil {
				msg += fmt.Sprintf(": wait for the reset at %s (in %s)", q.ResetAt.UTC().Format(time.RFC3339), q.ResetAt.Sub(now).Round(time.Minute))
			}
			p.Problems = append(p.Problems, msg)
		}
	} else {
		p.Fits = true // no budget tracked (a simulator without limits)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "Reshard %d → %d shards: %d identifies in %d rounds of %d buckets, about %s.", p.From, p.To, p.Identifies, p.Rounds, mc, time.Duration(p.ETASeconds*float64(time.Second)).Round(time.Second))
	if p.GuildsPerShard > 0 {
		fmt.Fprintf(&b, " About %.0f guilds a shard.", p.GuildsPerShard)
	}
	if q.Remaining >= 0 {
		fmt.Fprintf(&b, " Session starts: %d left, %d needed plus a reserve of %d.", q.Remaining, p.Identifies, p.Reserve)
		if spendReserve {
			b.WriteString(" The operator lets it spend the reserve.")
		}
	}
	if len(p.Problems) > 0 {
		fmt.Fprintf(&b, " Cannot run: %s.", strings.Join(p.Problems, "; "))
	}
	p.Summary = b.String()
	return p, nil
}

// reserve is how many session starts every plan keeps: Config.Reserve, or
// ReservePercent of the daily total (Discord's figure, else 1000).
func (c *Coordinator) reserve() int {
	if c.cfg.Reserve > 0 {
		return c.cfg.Reserve
	}
	if c.cfg.ReservePercent <= 0 {
		return 0
	}
	total := c.gateNow().Budget().Total
	if total <= 0 {
		total = 1000
	}
	return int(math.Ceil(float64(total) * c.cfg.ReservePercent / 100))
}

// discordMaxGuildsPerShard is Discord's cap: a session over it is closed
// with 4011.
const discordMaxGuildsPerShard = 2500

// StartReshard starts a reshard to `to` shards (see coordapi.Reshard), after the
// pre-flight: it refuses with ErrConflict, and the plan's problems, when
// the plan cannot run, when a reshard is under way, or while Shardman
// workers hold shards (they run one count and must be restarted with the
// new one).
func (c *Coordinator) StartReshard(now time.Time, to int, trigger string, spendReserve bool) (coordapi.ReshardPlan, error) {
	plan, err := c.PlanReshard(now, to, spendReserve)
	if err != nil {
		return plan, err
	}
	if len(plan.Problems) > 0 {
		return plan, fmt.Errorf("%w: the reshard cannot run: %s", ErrConflict, strings.Join(plan.Problems, "; "))
	}
	if c.rep != nil {
		// Records of the new count from an earlier reshard must not stand
		// in the way of its grants.
		c.rep.writeMu.Lock()
		err := c.rep.book.clear(c.termContext(), to)
		c.rep.writeMu.Unlock()
		if err != nil {
			return plan, fmt.Errorf("%w: clearing old lease records of %d shards: %v", ErrUnavailable, to, err)
		}
	}
	c.mu.Lock()
	if n := len(c.shardman.byID); n > 0 {
		c.mu.Unlock()
		return plan, fmt.Errorf("%w: %d Shardman workers hold shards of the current count; a reshard moves gateway nodes only", ErrConflict, n)
	}
	err = c.fleet.startReshard(now, to, trigger, time.Duration(plan.ETASeconds*float64(time.Second)))
	c.mu.Unlock()
	if err != nil {
		return plan, err
	}
	c.log.Info("reshard started", "from", plan.From, "to", to, "trigger", trigger, "identifies", plan.Identifies, "eta", time.Duration(plan.ETASeconds*float64(time.Second)).Round(time.Second))
	c.nudgeNodes()
	return plan, nil
}

// CurrentReshard returns the reshard under way or the last one, nil when
// there was none.
func (c *Coordinator) CurrentReshard() *coordapi.Reshard {
	if v, _, ok := c.followerView(); ok {
		return v.Status.Reshard
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fleet.reshard == nil {
		return nil
	}
	r := *c.fleet.reshard
	return &r
}

// stepReshard moves a reshard on, starts one when a shard closed with
// 4011 (and, with AutoReshard, when the planner advises one), and tells
// the nodes at once when its phase changed. sweep says it runs from the
// timer, not a heartbeat.
func (c *Coordinator) stepReshard(now time.Time, sweep bool) {
	c.mu.Lock()
	changed, switched := c.fleet.stepReshard(now, reshardTiming{settle: c.cfg.ReshardSettle, handoverTimeout: c.cfg.ReshardHandoverTimeout})
	var r coordapi.Reshard
	running := c.fleet.reshard.Running()
	if c.fleet.reshard != nil {
		r = *c.fleet.reshard
	}
	if switched {
		c.count.Store(int64(r.To))
		if len(c.shardman.byID) == 0 {
			c.resizeShardmanLocked(r.To)
		}
		if c.rep != nil {
			c.rep.termWG.Go(func() { c.clearGeneration(r.From) })
		}
	}
	emergency := c.fleet.shardingRequired && !running
	c.fleet.shardingRequired = false
	auto := sweep && c.cfg.AutoReshard && !running && !now.Before(c.nextAuto)
	if auto {
		c.nextAuto = now.Add(30 * time.Second)
	}
	c.mu.Unlock()
	if changed {
		c.log.Info("reshard", "phase", r.Phase, "from", r.From, "to", r.To, "note", r.Note)
		c.nudgeNodes()
	}
	switch {
	case emergency:
		to := c.emergencyTarget(now)
		c.log.Error("Discord closed a shard with 4011 (sharding required): resharding now", "from", c.shardCount(), "to", to)
		if _, err := c.StartReshard(now, to, "emergency", false); err != nil {
			c.log.Error("the emergency reshard cannot start", "to", to, "err", err)
		}
	case auto:
		st, err := c.Planner(now)
		if err != nil || !st.Reshard || st.Target == c.shardCount() {
			return
		}
		if _, err := c.StartReshard(now, st.Target, "auto", false); err != nil {
			c.log.Warn("the planner advises a reshard that cannot start", "to", st.Target, "err", err)
		}
	}
}

// resizeShardmanLocked gives Shardman an empty table of count shards, with
// the same view of the shards leased to nodes. The caller holds c.mu.
func (c *Coordinator) resizeShardmanLocked(count int) {
	sm := newShardman(count, c.cfg.BeatTimeout)
	sm.taken = c.shardman.taken
	c.shardman = sm
}

// emergencyTarget is the count an emergency reshard moves to: the
// planner's target when it is higher, else the next count (a multiple of
// max_concurrency) at least twice the current one's guilds allow.
func (c *Coordinator) emergencyTarget(now time.Time) int {
	cur := c.shardCount()
	if st, err := c.Planner(now); err == nil && st.Target > cur {
		return st.Target
	}
	mc := max(c.cfg.MaxConcurrency, 1)
	return (2*cur + mc - 1) / mc * mc
}

// nudgeNodes asks every node on the push channel to heartbeat now, so a
// reshard's next step does not wait for their next beat.
func (c *Coordinator) nudgeNodes() {
	c.push.send("*", coordapi.Command{ID: c.push.nextID(), Type: coordapi.CmdBeat})
}

func (c *Coordinator) reshardGet(w http.ResponseWriter, r *http.Request) error {
	writeJSON(w, http.StatusOK, coordapi.ReshardState{Reshard: c.CurrentReshard()})
	return nil
}

func (c *Coordinator) reshardDelete(w http.ResponseWriter, r *http.Request) error {
	now := time.Now()
	c.mu.Lock()
	err := c.fleet.cancelReshard(now)
	c.mu.Unlock()
	if err != nil {
		return err
	}
	c.log.Warn("reshard cancelled")
	c.nudgeNodes()
	return c.reshardGet(w, r)
}

func (c *Coordinator) reshardPost(w http.ResponseWriter, r *http.Request) error {
	var req coordapi.ReshardRequest
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		if statusOf(err) == http.StatusRequestEntityTooLarge {
			return err
		}
		return fmt.Errorf("%w: reshard body: %v", ErrBadRequest, err)
	}
	if req.DryRun {
		plan, err := c.PlanReshard(time.Now(), req.To, req.SpendReserve)
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, plan)
		return nil
	}
	plan, err := c.StartReshard(time.Now(), req.To, "manual", req.SpendReserve)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusAccepted, coordapi.ReshardStarted{Plan: plan, Reshard: c.CurrentReshard()})
	return nil
}

// clearGeneration frees the lease records of a generation a reshard
// replaced, once the nodes have retired it.
func (c *Coordinator) clearGeneration(count int) {
	term := c.termContext()
	if !sleepCtx(term, c.cfg.LeaseTTL) {
		return
	}
	c.rep.writeMu.Lock()
	err := c.rep.book.clear(term, count)
	c.rep.writeMu.Unlock()
	if err != nil && term.Err() == nil {
		c.log.Warn("clearing the lease records of the replaced generation", "shard_count", count, "err", err)
	}
}
