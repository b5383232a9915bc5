package coordclient

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"
)

// ShardRunner is the node an Agent drives: a gateway node adds and removes
// shards as the coordinator assigns them.
type ShardRunner interface {
	// Add starts shard, resuming its saved session when there is one.
	Add(ctx context.Context, shard int) error
	// Remove stops shard and saves its session, so another node can
	// resume it.
	Remove(ctx context.Context, shard int) error
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
	Report func() []ShardReport
	// ExitWhenDrained makes Run return ErrDrained once an operator drained
	// the node and every shard it ran has been handed off and reported
	// released: the end of a rolling update's step for this node.
	ExitWhenDrained bool
}

// ShardReport is what a node says about one of its shards.
type ShardReport struct {
	Shard int `json:"shard"`
	// State is the session's state (waiting, connecting, identifying,
	// authenticating, resuming, ready, stopped).
	State string `json:"state"`
	// Guilds is how many guilds the session holds; nil until known.
	Guilds     *int      `json:"guilds,omitempty"`
	LatencyMS  float64   `json:"latency_ms"`
	Events     int64     `json:"events"`
	Identifies int64     `json:"identifies"`
	Resumes    int64     `json:"resumes"`
	Reconnects int64     `json:"reconnects"`
	Zombies    int64     `json:"zombies"`
	ReadyAt    time.Time `json:"ready_at,omitzero"`
	Error      string    `json:"error,omitempty"`
}

type held struct {
	Shard int    `json:"shard"`
	Token uint64 `json:"token"`
}

type orders struct {
	ShardCount int    `json:"shard_count"`
	LeaseTTLMS int64  `json:"lease_ttl_ms"`
	Assign     []held `json:"assign"`
	Renewed    []held `json:"renewed"`
	Revoke     []int  `json:"revoke"`
	Drained    bool   `json:"drained"`
}

// Agent runs a gateway node's shards as the coordinator leases them (see
// Run). It also implements gateway.Leases: the node asks it, before each
// batch it publishes and each state it saves, whether it still holds the
// shard's lease, so that a node cut off from the coordinator stops acting
// as the owner before the coordinator gives the shard to another node.
type Agent struct {
	c    *Client
	cfg  AgentConfig
	node ShardRunner

	mu       sync.Mutex
	capacity int
	draining bool           // an operator drained this node
	tokens   map[int]uint64 // shards running here (or starting, or stopping)
	removing map[int]bool
	released []held    // stopped and saved, to report
	valid    time.Time // the leases are ours until then (see Lease)
	ran      bool
	runCtx   context.Context // Run's context, for stops Lost starts
	wg       sync.WaitGroup
}

// NewAgent returns the agent of node cfg.NodeID; Run starts it.
func (c *Client) NewAgent(cfg AgentConfig) (*Agent, error) {
	if cfg.NodeID == "" || len(cfg.NodeID) > 128 {
		return nil, fmt.Errorf("%w: NodeID: want 1 to 128 characters", ErrRefused)
	}
	if cfg.FirstInterval <= 0 {
		cfg.FirstInterval = time.Second
	}
	return &Agent{c: c, cfg: cfg, capacity: cfg.Capacity, tokens: map[int]uint64{}, removing: map[int]bool{}}, nil
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

// Lease returns the fencing token of shard and whether this node may still
// act as its owner: the shard is leased here and the coordinator heard from
// the node less than three quarters of the lease TTL ago, counted from when
// the last answered heartbeat was sent. The coordinator expires a lease a
// whole TTL after it received the heartbeat, so the quarter left covers
// batches still in flight and clocks that run at slightly different rates.
func (a *Agent) Lease(shard int) (uint64, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	tok, ok := a.tokens[shard]
	return tok, ok && time.Now().Before(a.valid)
}

// Lost is the node saying it stopped shard because its lease ran out (a
// heartbeat answered too late, say): the agent removes it and reports it
// released, so the coordinator can lease it again, here or elsewhere.
func (a *Agent) Lost(shard int) {
	a.mu.Lock()
	ctx := a.runCtx
	a.mu.Unlock()
	if ctx == nil || ctx.Err() != nil {
		return
	}
	a.c.log.Warn("the node stopped a shard whose lease ran out; giving it back", "shard", shard)
	a.stop(ctx, shard, true)
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
			drained := a.draining || o.Drained
			empty := len(a.tokens) == 0 && len(a.removing) == 0 && len(a.released) == 0
			a.mu.Unlock()
			if a.cfg.ExitWhenDrained && drained && empty && len(o.Assign) == 0 {
				a.c.log.Info("drained: every shard handed off; the node exits")
				return ErrDrained
			}
			a.apply(ctx, o)
		case ctx.Err() != nil:
			return nil
		case errors.Is(err, ErrRefused):
			return err // a bad token or node ID: retrying cannot help
		default:
			a.c.log.Warn("coordinator heartbeat failed", "err", err, "since_last_ok", now.Sub(lastOK).Round(time.Millisecond))
			if ttl > 0 && now.Sub(lastOK) >= ttl/2 {
				a.fence(ctx)
			}
			wait = interval / 3 // try again soon: the lease is running out
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
	}
}

