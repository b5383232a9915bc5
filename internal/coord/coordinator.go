package coord

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/coord/coordapi"
	"github.com/gatehouse-dev/gatehouse/internal/discord"
	"github.com/gatehouse-dev/gatehouse/internal/identify"
	"github.com/gatehouse-dev/gatehouse/internal/shard"
)

// Config configures a Coordinator. Zero values take the documented
// defaults.
type Config struct {
	// Tokens authenticate each role; Tokens.Admin is required.
	Tokens Tokens
	// ShardCount is the deployment's total shard count (Shardman's
	// max_shards). Required.
	ShardCount int
	// MaxConcurrency is Discord's max_concurrency: identify buckets are
	// shard % MaxConcurrency. Default 1.
	MaxConcurrency int
	// IdentifyInterval is one bucket's identify window. Default 5s, as
	// Discord's.
	IdentifyInterval time.Duration
	// IdentifyMargin is added to every window against clock and network
	// jitter. Default 25ms; negative means none.
	IdentifyMargin time.Duration
	// Recommended is Discord's recommended shard count (/gateway/bot's
	// shards), for the planner; GatewayBot refreshes it. 0: unknown.
	Recommended int
	// SessionStarts is the session-start budget left, with SessionReset when
	// it resets (from /gateway/bot). Negative: not tracked until GatewayBot
	// reports it.
	SessionStarts int
	SessionReset  time.Time
	// GatewayBot, when set, is called every RefreshEvery (and when the
	// session-start window has reset) to refresh the budget from Discord.
	GatewayBot   func(ctx context.Context) (discord.GatewayBot, error)
	RefreshEvery time.Duration // default 10m
	// LeaseTTL is how long a gateway node's shard lease lasts without a
	// heartbeat; a node heartbeats every third of it. Its shards go to
	// other nodes once it expires. Default 15s.
	LeaseTTL time.Duration
	// FirstToken is the fencing token of the first lease granted without
	// saved state. Default: the start time in microseconds since the
	// epoch, so tokens grow across restarts even without a State.
	FirstToken uint64
	// BucketAligned keeps each identify bucket's shards on one node where
	// capacity allows.
	BucketAligned bool
	// BeatTimeout frees the shard of a Shardman worker that stopped
	// beating for this long. Default 60s.
	BeatTimeout time.Duration
	// HealthInterval marks a glance shard unhealthy when no health report
	// arrived for this long. Default 60s.
	HealthInterval time.Duration
	// QueueOpen serves twilight's gateway-queue (/queue) without
	// credentials, as the original does. Only for private networks.
	QueueOpen bool
	// MaxBodyBytes caps request bodies. Default 64 KiB.
	MaxBodyBytes int64
	// MaxReportBytes caps a node heartbeat, which carries a report per
	// shard (about 250 bytes each). Default 8 MiB.
	MaxReportBytes int64
	// AuthFailures is how many failed authentications one source (an IPv4
	// address, an IPv6 /64) may make per minute before its failures are
	// answered 429 for the rest of the minute. Default 20. Requests with a
	// valid credential are never counted nor refused.
	AuthFailures int
	// AuthFailuresGlobal caps failed authentications per minute across
	// every source. Default 1000.
	AuthFailuresGlobal int
	// ConnectsPerMinute caps Shardman connects and push-channel connections
	// per client IP. Default 120.
	ConnectsPerMinute int
	// ReshardSettle is how long each step of a reshard's switch waits
	// after every shard confirmed the step, for events still in flight
	// between Discord's two sessions. Default 2s.
	ReshardSettle time.Duration
	// ReshardHandoverTimeout ends a reshard's handover when some old
	// shard never sees its new shards take over (no traffic). Default 30s.
	ReshardHandoverTimeout time.Duration
	// AutoReshard starts a reshard on its own when the shard-count planner
	// advises one (guilds past AutoReshardAt of N × 2,500, with
	// hysteresis) and the plan fits the identify budget. A shard closed
	// with 4011 starts one whatever this says.
	AutoReshard bool
	// SessionStartTotal is Discord's daily session-start total
	// (session_start_limit.total), for the reserve. 0: unknown (the
	// nodes' reports or 1000).
	SessionStartTotal int
	// Reserve is how many session starts every plan keeps untouched, for
	// sessions that cannot resume; only an operator's override (a
	// reshard's SpendReserve) spends them. 0: ReservePercent of the daily
	// total.
	Reserve int
	// ReservePercent is the reserve as a share of the daily total when
	// Reserve is 0. Default 10; negative means none.
	ReservePercent float64
	// Control makes the coordinator one replica of a control plane with
	// no single point of failure (see Control): the shard leases live in
	// JetStream KV as compare-and-set records, nodes hold them as long as
	// they renew their own liveness records there, whatever happens to
	// the coordinators, and one replica leads at a time. nil: a
	// standalone coordinator that keeps everything in memory (a restart
	// forgets the leases; nodes fence when it is gone for half the TTL).
	Control *Control
	// ReplicaID names this replica. Default: the host name and a random
	// suffix.
	ReplicaID string
	// Advertise is this replica's API base URL, where the other replicas
	// forward writes while it leads. Required with Control.
	Advertise string
	// Logger receives the coordinator's logs. Default slog.Default().
	Logger *slog.Logger
}

