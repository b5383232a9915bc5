package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/broker"
	"github.com/gatehouse-dev/gatehouse/internal/discord"
	"github.com/gatehouse-dev/gatehouse/internal/discord/codec"
	"github.com/gatehouse-dev/gatehouse/internal/identify"
)

// DefaultAPI is Discord's REST base.
const DefaultAPI = "https://discord.com/api/v10"

// Errors of a node.
var (
	// ErrConfig: the Config is invalid; the wrapping error says why.
	ErrConfig = errors.New("gateway: invalid config")
	// ErrDiscord: a REST call to Discord failed; the wrapping error says how.
	ErrDiscord = errors.New("gateway: Discord API error")
	// ErrNotStarted: the node is not running (Run has not started its
	// shards yet, or it is shutting down).
	ErrNotStarted = errors.New("gateway: node not running")
	// ErrFenced: the node no longer holds the lease on a shard (see
	// Leases), so it publishes and saves nothing more for it. It is
	// broker.ErrFenced, which the session store returns for state saved
	// under a newer lease.
	ErrFenced = broker.ErrFenced
)

// Leases tells a node whether it still holds the lease on each shard it
// runs; the coordinator's agent implements it. A node checks it before
// every batch it publishes and every state it saves, and stamps both with
// the token, so that a node that lost a shard (partitioned from the
// coordinator, or paused) cannot publish or save as its owner: the store
// refuses state older than what the new owner saved, and consumers see
// which owner published each batch (broker.HeaderLease).
//
// Leases are per shard generation: during a reshard a node may run shard
// 3 of 16 and shard 3 of 24 side by side, under separate leases.
type Leases interface {
	// Lease returns the fencing token of shard of numShards and whether
	// this node may still act as its owner now.
	Lease(numShards, shard int) (token uint64, ok bool)
	// Lost tells the lease holder that the node stopped shard (of
	// numShards) because Lease said no (or the store refused its state):
	// the shard is stopped, not running, and should be removed and given
	// back.
	Lost(numShards, shard int)
}

// PublishMode is what the shards of one generation do with their events.
// Outside a reshard it is always ModePublish.
type PublishMode int32

// Publish modes, in the order a reshard uses them (see Node.SetMode).
const (
	// ModePublish publishes events in batches.
	ModePublish PublishMode = iota
	// ModeHold reads and follows the session (sequence, guilds) but
	// publishes nothing: a new generation before its turn, an old one
	// after it.
	ModeHold
	// ModeDedup publishes each event on its own under an ID drawn from its
	// content and its shard in the new generation (broker.Batch.Dedup), so
	// that when both generations publish the same event during the
	// overlap, the broker keeps one copy.
	ModeDedup
	// ModeHandover is ModeDedup for the old generation's last step: once
	// the broker answers that an event bound for a new shard was already
	// published (by that shard, which therefore receives and publishes
	// everything after it), the old shard holds that new shard's events.
	// ShardStatus.HandedOver says when every new shard it fed took over.
	ModeHandover
)

var modeNames = [...]string{ModePublish: "publish", ModeHold: "hold", ModeDedup: "dedup", ModeHandover: "handover"}

// String returns publish, hold, dedup or handover.
func (m PublishMode) String() string {
	if m < 0 || int(m) >= len(modeNames) {
		return fmt.Sprintf("PublishMode(%d)", int32(m))
	}
	return modeNames[m]
}

// ParsePublishMode parses a mode's name; "" is ModePublish.
func ParsePublishMode(s string) (PublishMode, error) {
	if s == "" {
		return ModePublish, nil
	}
	for m, name := range modeNames {
		if s == name {
			return PublishMode(m), nil
		}
	}
	return 0, fmt.Errorf("%w: publish mode %q: want publish, hold, dedup or handover", ErrConfig, s)
}

