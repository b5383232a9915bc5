package coordclient

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/coord/coordapi"
	"github.com/gatehouse-dev/gatehouse/internal/lease/kvlease"
)

// ShardRunner is the node an Agent drives: a gateway node starts and stops
// shards as the coordinator assigns them. Shards are named with their
// shard count: during a reshard a node runs shards of both generations.
type ShardRunner interface {
	// Start starts shard of numShards, resuming its saved session when
	// there is one.
	Start(ctx context.Context, numShards, shard int) error
	// Stop stops shard of numShards and saves its session, so another
	// node can resume it.
	Stop(ctx context.Context, numShards, shard int) error
}

// Resharder is what a ShardRunner also implements to take part in
// reshards (see the coordinator's POST /v1/reshard). A node without it
// runs one shard count, and a reshard waits for it in vain.
type Resharder interface {
	// SetMode sets the publish mode of numShards' shards: publish, hold,
	// dedup or handover; newCount is the count the reshard moves to.
	SetMode(numShards int, mode string, newCount int)
	// Promote makes numShards the count commands address.
	Promote(numShards int)
	// Retire stops every shard of numShards, a replaced generation, and
	// forgets their sessions.
	Retire(ctx context.Context, numShards int) error
}

// AgentConfig configures RunAgent.
type AgentConfig struct {
	// NodeID names the node at the coordinator; required and unique.
	NodeID string
	// Capacity is the most shards the node runs; 0 means no limit.
	Capacity int
	// FirstInterval is the heartbeat interval until the coordinator says
	// its lease TTL (then a third of it). Default 1s.
	FirstInterval time.Duration
	// Report, when set, is called before each heartbeat; what it returns
	// about the shards the node runs goes with it (GET /v1/shards shows it
	// and the shard-count planner uses the guild counts). Reports on
	// shards not leased here are left out.
	Report func() []coordapi.ShardReport
	// ExitWhenDrained makes Run return ErrDrained once an operator drained
	// the node and every shard it ran has been handed off and reported
	// released: the end of a rolling update's step for this node.
	ExitWhenDrained bool
	// Liveness, when set, is the control plane's live bucket
	// (natsbroker.KV): the agent keeps the node's liveness record there
	// while it runs, and when a replicated coordinator says so
	// (NodeOrders.Liveness) the node holds its leases as long as it can
	// renew that record, however long the coordinators are away. Without
	// it the leases last a fraction of the TTL past each answered
	// heartbeat.
	Liveness LivenessStore
	// Budget, when set, is called before each heartbeat: the
	// session-start budget the node last read from Discord, for a
	// coordinator without a bot token.
	Budget func() *coordapi.SessionBudget
}

// LivenessStore is the live bucket the agent keeps the node's liveness
// record in (natsbroker.KV).
type LivenessStore interface {
	kvlease.Store
	// TTL is how long a record lives after its last write.
	TTL(ctx context.Context) (time.Duration, error)
}

// generation is the agent's record of the shards of one count.
type generation struct {
	count    int
	mode     string
	tokens   map[int]uint64 // shards running here (or starting, or stopping)
	removing map[int]bool
	released []coordapi.HeldShard // stopped and saved, to report
}

func newGeneration(count int) *generation {
	return &generation{count: count, tokens: map[int]uint64{}, removing: map[int]bool{}}
}

func (g *generation) empty() bool {
	return g == nil || len(g.tokens) == 0 && len(g.removing) == 0 && len(g.released) == 0
}

// Agent runs a gateway node's shards as the coordinator leases them (see
// Run). It also implements gateway.Leases: the node asks it, before each
// batch it publishes and each state it saves, whether it still holds the
// shard's lease, so that a node cut off from the coordinator stops acting
// as the owner before the coordinator gives the shard to another node.
//
// During a reshard the agent runs a second generation of shards beside
// the first, with their own leases, and sets each generation's publish
// mode as the coordinator orders; when the coordinator switches counts,
// the new generation is promoted and the old one retired.
type Agent struct {
	c    *Client
	cfg  AgentConfig
	node ShardRunner

	mu       sync.Mutex
	capacity int
	draining bool            // an operator drained this node
	cur      *generation     // the coordinator's current count (count 0 until the first answer)
	next     *generation     // a reshard's new generation, or nil
	valid    time.Time       // the leases are ours until then (see Lease)
	kvLeases bool            // the leases last as long as the liveness record
	keeper   *kvlease.Keeper // the liveness record, with Config.Liveness
	ran      bool
	runCtx   context.Context // Run's context, for stops Lost starts
	wg       sync.WaitGroup
	nudge    chan struct{} // a "beat" command: heartbeat now
}