func (c Config) withDefaults() (Config, error) {
	if c.ShardCount < 1 {
		return c, fmt.Errorf("%w: ShardCount must be at least 1, got %d", ErrBadRequest, c.ShardCount)
	}
	if c.ShardCount > maxShards {
		return c, fmt.Errorf("%w: ShardCount %d is over %d", ErrBadRequest, c.ShardCount, maxShards)
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&c.IdentifyInterval, discord.IdentifyIntervalMillis*time.Millisecond)
	def(&c.IdentifyMargin, 25*time.Millisecond)
	if c.IdentifyMargin < 0 {
		c.IdentifyMargin = 0
	}
	def(&c.RefreshEvery, 10*time.Minute)
	def(&c.BeatTimeout, 60*time.Second)
	def(&c.LeaseTTL, 15*time.Second)
	def(&c.HealthInterval, 60*time.Second)
	def(&c.ReshardSettle, 2*time.Second)
	def(&c.ReshardHandoverTimeout, 30*time.Second)
	if c.MaxConcurrency < 1 {
		c.MaxConcurrency = 1
	}
	if c.MaxReportBytes <= 0 {
		c.MaxReportBytes = 8 << 20
	}
	if c.MaxBodyBytes <= 0 {
		c.MaxBodyBytes = 64 << 10
	}
	if c.AuthFailures <= 0 {
		c.AuthFailures = 20
	}
	if c.AuthFailuresGlobal <= 0 {
		c.AuthFailuresGlobal = 1000
	}
	if c.ConnectsPerMinute <= 0 {
		c.ConnectsPerMinute = 120
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.ReservePercent == 0 {
		c.ReservePercent = 10
	}
	if c.Reserve < 0 {
		return c, fmt.Errorf("%w: Reserve %d is negative", ErrBadRequest, c.Reserve)
	}
	if c.ReplicaID == "" {
		host, _ := os.Hostname()
		c.ReplicaID = strings.Trim(host+"-"+randomID()[:6], "-.")
	}
	if !coordapi.ValidNodeID(c.ReplicaID) {
		return c, fmt.Errorf("%w: ReplicaID %q: want letters, digits, -, _ and .", ErrBadRequest, c.ReplicaID)
	}
	return c, nil
}

// maxShards bounds shard numbers in requests: far above any real bot, low
// enough that no table sized by it is a problem.
const maxShards = 1 << 20

// Coordinator is the control plane. Create one with New, serve Handler,
// and run Run for its timers.
type Coordinator struct {
	cfg  Config
	log  *slog.Logger
	keys *keyring
	mux  *http.ServeMux
	rep  *replica // nil: standalone

	// gate is the identify queue, replaced at each takeover.
	gate atomic.Pointer[identify.LocalGate]

	mu       sync.Mutex
	fails    authLimiter // failed authentications per source and in all
	connects ipLimiter   // Shardman connects per IP, push channels per node
	// The leader's state, made afresh at each takeover (resetStateLocked).
	glance   glanceBoard
	shardman *shardman
	fleet    *fleet
	push     pushHub
	planner  *shard.Planner
	plan     shard.State // the planner's state between plans
	// recommended is Discord's recommended shard count, from /gateway/bot;
	// 0 until known.
	recommended int
	// count is the shard count in force: Config.ShardCount until a
	// reshard switches it (read without the lock).
	count atomic.Int64
	// nextAuto is when the automatic reshard check runs next.
	nextAuto time.Time
}

// shardCount returns the shard count in force.
func (c *Coordinator) shardCount() int { return int(c.count.Load()) }

// New validates cfg and returns a Coordinator.
func New(cfg Config) (*Coordinator, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	keys, err := newKeyring(cfg.Tokens)
	if err != nil {
		return nil, err
	}
	c := &Coordinator{
		cfg: cfg, log: cfg.Logger, keys: keys,
		fails:    authLimiter{perSource: ipLimiter{Max: cfg.AuthFailures, Window: time.Minute, MaxIPs: 100_000}, GlobalMax: cfg.AuthFailuresGlobal},
		connects: ipLimiter{Max: cfg.ConnectsPerMinute, Window: time.Minute, MaxIPs: 100_000},
	}
	if cfg.Control != nil {
		if c.rep, err = newReplica(cfg); err != nil {
			return nil, err
		}
	}
	c.mu.Lock()
	err = c.resetStateLocked()
	c.mu.Unlock()
	if err != nil {
		return nil, err
	}
	c.mux = http.NewServeMux()
	for _, rt := range c.routes() {
		c.mux.Handle(rt.method+" "+rt.pattern, c.handle(rt))
	}
	queue := c.handle(route{h: c.twilightQueue, noAnswer: true})
	c.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/" { // twilight's client asks GET /?shard=N
			queue.ServeHTTP(w, r)
			return
		}
		writeError(w, fmt.Errorf("%w: %s %s", ErrNotFound, r.Method, r.URL.Path))
	})
	return c, nil
}