// Config configures a Node. Zero values mean the documented defaults.
type Config struct {
	// API is the REST base URL. Default DefaultAPI.
	API string
	// Token is the bot token, without "Bot ". Required. It is never logged.
	Token string
	// Shards lists the shard IDs this node starts with; nil means all of
	// them, an empty non-nil slice none (shards are then added with Add,
	// as a coordinator assigns them).
	Shards []int
	// ShardCount is the total shard count; 0 means Discord's recommendation
	// from /gateway/bot.
	ShardCount int
	// Intents sent in IDENTIFY. Default: every non-privileged intent.
	Intents discord.Intents
	// Compression is the transport compression. Default zlib-stream; use
	// codec.None explicitly via NoCompression.
	Compression   codec.Compression
	NoCompression bool
	// ZstdMaxWindow caps the zstd window (zstd-stream only). Default 1 MiB.
	ZstdMaxWindow int
	// MaxPayload caps one decompressed payload. Default 64 MiB.
	MaxPayload int

	// Publisher and Store are the broker. Required.
	Publisher broker.Publisher
	Store     broker.Store
	// Subjects names the event subjects.
	Subjects broker.Subjects
	// Partitions is the number of guild partitions in event subjects.
	// Default 1 (partition token always 0).
	Partitions int

	// Gate decides when a shard may identify. Default: a LocalGate built
	// from /gateway/bot's max_concurrency and session-start budget.
	Gate IdentifyGate
	// IdentifyInterval is the identify window per bucket. Default 5s.
	IdentifyInterval time.Duration
	// IdentifyMargin is added to IdentifyInterval by the default gate.
	// Default 25ms.
	IdentifyMargin time.Duration

	// BatchLinger is how long a batch may wait for more events before it is
	// published. An event of a trickling shard (nothing more read from the
	// connection, the previous event longer than BatchLinger ago) does not
	// wait. Default 5ms; negative publishes every event at once.
	BatchLinger time.Duration
	// MaxBatchBytes flushes a batch at this size. Default 64 KiB.
	MaxBatchBytes int
	// MaxBatchEvents flushes a batch at this many events. Default 512.
	MaxBatchEvents int
	// BatchCompression compresses batch bodies before they are published.
	// Default BatchS2: the broker's cost grows with the bytes it stores.
	BatchCompression BatchCompression

	// IdleAfter is how long a shard's connection must be quiet before the
	// shard shrinks what it holds: the zlib-stream window is packed (32 KiB
	// down to 7-10 KiB of gateway JSON) and read buffers go back to their
	// pools. Packing and the unpacking at the next message cost about 35 µs
	// together, once per quiet spell. Default 2s; negative never shrinks.
	IdleAfter time.Duration

	// ConnectTimeout bounds a WebSocket dial. Default 10s.
	ConnectTimeout time.Duration
	// HelloTimeout, ReadyTimeout: see MachineConfig.
	HelloTimeout, ReadyTimeout time.Duration
	// BackoffMin, BackoffMax bound reconnect delays. Default 1s, 60s.
	BackoffMin, BackoffMax time.Duration
	// InvalidSessionMin, InvalidSessionMax bound the random wait after op 9.
	// Default 1s and 5s, as Discord asks.
	InvalidSessionMin, InvalidSessionMax time.Duration
	// PersistInterval is how often session state is checked and a changed
	// session saved. Default 1s.
	PersistInterval time.Duration
	// SeqPersistInterval is how often a session's last published sequence
	// is saved when only it moved. Default 30s: a restarted node takes the
	// exact sequence from the newest batch in the stream; the saved one is
	// the fallback when that batch is gone.
	SeqPersistInterval time.Duration
	// SilenceAfter is the shortest absence of an event type, on a shard
	// where it has been flowing, that makes the shard silent: it is then
	// cycled by RESUME. The absence must also be worth SilenceEvents events
	// at the type's usual rate. Default 30s; negative turns detection off.
	SilenceAfter time.Duration
	// SilenceEvents is how many events of a type a silence must have
	// missed, at the type's own rate, to count. Default 100.
	SilenceEvents int
	// ShutdownTimeout bounds the graceful part of a shutdown (closing
	// connections, publishing what was read, saving state). Default 30s.
	ShutdownTimeout time.Duration

	// Leases, when set, fences the node's shards (see Leases). Nil: no
	// coordinator; every batch and saved state carries lease token 0.
	Leases Leases

	// NodeID names this node in saved state and logs. Default: host name.
	NodeID string
	// HTTPClient is used for REST calls (the gateway's WebSocket dials
	// directly). Default: a client with a 30s timeout.
	HTTPClient *http.Client
	Logger     *slog.Logger
}

// BatchCompression is how batch bodies are compressed.
type BatchCompression string

// Batch compressions.
const (
	BatchS2   BatchCompression = "s2"
	BatchNone BatchCompression = "none"
)

// DefaultIntents is every non-privileged intent.
const DefaultIntents = discord.IntentsNonPrivileged

