// Package loadtest holds the building blocks of Gatehouse's load tests and
// end-to-end benchmarks: a fleet of minimal raw gateway clients that identify
// within Discord's rules, heartbeat, and count what they receive, and helpers
// to run the simulator as a separate process and read its CPU time.
//
// The clients are deliberately bare (no session state beyond what the protocol
// needs, no reconnect) so that a benchmark measures the server side.
package loadtest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"github.com/gatehouse-dev/gatehouse/internal/discord"
	"github.com/gatehouse-dev/gatehouse/internal/discord/codec"
)

// FleetConfig configures a Fleet. Zero values mean the documented defaults.
type FleetConfig struct {
	// BaseURL is the REST base, e.g. http://127.0.0.1:8787/api/v10. Required.
	BaseURL string
	// Token is the bot token (without "Bot "). Required.
	Token string
	// Shards is the number of shards to run (shard IDs 0..Shards-1). Default:
	// the recommendation of /gateway/bot.
	Shards int
	// IdentifyInterval is the identify window per bucket. Default 5s. The
	// bucket count comes from /gateway/bot's max_concurrency.
	IdentifyInterval time.Duration
	// Intents sent in IDENTIFY. Default: all non-privileged intents.
	Intents discord.Intents
	// Compression is the transport compression to ask for. Default none.
	Compression codec.Compression
	// Logger receives connection errors. Default: discard.
	Logger *slog.Logger
}

// FleetStats is a snapshot of a fleet's counters.
type FleetStats struct {
	Connected int   // connections open now
	Ready     int   // shards that received READY
	Events    int64 // dispatches received other than READY and GUILD_CREATE
	Guilds    int64 // GUILD_CREATE dispatches received
	Bytes     int64 // decompressed payload bytes received
	Errors    int64 // connections that ended with an error
	Invalid   int64 // op 9 INVALID_SESSION received (each is retried once)
	// FirstIdentify and LastReady bound the fleet start.
	FirstIdentify, LastReady time.Time
}

// Fleet runs one raw gateway client per shard.
type Fleet struct {
	cfg    FleetConfig
	log    *slog.Logger
	gw     discord.GatewayBot
	client *http.Client

	connected, ready         atomic.Int64
	events, guilds, bytes    atomic.Int64
	errs, invalid            atomic.Int64
	mu                       sync.Mutex
	firstIdentify, lastReady time.Time
}

// NewFleet validates cfg and reads /gateway/bot.
func NewFleet(ctx context.Context, cfg FleetConfig) (*Fleet, error) {
	if cfg.BaseURL == "" || cfg.Token == "" {
		return nil, errors.New("loadtest: BaseURL and Token are required")
	}
	if cfg.IdentifyInterval <= 0 {
		cfg.IdentifyInterval = discord.IdentifyIntervalMillis * time.Millisecond
	}
	if cfg.Intents == 0 {
		cfg.Intents = discord.IntentsNonPrivileged
	}
	f := &Fleet{cfg: cfg, log: cfg.Logger, client: &http.Client{Timeout: 10 * time.Second}}
	if f.log == nil {
		f.log = slog.New(slog.DiscardHandler)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, cfg.BaseURL+"/gateway/bot", nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bot "+cfg.Token)
	resp, err := f.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("loadtest: GET /gateway/bot: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("loadtest: GET /gateway/bot: %s", resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(&f.gw); err != nil {
		return nil, fmt.Errorf("loadtest: GET /gateway/bot: %w", err)
	}
	if f.cfg.Shards <= 0 {
		f.cfg.Shards = f.gw.Shards
	}
	if f.gw.SessionStartLimit.MaxConcurrency < 1 {
		f.gw.SessionStartLimit.MaxConcurrency = 1
	}
	return f, nil
}

// Shards is the number of shards the fleet runs.
func (f *Fleet) Shards() int { return f.cfg.Shards }

// Stats returns the counters now.
func (f *Fleet) Stats() FleetStats {
	f.mu.Lock()
	first, last := f.firstIdentify, f.lastReady
	f.mu.Unlock()
	return FleetStats{
		Connected: int(f.connected.Load()), Ready: int(f.ready.Load()),
		Events: f.events.Load(), Guilds: f.guilds.Load(), Bytes: f.bytes.Load(),
		Errors: f.errs.Load(), Invalid: f.invalid.Load(), FirstIdentify: first, LastReady: last,
	}
}

// Run connects every shard, identifying bucket by bucket in shard order (the
// shards of round k identify at k × IdentifyInterval after the first), and
// keeps them running until ctx is done. It returns when every connection has
// closed.
func (f *Fleet) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	gate := newIdentifyGate(f.gw.SessionStartLimit.MaxConcurrency, f.cfg.IdentifyInterval)
	var wg sync.WaitGroup
	for shard := range f.cfg.Shards {
		wg.Go(func() {
			if err := f.runShard(ctx, shard, gate); err != nil && ctx.Err() == nil {
				f.errs.Add(1)
				f.log.Warn("shard ended", "shard", shard, "err", err)
			}
		})
	}
	wg.Wait()
	return nil
}