// NewAgent returns the agent of node cfg.NodeID; Run starts it.
func (c *Client) NewAgent(cfg AgentConfig) (*Agent, error) {
	if !coordapi.ValidNodeID(cfg.NodeID) {
		return nil, fmt.Errorf("%w: node ID %q: want 1 to 128 letters, digits, -, _ and . (not at either end, never two dots)", ErrRefused, cfg.NodeID)
	}
	if cfg.FirstInterval <= 0 {
		cfg.FirstInterval = time.Second
	}
	return &Agent{c: c, cfg: cfg, capacity: cfg.Capacity, cur: newGeneration(0), nudge: make(chan struct{}, 1)}, nil
}

// RunAgent is NewAgent followed by Run, for a node that does not fence
// its publishing with the agent's leases.
func (c *Client) RunAgent(ctx context.Context, node ShardRunner, cfg AgentConfig) error {
	a, err := c.NewAgent(cfg)
	if err != nil {
		return err
	}
	return a.Run(ctx, node)
}

// gen returns the generation of count; the caller holds a.mu.
func (a *Agent) gen(count int) *generation {
	switch {
	case a.cur.count == count:
		return a.cur
	case a.next != nil && a.next.count == count:
		return a.next
	}
	return nil
}

// ShardCount returns the coordinator's current shard count, as of the
// last heartbeat (0 before the first answer).
func (a *Agent) ShardCount() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.cur.count
}

// Lease returns the fencing token of shard of numShards and whether this
// node may still act as its owner. The shard must be leased here, and:
//
//   - with a replicated coordinator (NodeOrders.Liveness), the node's
//     liveness record must be held: renewed less than three quarters of
//     its TTL ago, counted from when the renewal was sent. The store
//     expires it a whole TTL after the write, and only then may the
//     coordinator lease the shard to another node;
//   - otherwise the coordinator must have heard from the node less than
//     three quarters of the lease TTL ago, counted from when the last
//     answered heartbeat was sent; the coordinator expires the lease a
//     whole TTL after it received the heartbeat.
//
// Either way the quarter left covers batches still in flight and clocks
// that run at slightly different rates; no clocks are compared.
func (a *Agent) Lease(numShards, shard int) (uint64, bool) {
	a.mu.Lock()
	g := a.gen(numShards)
	if g == nil {
		a.mu.Unlock()
		return 0, false
	}
	tok, ok := g.tokens[shard]
	kv, valid := a.kvLeases, a.valid
	a.mu.Unlock()
	if !ok {
		return 0, false
	}
	if kv {
		_, held := a.keeper.Held()
		return tok, held
	}
	return tok, time.Now().Before(valid)
}

// Lost is the node saying it stopped shard because its lease ran out (a
// heartbeat answered too late, say): the agent removes it and reports it
// released, so the coordinator can lease it again, here or elsewhere.
func (a *Agent) Lost(numShards, shard int) {
	a.mu.Lock()
	ctx := a.runCtx
	a.mu.Unlock()
	if ctx == nil || ctx.Err() != nil {
		return
	}
	a.c.log.Warn("the node stopped a shard whose lease ran out; giving it back", "shard", shard, "shard_count", numShards)
	a.stop(ctx, numShards, shard, true)
}