func (c *Config) defaults() error {
	if c.Token == "" {
		return fmt.Errorf("%w: Token is required", ErrConfig)
	}
	if c.Publisher == nil || c.Store == nil {
		return fmt.Errorf("%w: Publisher and Store are required", ErrConfig)
	}
	if c.API == "" {
		c.API = DefaultAPI
	}
	c.API = strings.TrimRight(c.API, "/")
	if c.ShardCount < 0 {
		return fmt.Errorf("%w: ShardCount %d is negative", ErrConfig, c.ShardCount)
	}
	if c.Intents == 0 {
		c.Intents = DefaultIntents
	}
	if c.NoCompression {
		c.Compression = codec.None
	} else if c.Compression == codec.None {
		c.Compression = codec.ZlibStream
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&c.IdentifyInterval, discord.IdentifyIntervalMillis*time.Millisecond)
	def(&c.IdentifyMargin, 25*time.Millisecond)
	def(&c.BatchLinger, 5*time.Millisecond)
	def(&c.ConnectTimeout, 10*time.Second)
	def(&c.IdleAfter, 2*time.Second)
	def(&c.PersistInterval, time.Second)
	def(&c.SeqPersistInterval, 30*time.Second)
	def(&c.SilenceAfter, 30*time.Second)
	if c.SilenceEvents <= 0 {
		c.SilenceEvents = 100
	}
	def(&c.ShutdownTimeout, 30*time.Second)
	if c.MaxBatchBytes <= 0 {
		c.MaxBatchBytes = 64 << 10
	}
	switch c.BatchCompression {
	case "":
		c.BatchCompression = BatchS2
	case BatchS2, BatchNone:
	default:
		return fmt.Errorf("%w: BatchCompression %q: want s2 or none", ErrConfig, c.BatchCompression)
	}
	if c.MaxBatchEvents <= 0 {
		c.MaxBatchEvents = 512
	}
	if c.MaxPayload <= 0 {
		c.MaxPayload = 64 << 20
	}
	if c.Partitions <= 0 {
		c.Partitions = 1
	}
	if c.NodeID == "" {
		c.NodeID, _ = os.Hostname()
	}
	if c.HTTPClient == nil {
		c.HTTPClient = &http.Client{Timeout: 30 * time.Second}
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// Node runs a set of shards and publishes their events.
type Node struct {
	cfg      Config
	log      *slog.Logger
	pub      broker.Publisher
	subjects broker.Subjects
	maxBody  int
	gate     IdentifyGate
	bot      discord.GatewayBot
	botAt    time.Time // when bot was read

	runCtx   context.Context
	pubCtx   context.Context
	inflight sync.WaitGroup

	mu       sync.Mutex
	shards   map[shardKey]*shardRunner
	order    []shardKey
	count    int               // the current generation's shard count, once Run has started
	removing map[shardKey]bool // shards being removed
	modes    map[int]genMode   // by shard count; absent: ModePublish
	runWG    sync.WaitGroup    // every shard's run goroutine

	internMu sync.Mutex
	interned map[string]string

	bufs    sync.Pool // *[]byte: frames and inflated payloads
	batches sync.Pool // *broker.Batch, keeping their Body capacity

	metrics struct {
		published, badPayloads, oversize atomic.Int64
		quiet                            atomic.Int64 // connections idle for IdleAfter
	}
	events      eventCounts
	publishHist *Histogram
	retired     Counters // counters of the shards removed from this node; guarded by mu
	started     chan struct{}
}

// New checks cfg and returns a Node; Run starts it.
func New(cfg Config) (*Node, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	n := &Node{
		cfg: cfg, log: cfg.Logger.With("node", cfg.NodeID), pub: cfg.Publisher, subjects: cfg.Subjects,
		shards: map[shardKey]*shardRunner{}, removing: map[shardKey]bool{}, modes: map[int]genMode{}, interned: map[string]string{}, started: make(chan struct{}),
		publishHist: newHistogram(publishBuckets),
	}
	// Batches are published at MaxBatchBytes; MaxBody is the hard limit a
	// single large payload must fit (compressed if need be).
	n.maxBody = cfg.Publisher.MaxBody()
	return n, nil
}

// ID returns the node's ID (Config.NodeID, by default the host name).
func (n *Node) ID() string { return n.cfg.NodeID }

// Started is closed once every shard has been started (not necessarily
// READY).
func (n *Node) Started() <-chan struct{} { return n.started }

// GatewayBot returns what /gateway/bot said at start.
func (n *Node) GatewayBot() discord.GatewayBot { return n.bot }

// SessionStartLimit is the session-start budget /gateway/bot reported at
// start, and when it was read; ok is false until every shard started.
func (n *Node) SessionStartLimit() (ssl discord.SessionStartLimit, at time.Time, ok bool) {
	select {
	case <-n.started:
		return n.bot.SessionStartLimit, n.botAt, true
	default:
		return ssl, at, false
	}
}

func (n *Node) machineConfig(shard, numShards int) MachineConfig {
	return MachineConfig{
		Shard: shard, NumShards: numShards, Token: n.cfg.Token, Intents: n.cfg.Intents,
		Properties:   discord.IdentifyProperties{OS: runtime.GOOS, Browser: "gatehouse", Device: "gatehouse"},
		GatewayURL:   n.bot.URL,
		HelloTimeout: n.cfg.HelloTimeout, ReadyTimeout: n.cfg.ReadyTimeout,
		BackoffMin: n.cfg.BackoffMin, BackoffMax: n.cfg.BackoffMax,
		InvalidSessionMin: n.cfg.InvalidSessionMin, InvalidSessionMax: n.cfg.InvalidSessionMax,
	}
}

// FetchGatewayBot calls GET /gateway/bot.
func FetchGatewayBot(ctx context.Context, client *http.Client, api, token string) (discord.GatewayBot, error) {
	var gb discord.GatewayBot
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, api+"/gateway/bot", nil)
	if err != nil {
		return gb, fmt.Errorf("%w: %v", ErrConfig, err)
	}
	req.Header.Set("Authorization", "Bot "+token)
	req.Header.Set("User-Agent", "DiscordBot (https://github.com/gatehouse-dev/gatehouse, 1)")
	resp, err := client.Do(req)
	if err != nil {
		return gb, fmt.Errorf("%w: GET /gateway/bot: %v", ErrDiscord, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return gb, fmt.Errorf("%w: GET /gateway/bot: %v", ErrDiscord, err)
	}
	if resp.StatusCode != http.StatusOK {
		return gb, fmt.Errorf("%w: GET /gateway/bot: %s: %s", ErrDiscord, resp.Status, strings.TrimSpace(string(body)))
	}
	if err := json.Unmarshal(body, &gb); err != nil || gb.URL == "" || gb.Shards < 1 {
		return gb, fmt.Errorf("%w: GET /gateway/bot: unexpected answer %.200q", ErrDiscord, body)
	}
	return gb, nil
}

// Run fetches /gateway/bot, starts the shards (resumable ones at once, the
// others through the identify gate) and runs until ctx ends. Then it shuts
// down gracefully: each connection is closed with a resumable code (never
// 1000/1001), what was read is published, and the session state is saved,
// so the next start RESUMEs. It returns nil after a clean shutdown, or the
// error that prevented the start.
func (n *Node) Run(ctx context.Context) error {
	gb, err := FetchGatewayBot(ctx, n.cfg.HTTPClient, n.cfg.API, n.cfg.Token)
	if err != nil {
		return err
	}
	n.bot, n.botAt = gb, time.Now()
	count := n.cfg.ShardCount
	if count == 0 {
		count = gb.Shards
	}
	ids := n.cfg.Shards
	if ids == nil {
		ids = make([]int, count)
		for i := range ids {
			ids[i] = i
		}
	}
	for _, id := range ids {
		if id < 0 || id >= count {
			return fmt.Errorf("%w: shard %d is outside 0..%d", ErrConfig, id, count-1)
		}
	}
	mc := max(gb.SessionStartLimit.MaxConcurrency, 1)
	// Bucket order: round by round, so every bucket's first shard starts
	// in the first window.
	ids = slices.Clone(ids)
	slices.SortFunc(ids, func(a, b int) int {
		if ra, rb := a/mc, b/mc; ra != rb {
			return ra - rb
		}
		return a - b
	})
	ids = slices.Compact(ids)
	n.gate = n.cfg.Gate
	if n.gate == nil {
		reset := time.Now().Add(time.Duration(gb.SessionStartLimit.ResetAfter) * time.Millisecond)
		n.gate = identify.NewLocalGate(identify.NewScheduler(mc, n.cfg.IdentifyInterval, n.cfg.IdentifyMargin, gb.SessionStartLimit.Remaining, reset))
	}
	n.log.Info("starting shards", "shards", len(ids), "shard_count", count, "max_concurrency", mc,
		"session_starts_remaining", gb.SessionStartLimit.Remaining, "compression", string(n.cfg.Compression))

	runCtx, cancelRun := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelRun()
	pubCtx, cancelPub := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelPub()
	n.runCtx, n.pubCtx = runCtx, pubCtx

	n.mu.Lock()
	n.count = count
	n.mu.Unlock()
	resumed := 0
	for _, id := range ids {
		if n.startShard(ctx, count, id) {
			resumed++
		}
	}
	close(n.started)
	n.log.Info("shards started", "resuming", resumed, "identifying", len(ids)-resumed)

	persistDone := make(chan struct{})
	go func() {
		defer close(persistDone)
		t := time.NewTicker(n.cfg.PersistInterval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				n.persist(runCtx, false)
			}
		}
	}()

	<-ctx.Done()
	<-persistDone
	n.log.Info("shutting down", "shards", len(ids))
	timer := time.AfterFunc(n.cfg.ShutdownTimeout, func() {
		n.log.Warn("shutdown timeout: abandoning unpublished batches (they will be replayed on resume)")
		cancelPub()
		cancelRun()
	})
	defer timer.Stop()
	// Stop every shard: each closes its connection with a resumable code,
	// publishes what it read, and exits.
	var stops sync.WaitGroup
	for _, r := range n.runners() {
		stops.Go(func() { r.step(r.m.Stop) })
	}
	stops.Wait()
	cancelRun() // dials and identify waits still pending
	n.runWG.Wait()
	// Wait for the broker to acknowledge what was handed to it, but not
	// past the shutdown timeout: a broker that is gone never answers. What
	// is not acknowledged is not in the saved sequence, so the next run's
	// RESUME has Discord replay it.
	acked := make(chan struct{})
	go func() { n.inflight.Wait(); close(acked) }() // ends when the broker is closed, at the latest
	select {
	case <-acked:
	case <-pubCtx.Done():
		n.log.Warn("shutdown: batches not acknowledged by the broker are left to replay on resume")
	}
	persistCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	n.persist(persistCtx, true)
	n.log.Info("stopped", "events", n.Stats().Events, "published", n.metrics.published.Load())
	return nil
}

// shardKey names a shard of one generation.
type shardKey struct{ count, id int }

// startShard loads shard's saved session and starts its runner. It
// reports whether the shard resumes.
func (n *Node) startShard(ctx context.Context, count, id int) bool {
	resume, saved := n.loadSession(ctx, id, count)
	r := newShardRunner(n, id, count, resume, saved.Guilds, saved.GuildsPending)
	k := shardKey{count, id}
	n.mu.Lock()
	if gm, ok := n.modes[count]; ok {
		r.setMode(gm.mode, gm.newCount)
	}
	n.shards[k] = r
	n.order = append(n.order, k)
	n.mu.Unlock()
	n.runWG.Go(r.run)
	return resume.ID != ""
}

// Add starts shard of the current shard count on a running node: it
// RESUMEs the session saved in the store (by this node or another) when
// there is one, else it identifies through the gate. It returns
// ErrNotStarted before Run has started the node's shards or after shutdown
// began, and ErrConfig for a shard out of range or already running here.
func (n *Node) Add(ctx context.Context, shard int) error {
	return n.Start(ctx, n.ShardCount(), shard)
}

// Start is Add for shard of numShards, which need not be the current
// count: during a reshard a node runs shards of the new generation beside
// the old (see SetMode and Promote).
func (n *Node) Start(ctx context.Context, numShards, shard int) error {
	select {
	case <-n.started:
	default:
		return ErrNotStarted
	}
	k := shardKey{numShards, shard}
	n.mu.Lock()
	running, removing := n.shards[k] != nil, n.removing[k]
	n.mu.Unlock()
	switch {
	case n.runCtx.Err() != nil:
		return ErrNotStarted
	case numShards < 1:
		return fmt.Errorf("%w: shard count %d", ErrConfig, numShards)
	case shard < 0 || shard >= numShards:
		return fmt.Errorf("%w: shard %d is outside 0..%d", ErrConfig, shard, numShards-1)
	case running || removing:
		return fmt.Errorf("%w: shard %d/%d already runs here", ErrConfig, shard, numShards)
	}
	resumed := n.startShard(ctx, numShards, shard)
	n.log.Info("shard added", "shard", shard, "shard_count", numShards, "resuming", resumed)
	return nil
}

// ShardCount returns the current generation's shard count (0 before Run
// started the node).
func (n *Node) ShardCount() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.count
}