// beat sends one heartbeat.
// A heartbeat waits at most a quarter of the TTL (10s before the TTL is
// known), so that a coordinator that hangs is noticed in time to fence.
func (a *Agent) beat(ctx context.Context, ttl time.Duration) (orders, error) {
	var reports []ShardReport
	if a.cfg.Report != nil {
		reports = a.cfg.Report()
	}
	a.mu.Lock()
	body := struct {
		Capacity int           `json:"capacity"`
		Draining bool          `json:"draining"`
		Shards   []held        `json:"shards"`
		Released []held        `json:"released"`
		Reports  []ShardReport `json:"reports,omitempty"`
	}{Capacity: a.capacity, Draining: a.draining, Shards: []held{}, Released: slices.Clone(a.released)}
	for s, t := range a.tokens {
		body.Shards = append(body.Shards, held{s, t})
	}
	for _, r := range reports {
		if _, ok := a.tokens[r.Shard]; ok {
			if len(r.Error) > 1000 {
				r.Error = r.Error[:1000] // the coordinator takes 1024 bytes
			}
			body.Reports = append(body.Reports, r)
		}
	}
	a.mu.Unlock()
	if body.Released == nil {
		body.Released = []held{}
	}
	slices.SortFunc(body.Shards, func(x, y held) int { return x.Shard - y.Shard })
	timeout := 10 * time.Second
	if ttl > 0 {
		timeout = min(timeout, ttl/4)
	}
	rctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var o orders
	err := a.c.postJSON(rctx, "/v1/nodes/"+url.PathEscape(a.cfg.NodeID)+"/heartbeat", body, &o)
	if err == nil {
		// The coordinator has these now.
		a.mu.Lock()
		a.released = slices.DeleteFunc(a.released, func(h held) bool { return slices.Contains(body.Released, h) })
		a.mu.Unlock()
	}
	return o, err
}

// apply carries out the coordinator's orders.
func (a *Agent) apply(ctx context.Context, o orders) {
	a.mu.Lock()
	for _, r := range o.Renewed {
		if _, ok := a.tokens[r.Shard]; ok {
			a.tokens[r.Shard] = r.Token
		}
	}
	a.mu.Unlock()
	for _, s := range o.Assign {
		a.mu.Lock()
		_, running := a.tokens[s.Shard]
		a.tokens[s.Shard] = s.Token
		a.mu.Unlock()
		if running {
			continue
		}
		if err := a.node.Add(ctx, s.Shard); err != nil {
			a.c.log.Error("starting an assigned shard failed; giving it back", "shard", s.Shard, "err", err)
			a.mu.Lock()
			delete(a.tokens, s.Shard)
			a.released = append(a.released, s)
			a.mu.Unlock()
			continue
		}
		a.c.log.Info("shard assigned", "shard", s.Shard, "token", s.Token)
	}
	for _, s := range o.Revoke {
		a.stop(ctx, s, true)
	}
}

// stop removes shard in the background; report says whether to report
// it released afterwards.
func (a *Agent) stop(ctx context.Context, shard int, report bool) {
	a.mu.Lock()
	tok, ok := a.tokens[shard]
	if !ok || a.removing[shard] {
		if !ok && report {
			// Not running here (an assign that failed, or a restart): say so.
			a.released = append(a.released, held{shard, 0})
		}
		a.mu.Unlock()
		return
	}
	a.removing[shard] = true
	a.mu.Unlock()
	a.wg.Go(func() {
		// The stop must finish even when the agent is stopping: the
		// session is saved only once it does.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		err := a.node.Remove(rctx, shard)
		if err != nil {
			a.c.log.Warn("stopping a shard", "shard", shard, "err", err)
		}
		a.mu.Lock()
		delete(a.tokens, shard)
		delete(a.removing, shard)
		if report {
			a.released = append(a.released, held{shard, tok})
		}
		a.mu.Unlock()
		a.c.log.Info("shard stopped", "shard", shard, "reported", report)
	})
}

// fence stops every shard: the coordinator has not heard from this node
// for most of the lease TTL and will give them to others.
func (a *Agent) fence(ctx context.Context) {
	a.mu.Lock()
	shards := make([]int, 0, len(a.tokens))
	for s := range a.tokens {
		if !a.removing[s] {
			shards = append(shards, s)
		}
	}
	a.mu.Unlock()
	if len(shards) == 0 {
		return
	}
	a.c.log.Error("coordinator unreachable for half the lease TTL: stopping every shard before its lease expires", "shards", len(shards))
	for _, s := range shards {
		a.stop(ctx, s, true)
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
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base.String()+path, strings.NewReader(string(b)))
	if err != nil {
		return fmt.Errorf("%w: %v", ErrRefused, err)
	}
	req.Header.Set("Content-Type", "application/json")
	return c.do(req, out)
}
