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
}

// agent is RunAgent's state.
type agent struct {
	c    *Client
	cfg  AgentConfig
	node ShardRunner

	mu       sync.Mutex
	capacity int
	draining bool           // an operator drained this node
	tokens   map[int]uint64 // shards running here (or starting, or stopping)
	removing map[int]bool
	released []held // stopped and saved, to report
	wg       sync.WaitGroup
}

// RunAgent registers the node with the coordinator and runs its shards as
// the coordinator assigns them until ctx ends: it heartbeats every third of
// the lease TTL with the shards it runs, starts assigned shards and stops
// revoked ones. When the coordinator cannot be reached for two thirds of
// the TTL it stops every shard itself (saving their sessions), because the
// coordinator will soon lease them to other nodes: one shard never runs on
// two nodes. It returns when ctx ends and every stop it began is done.
func (c *Client) RunAgent(ctx context.Context, node ShardRunner, cfg AgentConfig) error {
	if cfg.NodeID == "" || len(cfg.NodeID) > 128 {
		return fmt.Errorf("%w: NodeID: want 1 to 128 characters", ErrRefused)
	}
	if cfg.FirstInterval <= 0 {
		cfg.FirstInterval = time.Second
	}
	a := &agent{c: c, cfg: cfg, node: node, capacity: cfg.Capacity, tokens: map[int]uint64{}, removing: map[int]bool{}}
	defer a.wg.Wait()
	ctx, stop := context.WithCancel(ctx) // ends the push channel when RunAgent returns
	defer stop()
	a.wg.Go(func() { a.pushLoop(ctx) })
	interval, ttl := cfg.FirstInterval, time.Duration(0)
	lastOK := time.Now()
	for {
		o, err := a.beat(ctx)
		now := time.Now()
		switch {
		case err == nil:
			lastOK = now
			if o.LeaseTTLMS > 0 {
				ttl = time.Duration(o.LeaseTTLMS) * time.Millisecond
				interval = ttl / 3
			}
			a.apply(ctx, o)
		case ctx.Err() != nil:
			return nil
		case errors.Is(err, ErrRefused):
			return err // a bad token or node ID: retrying cannot help
		default:
			c.log.Warn("coordinator heartbeat failed", "err", err, "since_last_ok", now.Sub(lastOK).Round(time.Millisecond))
			if ttl > 0 && now.Sub(lastOK) >= 2*ttl/3 {
				a.fence(ctx)
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(interval):
		}
	}
}

// beat sends one heartbeat.
func (a *agent) beat(ctx context.Context) (orders, error) {
	a.mu.Lock()
	body := struct {
		Capacity int    `json:"capacity"`
		Draining bool   `json:"draining"`
		Shards   []held `json:"shards"`
		Released []held `json:"released"`
	}{Capacity: a.capacity, Draining: a.draining, Shards: []held{}, Released: slices.Clone(a.released)}
	for s, t := range a.tokens {
		body.Shards = append(body.Shards, held{s, t})
	}
	a.mu.Unlock()
	if body.Released == nil {
		body.Released = []held{}
	}
	slices.SortFunc(body.Shards, func(x, y held) int { return x.Shard - y.Shard })
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
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
func (a *agent) apply(ctx context.Context, o orders) {
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
func (a *agent) stop(ctx context.Context, shard int, report bool) {
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
func (a *agent) fence(ctx context.Context) {
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
	a.c.log.Error("coordinator unreachable for most of the lease TTL: stopping every shard before its lease expires", "shards", len(shards))
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