// genMode is a generation's publish mode and the reshard's new count.
type genMode struct {
	mode     PublishMode
	newCount int
}

// SetMode sets what the shards of numShards do with their events, now and
// when more of them start; newCount is the shard count a reshard moves to
// (content IDs name the event's shard in it). A reshard runs the
// generations through these steps: the new one starts in ModeHold while
// the old publishes; the old switches to ModeDedup, then the new; the old
// to ModeHandover, and once every old shard handed over, the old holds and
// the new publishes in batches again (see Promote). At each step the
// broker's deduplication of the content IDs keeps exactly one copy of
// every event either generation saw.
func (n *Node) SetMode(numShards int, mode PublishMode, newCount int) {
	n.mu.Lock()
	if mode == ModePublish {
		delete(n.modes, numShards)
	} else {
		n.modes[numShards] = genMode{mode, newCount}
	}
	var rs []*shardRunner
	for k, r := range n.shards {
		if k.count == numShards {
			rs = append(rs, r)
		}
	}
	n.mu.Unlock()
	for _, r := range rs {
		r.setMode(mode, newCount)
	}
}

// Mode returns the publish mode of numShards' shards.
func (n *Node) Mode(numShards int) PublishMode {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.modes[numShards].mode
}

// Promote makes numShards the current shard count: commands and Owns
// address its shards from now on.
func (n *Node) Promote(numShards int) {
	n.mu.Lock()
	old := n.count
	n.count = numShards
	n.mu.Unlock()
	if old != numShards {
		n.log.Info("shard count promoted", "from", old, "to", numShards)
	}
}