// Run registers the node with the coordinator and runs its shards as the
// coordinator assigns them until ctx ends: it heartbeats every third of
// the lease TTL with the shards it runs, starts assigned shards and stops
// revoked ones. When the coordinator has not answered for half the TTL it
// stops every shard itself (saving their sessions), because the coordinator
// will soon lease them to other nodes: one shard never runs on two nodes.
// A coordinator that restarts within that time costs nothing. Run returns
// when ctx ends and every stop it began is done; an Agent runs once.
func (a *Agent) Run(ctx context.Context, node ShardRunner) error {
	a.mu.Lock()
	if a.ran {
		a.mu.Unlock()
		return errors.New("coordclient: Agent.Run called twice")
	}
	// stop ends the push channel (and the stops Lost started see it end)
	// when Run returns; the goroutines are waited for after it.
	ctx, stop := context.WithCancel(ctx)
	a.ran, a.node, a.runCtx = true, node, ctx
	a.mu.Unlock()
	defer a.wg.Wait()
	defer stop()
	if a.cfg.Liveness != nil {
		if err := a.startLiveness(ctx); err != nil {
			return err
		}
	}
	a.wg.Go(func() { a.pushLoop(ctx) })
	interval, ttl := a.cfg.FirstInterval, time.Duration(0)
	lastOK := time.Now()
	for {
		sent := time.Now()
		o, err := a.beat(ctx, ttl)
		now := time.Now()
		wait := interval
		switch {
		case err == nil:
			lastOK = sent
			if o.LeaseTTLMS > 0 {
				ttl = time.Duration(o.LeaseTTLMS) * time.Millisecond
				interval = ttl / 3
				wait = interval
			}
			a.mu.Lock()
			a.valid = sent.Add(3 * ttl / 4)
			a.kvLeases = o.Liveness == coordapi.LivenessKV && a.keeper != nil
			drained := a.draining || o.Drained
			empty := a.cur.empty() && a.next.empty()
			a.mu.Unlock()
			if a.cfg.ExitWhenDrained && drained && empty && len(o.Assign) == 0 && (o.Next == nil || len(o.Next.Assign) == 0) {
				a.c.log.Info("drained: every shard handed off; the node exits")
				return ErrDrained
			}
			a.apply(ctx, o)
		case ctx.Err() != nil:
			return nil
		case errors.Is(err, ErrRefused):
			return err // a bad token or node ID: retrying cannot help
		default:
			a.mu.Lock()
			kv := a.kvLeases
			a.mu.Unlock()
			if kv {
				// The leases hang on the liveness record, not on the
				// coordinators: keep running, keep asking.
				a.c.log.Warn("coordinator heartbeat failed; the node keeps its shards while its liveness record lives", "err", err, "since_last_ok", now.Sub(lastOK).Round(time.Millisecond))
				wait = max(interval/3, 100*time.Millisecond)
				break
			}
			a.c.log.Warn("coordinator heartbeat failed", "err", err, "since_last_ok", now.Sub(lastOK).Round(time.Millisecond))
			if ttl > 0 && now.Sub(lastOK) >= ttl/2 {
				a.fence(ctx)
			}
			wait = interval / 3 // try again soon: the lease is running out
		}
		select {
		case <-ctx.Done():
			return nil
		case <-a.nudged():
		case <-time.After(wait):
		}
	}
}

// startLiveness starts keeping the node's liveness record, and stopping
// every shard when it is lost while the leases hang on it.
func (a *Agent) startLiveness(ctx context.Context) error {
	var ttl time.Duration
	backoff := a.c.cfg.RetryMin
	for {
		tctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		var err error
		ttl, err = a.cfg.Liveness.TTL(tctx)
		cancel()
		if err == nil && ttl > 0 {
			break
		}
		if ctx.Err() != nil {
			return nil
		}
		a.c.log.Warn("reading the liveness bucket's TTL; retrying", "err", err)
		if !sleep(ctx, backoff) {
			return nil
		}
		backoff = min(2*backoff, a.c.cfg.RetryMax)
	}
	k, err := kvlease.New(kvlease.Config{Store: a.cfg.Liveness, Key: coordapi.LivenessKey(a.cfg.NodeID), Owner: a.cfg.NodeID, TTL: ttl,
		Logger: a.c.log.With("part", "liveness")})
	if err != nil {
		return fmt.Errorf("%w: %v", ErrRefused, err)
	}
	a.mu.Lock()
	a.keeper = k
	a.mu.Unlock()
	// The record is given up when Run's context ends, so a node runs its
	// agent with a context that ends after it stopped its shards and
	// saved their sessions, which it does under the leases.
	a.wg.Go(func() { k.Run(ctx) })
	a.wg.Go(func() { a.watchLiveness(ctx, k) })
	return nil
}