// resetStateLocked makes the leader's state afresh from the
// configuration: at start, and at each takeover and step-down (a new
// leader reads the rest back from the control bucket). The caller holds
// c.mu.
func (c *Coordinator) resetStateLocked() error {
	cfg := c.cfg
	// A standalone coordinator's tokens count up from the start time in
	// microseconds, so that one that lost its state still issues tokens
	// above every one it issued before, which the nodes' session store
	// fences on. A replica's come from the lease records.
	fl, err := newFleetMode(cfg.ShardCount, cfg.LeaseTTL, cfg.BucketAligned, cfg.MaxConcurrency, firstToken(cfg.FirstToken), c.rep != nil)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrBadRequest, err)
	}
	planner, err := shard.NewPlanner(shard.Config{})
	if err != nil {
		return err
	}
	sched := identify.NewScheduler(cfg.MaxConcurrency, cfg.IdentifyInterval, cfg.IdentifyMargin, cfg.SessionStarts, cfg.SessionReset)
	sched.SetBudget(identify.Budget{Remaining: cfg.SessionStarts, Total: cfg.SessionStartTotal, ResetAt: cfg.SessionReset})
	c.gate.Store(identify.NewLocalGate(sched))
	c.fleet, c.planner, c.plan, c.recommended = fl, planner, shard.State{}, cfg.Recommended
	c.glance = glanceBoard{interval: cfg.HealthInterval}
	c.shardman = newShardman(cfg.ShardCount, cfg.BeatTimeout)
	c.count.Store(int64(cfg.ShardCount))
	c.nextAuto = time.Time{}
	// One namespace of shards: a shard leased to a node is not free for
	// Shardman, and one a Shardman worker holds is not assigned to a node.
	// Both run under c.mu.
	c.shardman.taken = func(shard int) bool {
		l, ok := c.fleet.leases.Get(shard)
		return ok && l.Live(time.Now())
	}
	c.fleet.taken = func(shard int) bool { return c.shardman.byShard[shard] != nil }
	return nil
}