// Remove stops shard of the current count the way a shutdown does: the
// connection is closed with a resumable code, what was read is published
// and acknowledged (or ctx ends), and the session is saved, so that
// another node can RESUME it. It returns ErrNotOwned when the shard does
// not run here.
func (n *Node) Remove(ctx context.Context, shard int) error {
	return n.Stop(ctx, n.ShardCount(), shard)
}

// Stop is Remove for shard of numShards.
func (n *Node) Stop(ctx context.Context, numShards, shard int) error {
	return n.stopShard(ctx, shardKey{numShards, shard}, false)
}

// Retire stops every shard of numShards, a generation a reshard replaced,
// and deletes their saved sessions: nothing will resume them.
func (n *Node) Retire(ctx context.Context, numShards int) error {
	n.mu.Lock()
	var keys []shardKey
	for k := range n.shards {
		if k.count == numShards {
			keys = append(keys, k)
		}
	}
	n.mu.Unlock()
	var (
		wg   sync.WaitGroup
		emu  sync.Mutex
		errs []error
	)
	for _, k := range keys {
		wg.Go(func() {
			if err := n.stopShard(ctx, k, true); err != nil && !errors.Is(err, ErrNotOwned) {
				emu.Lock()
				errs = append(errs, err)
				emu.Unlock()
			}
		})
	}
	wg.Wait()
	n.mu.Lock()
	delete(n.modes, numShards)
	n.mu.Unlock()
	if len(keys) > 0 {
		n.log.Info("generation retired", "shard_count", numShards, "shards", len(keys))
	}
	return errors.Join(errs...)
}