// watchLiveness stops every shard when the liveness record is lost while
// the leases hang on it: another node may be given them once the record
// is gone from the store.
func (a *Agent) watchLiveness(ctx context.Context, k *kvlease.Keeper) {
	for {
		ch := k.Changed()
		_, held := k.Held()
		a.mu.Lock()
		kv := a.kvLeases
		a.mu.Unlock()
		if !held && kv {
			a.fence(ctx)
		}
		select {
		case <-ctx.Done():
			return
		case <-ch:
		}
	}
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// genBeatLocked is generation g's part of a heartbeat.
func genBeatLocked(g *generation, reports []coordapi.ShardReport) coordapi.GenBeat {
	b := coordapi.GenBeat{ShardCount: g.count, Shards: []coordapi.HeldShard{}, Released: slices.Clone(g.released)}
	if b.Released == nil {
		b.Released = []coordapi.HeldShard{}
	}
	for s, t := range g.tokens {
		b.Shards = append(b.Shards, coordapi.HeldShard{Shard: s, Token: t})
	}
	slices.SortFunc(b.Shards, func(x, y coordapi.HeldShard) int { return x.Shard - y.Shard })
	for _, r := range reports {
		n := r.NumShards
		if n == 0 {
			n = g.count
		}
		if _, ok := g.tokens[r.Shard]; ok && n == g.count {
			if len(r.Error) > coordapi.MaxReportError {
				r.Error = r.Error[:coordapi.MaxReportError]
			}
			b.Reports = append(b.Reports, r)
		}
	}
	return b
}

// beat sends one heartbeat.
// A heartbeat waits at most a quarter of the TTL (10s before the TTL is
// known), so that a coordinator that hangs is noticed in time to fence.
func (a *Agent) beat(ctx context.Context, ttl time.Duration) (coordapi.NodeOrders, error) {
	var reports []coordapi.ShardReport
	if a.cfg.Report != nil {
		reports = a.cfg.Report()
	}
	var budget *coordapi.SessionBudget
	if a.cfg.Budget != nil {
		budget = a.cfg.Budget()
	}
	a.mu.Lock()
	body := coordapi.NodeBeat{Capacity: a.capacity, Draining: a.draining, GenBeat: genBeatLocked(a.cur, reports)}
	if a.keeper != nil {
		body.Epoch, _ = a.keeper.Held()
	}
	body.Budget = budget
	if a.next != nil {
		nb := genBeatLocked(a.next, reports)
		body.Next = &nb
	}
	a.mu.Unlock()
	timeout := 10 * time.Second
	if ttl > 0 {
		timeout = min(timeout, ttl/4)
	}
	rctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var o coordapi.NodeOrders
	err := a.c.postJSON(rctx, "/v1/nodes/"+url.PathEscape(a.cfg.NodeID)+"/heartbeat", body, &o)
	if err == nil {
		// The coordinator has these now.
		a.mu.Lock()
		forget := func(g *generation, sent []coordapi.HeldShard) {
			if g != nil {
				g.released = slices.DeleteFunc(g.released, func(h coordapi.HeldShard) bool { return slices.Contains(sent, h) })
			}
		}
		forget(a.gen(body.ShardCount), body.Released)
		if body.Next != nil {
			forget(a.gen(body.Next.ShardCount), body.Next.Released)
		}
		a.mu.Unlock()
	}
	return o, err
}

// apply carries out the coordinator's orders.
func (a *Agent) apply(ctx context.Context, o coordapi.NodeOrders) {
	rs, _ := a.node.(Resharder)
	var retire []int
	a.mu.Lock()
	switch {
	case o.ShardCount <= 0 || o.ShardCount == a.cur.count:
	case a.next != nil && a.next.count == o.ShardCount:
		// The coordinator switched to the reshard's generation.
		retire = append(retire, a.cur.count)
		a.cur, a.next = a.next, nil
	default:
		// The first answer, or a count that changed without this node
		// (it missed a whole reshard): what runs here is stale.
		if a.cur.count != 0 {
			retire = append(retire, a.cur.count)
		}
		a.cur = newGeneration(o.ShardCount)
	}
	if a.next != nil && (o.Next == nil || o.Next.ShardCount != a.next.count) {
		retire = append(retire, a.next.count) // the reshard was called off
		a.next = nil
	}
	if o.Next != nil && a.next == nil && o.Next.ShardCount != a.cur.count {
		a.next = newGeneration(o.Next.ShardCount)
	}
	cur, next := a.cur, a.next
	a.mu.Unlock()
	if rs != nil {
		rs.Promote(cur.count)
	}
	for _, n := range retire {
		a.retire(ctx, n)
	}
	newCount := cur.count
	if next != nil {
		newCount = next.count
	}
	a.applyGen(ctx, rs, cur, o.GenOrders, newCount)
	if next != nil && o.Next != nil {
		a.applyGen(ctx, rs, next, *o.Next, newCount)
	}
}

// retire stops every shard of count in the background and forgets them.
func (a *Agent) retire(ctx context.Context, count int) {
	a.c.log.Info("retiring a replaced shard generation", "shard_count", count)
	rs, ok := a.node.(Resharder)
	if !ok {
		return
	}
	a.wg.Go(func() {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if err := rs.Retire(rctx, count); err != nil {
			a.c.log.Warn("retiring a shard generation", "shard_count", count, "err", err)
		}
	})
}

// applyGen carries out one generation's orders.
func (a *Agent) applyGen(ctx context.Context, rs Resharder, g *generation, o coordapi.GenOrders, newCount int) {
	a.mu.Lock()
	modeChanged := g.mode != o.Mode
	g.mode = o.Mode
	for _, r := range o.Renewed {
		if _, ok := g.tokens[r.Shard]; ok {
			g.tokens[r.Shard] = r.Token
		}
	}
	a.mu.Unlock()
	if rs != nil {
		mode := o.Mode
		if mode == "" {
			mode = coordapi.ModePublish
		}
		rs.SetMode(g.count, mode, newCount) // before new shards start: they take it
		if modeChanged {
			a.c.log.Info("publish mode", "shard_count", g.count, "mode", mode)
		}
	}
	for _, s := range o.Assign {
		a.mu.Lock()
		_, running := g.tokens[s.Shard]
		g.tokens[s.Shard] = s.Token
		a.mu.Unlock()
		if running {
			continue
		}
		if err := a.node.Start(ctx, g.count, s.Shard); err != nil {
			a.c.log.Error("starting an assigned shard failed; giving it back", "shard", s.Shard, "shard_count", g.count, "err", err)
			a.mu.Lock()
			delete(g.tokens, s.Shard)
			g.released = append(g.released, s)
			a.mu.Unlock()
			continue
		}
		a.c.log.Info("shard assigned", "shard", s.Shard, "shard_count", g.count, "token", s.Token)
	}
	for _, s := range o.Revoke {
		a.stop(ctx, g.count, s, true)
	}
}

// stop removes shard of count in the background; report says whether to
// report it released afterwards.
func (a *Agent) stop(ctx context.Context, count, shard int, report bool) {
	a.mu.Lock()
	g := a.gen(count)
	if g == nil {
		a.mu.Unlock()
		return
	}
	tok, ok := g.tokens[shard]
	if !ok || g.removing[shard] {
		if !ok && report {
			// Not running here (an assign that failed, or a restart): say so.
			g.released = append(g.released, coordapi.HeldShard{Shard: shard, Token: 0})
		}
		a.mu.Unlock()
		return
	}
	g.removing[shard] = true
	a.mu.Unlock()
	a.wg.Go(func() {
		// The stop must finish even when the agent is stopping: the
		// session is saved only once it does.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		err := a.node.Stop(rctx, count, shard)
		if err != nil {
			a.c.log.Warn("stopping a shard", "shard", shard, "shard_count", count, "err", err)
		}
		a.mu.Lock()
		delete(g.tokens, shard)
		delete(g.removing, shard)
		if report {
			g.released = append(g.released, coordapi.HeldShard{Shard: shard, Token: tok})
		}
		a.mu.Unlock()
		if report {
			// Report the release now, not at the next heartbeat: the next
			// node gets the shard as soon as the coordinator hears.
			select {
			case a.nudge <- struct{}{}:
			default:
			}
		}
		a.c.log.Info("shard stopped", "shard", shard, "shard_count", count, "reported", report)
	})
}

// fence stops every shard: the coordinator has not heard from this node
// for most of the lease TTL, or its liveness record is lost, and the
// shards may be given to others.
func (a *Agent) fence(ctx context.Context) {
	type gs struct{ count, shard int }
	var shards []gs
	a.mu.Lock()
	for _, g := range []*generation{a.cur, a.next} {
		if g == nil {
			continue
		}
		for s := range g.tokens {
			if !g.removing[s] {
				shards = append(shards, gs{g.count, s})
			}
		}
	}
	a.mu.Unlock()
	if len(shards) == 0 {
		return
	}
	a.c.log.Error("the leases may end: stopping every shard before another node can be given it", "shards", len(shards))
	for _, s := range shards {
		a.stop(ctx, s.count, s.shard, true)
	}
}

// Leave tells the coordinator that node id stopped and saved its shards,
// so they move to other nodes at once.
func (c *Client) Leave(ctx context.Context, id string) error {
	return c.postJSON(ctx, "/v1/nodes/"+url.PathEscape(id)+"/leave", struct{}{}, nil)
}

// postJSON posts body as JSON and decodes the answer into out (when not
// nil). Errors are classified as in post.
func (c *Client) postJSON(ctx context.Context, path string, body, out any) error {
	b, err := json.Marshal(body)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrRefused, err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://replica"+path, bytes.NewReader(b))
	if err != nil {
		return fmt.Errorf("%w: %v", ErrRefused, err)
	}
	req.Header.Set("Content-Type", "application/json")
	return c.do(req, out)
}