// gateNow is the identify queue of the current leadership.
func (c *Coordinator) gateNow() *identify.LocalGate { return c.gate.Load() }

// Wait blocks until shard may identify, for a gateway node in the same
// process (gateway.IdentifyGate): it shares the queue with every remote
// node and worker.
func (c *Coordinator) Wait(ctx context.Context, shard int) error {
	return c.waitIdentify(ctx, shard, false)
}

// Identified reports a READY of a granted identify, for a gateway node in
// the same process (gateway.IdentifyObserver).
func (c *Coordinator) Identified(shard int, at time.Time) { c.gateNow().Identified(shard, at) }

// Handler returns the coordinator's HTTP handler.
func (c *Coordinator) Handler() http.Handler { return c.mux }

// tick is how often Run expires leases and health.
const tick = time.Second

// Run runs the coordinator's timers until ctx ends: it expires the leases
// of silent nodes, frees the shards of Shardman workers that stopped
// beating, marks silent glance shards unhealthy, refreshes the
// session-start budget, and (a replica) takes part in the election, leads
// when it wins, saves changed state every second and publishes its view.
func (c *Coordinator) Run(ctx context.Context) error {
	if c.rep != nil {
		return c.runReplica(ctx)
	}
	t := time.NewTicker(tick)
	defer t.Stop()
	var nextRefresh time.Time
	for {
		now := time.Now()
		c.sweep(now)
		if c.cfg.GatewayBot != nil && !now.Before(nextRefresh) {
			nextRefresh = now.Add(c.refreshBudget(ctx, now))
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// sweep applies timeouts at now.
func (c *Coordinator) sweep(now time.Time) {
	c.stepReshard(now, true)
	c.mu.Lock()
	freed := c.shardman.expire(now)
	unhealthy := c.glance.sweep(now)
	expired := c.fleet.expire(now)
	if len(freed) > 0 || len(unhealthy) > 0 {
		c.fleet.dirty = true
	}
	c.mu.Unlock()
	for _, l := range expired {
		c.log.Warn("node stopped heartbeating; its shard goes to another node", "shard", l.Shard, "node", l.Holder)
	}
	for _, s := range freed {
		c.log.Info("shardman: worker stopped beating; shard freed", "shard", s.shard, "session", s.id, "silent_for", now.Sub(s.lastBeat).Round(time.Second))
	}
	for _, k := range unhealthy {
		c.log.Warn("glance: no health report; shard unhealthy", "cluster", k.cluster, "shard", k.id)
	}
}

// refreshBudget asks Discord for the session-start budget and returns when
// to ask again.
func (c *Coordinator) refreshBudget(ctx context.Context, now time.Time) time.Duration {
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	gb, err := c.cfg.GatewayBot(rctx)
	if err != nil {
		if !errors.Is(err, context.Canceled) {
			c.log.Warn("refreshing the session-start budget failed; keeping the tracked one", "err", err)
		}
		return time.Minute
	}
	ssl := gb.SessionStartLimit
	c.mu.Lock()
	c.recommended = gb.Shards
	c.mu.Unlock()
	reset := time.Duration(ssl.ResetAfter) * time.Millisecond
	c.gateNow().SetBudget(identify.Budget{Remaining: ssl.Remaining, Total: ssl.Total, ResetAt: now.Add(reset)})
	if gb.SessionStartLimit.MaxConcurrency > 0 && gb.SessionStartLimit.MaxConcurrency != c.cfg.MaxConcurrency {
		c.log.Warn("Discord reports a different max_concurrency; restart the coordinator to use it",
			"configured", c.cfg.MaxConcurrency, "reported", gb.SessionStartLimit.MaxConcurrency)
	}
	next := c.cfg.RefreshEvery
	if reset > 0 && reset+time.Second < next {
		next = reset + time.Second // right after the window resets
	}
	return next
}

func firstToken(configured uint64) uint64 {
	if configured > 0 {
		return configured
	}
	return uint64(time.Now().UnixMicro())
}