// stopShard stops a shard; forget deletes its saved session instead of
// saving it.
func (n *Node) stopShard(ctx context.Context, k shardKey, forget bool) error {
	shard := k.id
	n.mu.Lock()
	r := n.shards[k]
	if r == nil || n.removing[k] {
		n.mu.Unlock()
		return ErrNotOwned
	}
	n.removing[k] = true
	n.mu.Unlock()
	defer func() {
		n.mu.Lock()
		delete(n.removing, k)
		n.mu.Unlock()
	}()
	r.step(r.m.Stop)
	select {
	case <-r.done:
	case <-ctx.Done():
		return ctx.Err()
	}
	acked := make(chan struct{})
	go func() { r.batch.pending.Wait(); close(acked) }() // ends at the latest when the broker answers or closes
	select {
	case <-acked:
	case <-ctx.Done():
		n.log.Warn("shard removed before its last batches were acknowledged; they replay on resume", "shard", shard)
	}
	c := r.status().Counters
	n.mu.Lock()
	delete(n.shards, k)
	n.order = slices.DeleteFunc(n.order, func(o shardKey) bool { return o == k })
	n.retired.Identifies += c.Identifies
	n.retired.Resumes += c.Resumes
	n.retired.Reconnects += c.Reconnects
	n.retired.Zombies += c.Zombies
	n.retired.Silences += c.Silences
	n.mu.Unlock()
	if forget {
		tok, _ := n.lease(k.count, shard)
		if err := n.cfg.Store.DeleteSession(ctx, shard, k.count, tok); err != nil && !errors.Is(err, broker.ErrNotFound) {
			return fmt.Errorf("gateway: deleting shard %d/%d's session: %w", shard, k.count, err)
		}
		return nil
	}
	if err := n.save(ctx, r, time.Now(), true); err != nil {
		return fmt.Errorf("gateway: saving shard %d's session: %w", shard, err)
	}
	n.log.Info("shard removed", "shard", shard, "shard_count", k.count)
	return nil
}