func (f *Fleet) runShard(ctx context.Context, shard int, gate *identifyGate) error {
	url := f.gw.URL + "/?v=10&encoding=json"
	if f.cfg.Compression != codec.None {
		url += "&compress=" + string(f.cfg.Compression)
	}
	conn, _, err := websocket.Dial(ctx, url, nil)
	if err != nil {
		return err
	}
	conn.SetReadLimit(-1)
	f.connected.Add(1)
	defer f.connected.Add(-1)
	defer conn.CloseNow()

	dec, err := codec.NewDecoder(f.cfg.Compression, codec.DecoderConfig{})
	if err != nil {
		return err
	}
	var (
		buf     []byte
		lastSeq atomic.Int64
		hb      sync.WaitGroup
		started bool
		retried bool
	)
	hbCtx, hbCancel := context.WithCancel(ctx)
	defer func() {
		hbCancel()
		hb.Wait()
	}()
	for {
		_, msg, err := conn.Read(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		out, ok, err := dec.Decode(buf[:0], msg)
		if err != nil {
			return err
		}
		buf = out
		if !ok {
			continue
		}
		f.bytes.Add(int64(len(out)))
		h, err := discord.ScanHeader(out)
		if err != nil {
			return err
		}
		if h.S > lastSeq.Load() {
			lastSeq.Store(h.S)
		}
		switch h.Op {
		case discord.OpHello:
			var hello discord.Hello
			if err := json.Unmarshal(h.D, &hello); err != nil {
				return err
			}
			interval := time.Duration(hello.HeartbeatInterval) * time.Millisecond
			if started {
				return errors.New("second HELLO")
			}
			started = true
			hb.Go(func() { heartbeat(hbCtx, conn, interval, &lastSeq) })
			if err := f.sendIdentify(ctx, conn, shard, gate); err != nil {
				return err
			}
		case discord.OpHeartbeat:
			if err := conn.Write(ctx, websocket.MessageText, heartbeatPayload(lastSeq.Load())); err != nil {
				return err
			}
		case discord.OpInvalidSession:
			// A real client waits 1-5 s and identifies again; so does the
			// fleet, once, and counts it.
			f.invalid.Add(1)
			if retried {
				return errors.New("invalid session twice")
			}
			retried = true
			select {
			case <-time.After(time.Second):
			case <-ctx.Done():
				return nil
			}
			if err := f.sendIdentify(ctx, conn, shard, gate); err != nil {
				return err
			}
		case discord.OpReconnect:
			return errors.New("reconnect requested")
		case discord.OpDispatch:
			switch {
			case h.TypeIs("READY"):
				f.ready.Add(1)
				f.mu.Lock()
				f.lastReady = time.Now()
				f.mu.Unlock()
			case h.TypeIs("GUILD_CREATE"):
				f.guilds.Add(1)
			default:
				f.events.Add(1)
			}
		}
	}
}

// sendIdentify sends IDENTIFY for shard when the gate lets it through.
func (f *Fleet) sendIdentify(ctx context.Context, conn *websocket.Conn, shard int, gate *identifyGate) error {
	err := gate.do(ctx, shard, func() error {
		f.mu.Lock()
		if f.firstIdentify.IsZero() {
			f.firstIdentify = time.Now()
		}
		f.mu.Unlock()
		return conn.Write(ctx, websocket.MessageText, f.identify(shard))
	})
	if ctx.Err() != nil {
		return nil
	}
	return err
}

func (f *Fleet) identify(shard int) []byte {
	b := []byte(`{"op":2,"d":{"token":`)
	b = strconv.AppendQuote(b, f.cfg.Token)
	b = append(b, `,"properties":{"os":"linux","browser":"gatehouse-loadtest","device":"gatehouse-loadtest"},"shard":[`...)
	b = strconv.AppendInt(b, int64(shard), 10)
	b = append(b, ',')
	b = strconv.AppendInt(b, int64(f.cfg.Shards), 10)
	b = append(b, `],"intents":`...)
	b = strconv.AppendUint(b, uint64(f.cfg.Intents), 10)
	return append(b, `}}`...)
}

func heartbeatPayload(seq int64) []byte {
	b := []byte(`{"op":1,"d":`)
	if seq == 0 {
		b = append(b, "null"...)
	} else {
		b = strconv.AppendInt(b, seq, 10)
	}
	return append(b, '}')
}

// heartbeat sends a heartbeat every interval (the first after a random part
// of it is not needed here: the fleet's identify pacing already spreads
// connections) until ctx is done.
func heartbeat(ctx context.Context, conn *websocket.Conn, interval time.Duration, seq *atomic.Int64) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := conn.Write(ctx, websocket.MessageText, heartbeatPayload(seq.Load())); err != nil {
				return
			}
		}
	}
}

// identifyGate lets one IDENTIFY per bucket through per interval, measured
// from when the previous one was written, plus a margin for the time the
// server takes to read it.
type identifyGate struct {
	interval time.Duration
	buckets  []chan time.Time // holds the earliest time of the next IDENTIFY
}

func newIdentifyGate(maxConcurrency int, interval time.Duration) *identifyGate {
	g := &identifyGate{interval: interval + max(interval/20, 50*time.Millisecond)}
	for range maxConcurrency {
		c := make(chan time.Time, 1)
		c <- time.Time{}
		g.buckets = append(g.buckets, c)
	}
	return g
}

// do waits for the shard's bucket, runs send, and closes the bucket for an
// interval.
func (g *identifyGate) do(ctx context.Context, shard int, send func() error) error {
	c := g.buckets[discord.ShardBucket(shard, len(g.buckets))]
	var next time.Time
	select {
	case next = <-c:
	case <-ctx.Done():
		return ctx.Err()
	}
	if d := time.Until(next); d > 0 {
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			c <- next
			return ctx.Err()
		}
	}
	err := send()
	c <- time.Now().Add(g.interval)
	return err
}