// loadSession returns the session to resume (none: an empty ID) and the
// state saved with it.
func (n *Node) loadSession(ctx context.Context, shard, count int) (Session, broker.SessionState) {
	var s Session
	st, err := n.cfg.Store.LoadSession(ctx, shard, count)
	switch {
	case err == nil:
		s = Session{ID: st.SessionID, Seq: st.Seq, ResumeURL: st.ResumeGatewayURL}
	case !errors.Is(err, broker.ErrNotFound):
		n.log.Warn("loading session state", "shard", shard, "err", err)
	}
	// The stream may hold batches newer than the saved state (a crash
	// between an ack and the next save): resume after the newest.
	last, err := n.cfg.Store.LastBatch(ctx, shard)
	switch {
	case err == nil && last.NumShards != 0 && last.NumShards != count:
		// Another generation's batch (a reshard): not this session's.
	case err == nil:
		if last.Session == s.ID && last.LastSeq > s.Seq {
			s.Seq = last.LastSeq
		} else if last.Session != s.ID && s.ID != "" && last.Session != "" {
			// A newer session published before its state was saved: it is
			// the one Discord still holds. Its resume URL is unknown; the
			// saved one usually serves, else the RESUME fails and the
			// shard identifies.
			s.ID, s.Seq = last.Session, last.LastSeq
		}
	case !errors.Is(err, broker.ErrNotFound):
		n.log.Warn("reading the newest batch", "shard", shard, "err", err)
	}
	if s.ID != "" && s.ResumeURL == "" {
		s.ResumeURL = n.bot.URL
	}
	return s, st
}

func (n *Node) runners() []*shardRunner {
	n.mu.Lock()
	defer n.mu.Unlock()
	rs := make([]*shardRunner, 0, len(n.order))
	for _, k := range n.order {
		rs = append(rs, n.shards[k])
	}
	return rs
}

func (n *Node) persist(ctx context.Context, force bool) {
	now := time.Now()
	for _, r := range n.runners() {
		if !force && n.cfg.SilenceAfter > 0 {
			r.checkSilence(now)
		}
		err := n.save(ctx, r, now, force)
		switch {
		case errors.Is(err, ErrFenced):
			r.fenced(err)
		case err != nil:
			n.log.Warn("saving session state", "shard", r.id, "err", err) // tried again next tick
		}
	}
}

// lease returns the fencing token of shard of count and whether the node
// still holds it.
func (n *Node) lease(count, shard int) (uint64, bool) {
	if n.cfg.Leases == nil {
		return 0, true
	}
	return n.cfg.Leases.Lease(count, shard)
}

// save stores r's session state when it changed (or, with force, when only
// its sequence moved): a dropped session is deleted.
func (n *Node) save(ctx context.Context, r *shardRunner, now time.Time, force bool) error {
	st, changed := r.persistState(now, n.cfg.SeqPersistInterval, force)
	if !changed {
		return nil
	}
	tok, ok := n.lease(r.numShards, r.id)
	if !ok {
		return fmt.Errorf("gateway: shard %d: %w", r.id, ErrFenced)
	}
	st.Lease = tok
	var err error
	if st.SessionID == "" {
		err = n.cfg.Store.DeleteSession(ctx, st.Shard, st.NumShards, tok)
	} else {
		err = n.cfg.Store.SaveSession(ctx, st)
	}
	if err != nil {
		return err
	}
	r.markSaved(st, now)
	return nil
}

// Command sends a gateway command (presence, voice state, request guild
// members, request soundboard sounds) on shard's connection. It waits for
// the connection's send limiter and refuses payloads over 4096 bytes.
func (n *Node) Command(ctx context.Context, shard int, payload []byte) error {
	n.mu.Lock()
	r := n.shards[shardKey{n.count, shard}]
	n.mu.Unlock()
	if r == nil {
		return ErrNotOwned
	}
	return r.command(ctx, payload)
}

// Owns reports whether this node runs shard of the current count.
func (n *Node) Owns(shard int) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.shards[shardKey{n.count, shard}] != nil
}

// ShardStatus describes one shard.
type ShardStatus struct {
	Shard     int    `json:"shard"`
	NumShards int    `json:"num_shards"`
	State     string `json:"state"`
	// Mode is the shard's publish mode: publish, or during a reshard hold,
	// dedup or handover (see Node.SetMode); HandedOver says, in handover,
	// that every new shard this one fed has taken over.
	Mode       string `json:"mode"`
	HandedOver bool   `json:"handed_over,omitempty"`
	// Offline: the shard was ready, lost its connection and failed at
	// least once to get it back (see Machine.Offline).
	Offline      bool          `json:"offline,omitempty"`
	Error        string        `json:"error,omitempty"`
	Latency      time.Duration `json:"latency_ns"`
	Session      string        `json:"session_id,omitempty"`
	Seq          int64         `json:"seq"`
	PublishedSeq int64         `json:"published_seq"`
	Events       int64         `json:"events"`
	// Guilds is how many guilds the session holds, followed from READY,
	// GUILD_CREATE and GUILD_DELETE (and saved with the session, so it
	// survives a move); GuildsKnown is false until a READY or a saved
	// count gave it a base.
	Guilds      int  `json:"guilds"`
	GuildsKnown bool `json:"guilds_known"`
	// GuildsPending is how many of them are still due their GUILD_CREATE
	// (READY's guilds arrive one by one).
	GuildsPending int       `json:"guilds_pending"`
	Counters      Counters  `json:"counters"`
	IdentifiedAt  time.Time `json:"identified_at"` // the last IDENTIFY sent
	ReadyAt       time.Time `json:"ready_at"`      // the last READY or RESUMED
}

// Condition is the state to show for the shard: "offline" when it is
// Offline, else State.
func (s ShardStatus) Condition() string {
	if s.Offline {
		return "offline"
	}
	return s.State
}

// Status returns every shard's status, in start order; during a reshard,
// the shards of both generations (see ShardStatus.NumShards).
func (n *Node) Status() []ShardStatus {
	rs := n.runners()
	out := make([]ShardStatus, len(rs))
	for i, r := range rs {
		out[i] = r.status()
	}
	return out
}

// Stats are node-wide counters.
type Stats struct {
	Events, Published, BadPayloads, Oversize int64
	// Quiet is how many shard connections are idle now: nothing received
	// for Config.IdleAfter, their memory shrunk.
	Quiet int64
}

// Stats returns node-wide counters.
func (n *Node) Stats() Stats {
	var events int64 // summed here, not counted twice on the event path
	for _, r := range n.runners() {
		events += r.events.Load()
	}
	return Stats{
		Events: events, Published: n.metrics.published.Load(),
		BadPayloads: n.metrics.badPayloads.Load(), Oversize: n.metrics.oversize.Load(),
		Quiet: n.metrics.quiet.Load(),
	}
}

func (n *Node) intern(b []byte) string {
	n.internMu.Lock()
	defer n.internMu.Unlock()
	if s, ok := n.interned[string(b)]; ok {
		return s
	}
	s := string(b)
	if len(n.interned) < 1<<16 {
		n.interned[s] = s
	}
	return s
}

func (n *Node) getBuf() *[]byte {
	if p, ok := n.bufs.Get().(*[]byte); ok {
		*p = (*p)[:0]
		return p
	}
	b := make([]byte, 0, 4096)
	return &b
}

func (n *Node) putBuf(p *[]byte) {
	if cap(*p) > 1<<20 {
		return // do not keep rare huge buffers
	}
	n.bufs.Put(p)
}
