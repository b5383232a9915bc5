package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/broker"
	"github.com/gatehouse-dev/gatehouse/internal/broker/natsbroker"
	"github.com/gatehouse-dev/gatehouse/internal/coord"
	"github.com/gatehouse-dev/gatehouse/internal/dashboard"
	"github.com/gatehouse-dev/gatehouse/internal/discord"
	"github.com/gatehouse-dev/gatehouse/internal/gateway"
	"github.com/gatehouse-dev/gatehouse/internal/metrics"
)

const coordinatorSummary = `Run the coordinator: one identify queue for every shard of the deployment (gateway
nodes started with -coordinator, and bot processes through POST /v1/identify/{shard} or
twilight's GET /queue?shard=N), Shardman's /connect and /beat, glance's /api/status and
/api/health, and a JSON API described at /openapi.json.

With a bot token (-token or $GATEHOUSE_TOKEN) it reads the shard count, max_concurrency
and the session-start budget from Discord's /gateway/bot and keeps the budget fresh;
without one, pass -shard-count and -max-concurrency. Role tokens come from the
environment: GATEHOUSE_ADMIN_TOKEN (required), GATEHOUSE_NODE_TOKEN,
GATEHOUSE_WORKER_TOKEN (also Shardman's secret) and GATEHOUSE_STATUS_TOKEN.`

func runCoordinator(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("coordinator", coordinatorSummary, stderr)
	var (
		listen     = fs.String("listen", "127.0.0.1:8080", "HTTP `HOST:PORT` of the API (port 0 picks a free port)")
		api        = fs.String("api", gateway.DefaultAPI, "Discord REST base `URL` (a gatehouse sim: http://127.0.0.1:8787/api/v10)")
		token      = fs.String("token", "", "bot `token` to read /gateway/bot with (default $GATEHOUSE_TOKEN; optional)")
		shardCount = fs.String("shard-count", "auto", "total shard count: a number, or auto (Discord's recommendation; needs the bot token)")
		maxConc    = fs.Int("max-concurrency", 0, "identify buckets (Discord's max_concurrency); 0 = from /gateway/bot, or 1 without a bot token")
		interval   = fs.Duration("identify-interval", 5*time.Second, "identify window per bucket (Discord: 5s; shorter only against a simulator configured the same)")
		margin     = fs.Duration("identify-margin", 25*time.Millisecond, "added to every identify window, against clock and network jitter")
		beat       = fs.Duration("beat-timeout", 60*time.Second, "Shardman: free the shard of a worker that has not beaten for this long")
		health     = fs.Duration("health-interval", 60*time.Second, "glance: an online shard without a health report for this long becomes unhealthy")
		leaseTTL   = fs.Duration("lease-ttl", 15*time.Second, "a gateway node's shard leases last this long without a heartbeat (nodes beat every third of it); then its shards go to other nodes")
		settle     = fs.Duration("reshard-settle", 2*time.Second, "reshard: how long each step of the switch to the new generation waits once every shard confirmed it, for events in flight between Discord's two sessions")
		handover   = fs.Duration("reshard-handover-timeout", 30*time.Second, "reshard: end the handover after this long even if some old shard never saw its new shards take over (no traffic on them)")
		autoResh   = fs.Bool("auto-reshard", false, "reshard on its own when the planner advises it (guilds past 80% of shards × 2,500, with hysteresis) and the identify budget covers it; a shard closed with 4011 reshards whatever this says")
		aligned    = fs.Bool("bucket-aligned", false, "keep each identify bucket's shards on one gateway node where capacity allows")
		connects   = fs.Int("connects-per-minute", 120, "Shardman connects allowed per client IP per minute")
		queueOpen  = fs.Bool("queue-open", false, "serve twilight's /queue without a token, as the original does (private networks only)")
		natsURL    = fs.String("nats", "", "the control plane's NATS JetStream: embedded (in this process, which nodes and workers can share), a nats:// `URL` (several, comma-separated, for a cluster), or empty for a standalone coordinator that keeps everything in memory. With NATS any number of coordinators run as replicas of one control plane: one leads, the others serve reads and forward writes")
		replicaID  = fs.String("replica-id", "", "this coordinator among its replicas (default: the host name and a random suffix)")
		advertise  = fs.String("advertise", "", "with -nats: the `URL` other replicas forward writes to while this one leads (default: http:// and the -listen address, when it names a host)")
		reserve    = fs.String("session-reserve", "10%", "session starts every plan keeps for sessions that cannot resume: a number, or a percentage of Discord's daily total; only a reshard's -spend-reserve spends them")
		natsListen = fs.String("nats-listen", "127.0.0.1:4222", "with -nats embedded: TCP `HOST:PORT` gateway nodes and workers connect to")
		dataDir    = fs.String("data-dir", "gatehouse-data", "with -nats embedded: JetStream store `directory`")
		logLevel   = fs.String("log-level", "info", "log level: debug, info, warn, error")
		natsAuth   = addNATSClientFlags(fs)
		replicas   = fs.Int("replicas", 0, "with -nats: replicas of the stream and buckets it creates or updates (3 on a 3-node cluster); 0 keeps what exists. Lowering them is refused")
		natsSrv    = addNATSServerFlags(fs)
	)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	log, err := newLogger("coordinator", *logLevel, stderr)
	if err != nil {
		return err
	}
	cfg := coord.Config{
		Tokens: coord.Tokens{
			Admin: os.Getenv("GATEHOUSE_ADMIN_TOKEN"), Node: os.Getenv("GATEHOUSE_NODE_TOKEN"),
			Worker: os.Getenv("GATEHOUSE_WORKER_TOKEN"), Status: os.Getenv("GATEHOUSE_STATUS_TOKEN"),
		},
		MaxConcurrency: *maxConc, IdentifyInterval: *interval, IdentifyMargin: *margin, SessionStarts: -1,
		BeatTimeout: *beat, HealthInterval: *health, QueueOpen: *queueOpen, ConnectsPerMinute: *connects, LeaseTTL: *leaseTTL, BucketAligned: *aligned, Logger: log,
		ReshardSettle: *settle, ReshardHandoverTimeout: *handover, AutoReshard: *autoResh,
	}
	if cfg.Tokens.Admin == "" {
		return usageError{"coordinator: set GATEHOUSE_ADMIN_TOKEN (and the node, worker and status tokens the deployment uses)"}
	}
	if *margin < 0 {
		cfg.IdentifyMargin = -1
	}
	if cfg.Reserve, cfg.ReservePercent, err = parseReserve(*reserve); err != nil {
		return usageError{"coordinator: -session-reserve: " + err.Error()}
	}
	n, err := parseShardCount(*shardCount)
	if err != nil {
		return usageError{"coordinator: -shard-count: " + err.Error()}
	}
	cfg.ShardCount = n
	bot := botToken(*token)
	if bot != "" {
		hc := &http.Client{Timeout: 30 * time.Second}
		fetch := func(ctx context.Context) (discord.GatewayBot, error) {
			return gateway.FetchGatewayBot(ctx, hc, *api, bot)
		}
		fctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		gb, err := fetch(fctx)
		cancel()
		if err != nil {
			return fmt.Errorf("coordinator: %w", err)
		}
		if cfg.ShardCount == 0 {
			cfg.ShardCount = gb.Shards
		}
		cfg.Recommended = gb.Shards
		if cfg.MaxConcurrency == 0 {
			cfg.MaxConcurrency = gb.SessionStartLimit.MaxConcurrency
		}
		cfg.SessionStarts, cfg.SessionStartTotal = gb.SessionStartLimit.Remaining, gb.SessionStartLimit.Total
		cfg.SessionReset = time.Now().Add(time.Duration(gb.SessionStartLimit.ResetAfter) * time.Millisecond)
		cfg.GatewayBot = fetch
	} else if cfg.ShardCount == 0 {
		return usageError{"coordinator: -shard-count auto needs the bot token; pass a number, or -token"}
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("coordinator: -listen: %w", err)
	}
	defer ln.Close() // for the returns before Serve owns it
	cfg.ReplicaID = *replicaID
	var kv *natsbroker.Broker // with -nats: the control plane, dashboard history, consumer lag
	if *natsURL != "" {
		adv, err := advertiseURL(*advertise, ln.Addr())
		if err != nil {
			return usageError{"coordinator: " + err.Error()}
		}
		// The coordinator owns the control plane's buckets: it creates the
		// stream and buckets nodes bind to, and sets the liveness TTL.
		bcfg := natsbroker.Config{Name: "gatehouse-coordinator", Manage: true, LiveTTL: *leaseTTL, Logger: log}
		natsAuth.apply(&bcfg)
		bcfg.Replicas = *replicas
		var creds natsbroker.Credentials
		if *natsURL == "embedded" {
			if err := os.MkdirAll(*dataDir, 0o755); err != nil {
				return fmt.Errorf("coordinator: -data-dir: %w", err)
			}
			bcfg.DataDir, bcfg.Listen = *dataDir, *natsListen
			if creds, err = natsSrv.embedded(&bcfg, *dataDir, "coordinator"); err != nil {
				return fmt.Errorf("coordinator: %w", err)
			}
		} else {
			bcfg.URL = *natsURL
		}
		b, err := natsbroker.Open(ctx, bcfg)
		if err != nil {
			return fmt.Errorf("coordinator: -nats: %w", err)
		}
		defer b.Close()
		cfg.Control, cfg.Advertise = controlOf(b, *leaseTTL), adv
		kv = b
		if *natsURL == "embedded" {
			fmt.Fprintf(stdout, "gatehouse coordinator: NATS at %s\n", b.ClientURL())
			printCredentials(stdout, "coordinator", creds, b.ClientURL())
		}
	} else {
		log.Warn("no -nats: a standalone coordinator; leases live in memory, and nodes stop their shards when it is gone for half the lease TTL")
	}
	c, err := coord.New(cfg)
	if err != nil {
		return usageError{"coordinator: " + err.Error()}
	}
	dcfg := dashboard.Config{Coordinator: c, Logger: log.With("part", "dashboard")}
	var lag func(context.Context) ([]broker.ConsumerLag, error)
	if kv != nil {
		dcfg.Consumers = kv.Consumers
		dcfg.LoadHistory, dcfg.SaveHistory = historyOf(kv, c)
		lag = kv.Consumers
	}
	dash, err := dashboard.New(dcfg)
	if err != nil {
		return err
	}
	var wg sync.WaitGroup
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	handler := withMetrics(dash.Handler(c.Handler()), metricsHandler(metrics.Coordinator(c, lag)), c)
	srv := apiServer(handler, runCtx, log)
	fmt.Fprintf(stdout, "gatehouse coordinator: API on http://%s (OpenAPI at /openapi.json, dashboard at /, metrics at /metrics), %d shards, max_concurrency %d, replica %s\n",
		ln.Addr(), cfg.ShardCount, max(cfg.MaxConcurrency, 1), c.Replica().ID)
	if f, ok := stdout.(interface{ Sync() error }); ok {
		_ = f.Sync()
	}
	wg.Go(func() { c.Run(runCtx) })
	wg.Go(func() { dash.Run(runCtx) })
	serveErr := make(chan error, 1)
	wg.Go(func() { serveErr <- srv.Serve(ln) })
	select {
	case <-ctx.Done():
	case err = <-serveErr:
	}
	cancel()
	sctx, scancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	_ = srv.Shutdown(sctx) // waiting identify requests end with their contexts
	scancel()
	wg.Wait()
	if err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("coordinator: %w", err)
	}
	return nil
}

// controlOf is the control plane a coordinator replica runs on, in b.
func controlOf(b *natsbroker.Broker, ttl time.Duration) *coord.Control {
	return &coord.Control{Ctl: b.Control(), Live: b.Live(), LiveTTL: ttl, Views: b, Legacy: b.LoadCoordinator}
}

// historyOf keeps the dashboard's history in the control bucket; only the
// leading replica writes it.
func historyOf(b *natsbroker.Broker, c *coord.Coordinator) (load func(context.Context) ([]byte, error), save func(context.Context, []byte) error) {
	load = func(ctx context.Context) ([]byte, error) { return b.LoadBlob(ctx, "dashboard-history") }
	save = func(ctx context.Context, data []byte) error {
		if !c.Leading() {
			return nil // a follower's history is its own, in memory
		}
		return b.SaveBlob(ctx, "dashboard-history", data)
	}
	return load, save
}

// advertiseURL is the URL the other replicas reach this one at: flag, or
// http:// and the listen address when it names a host.
func advertiseURL(flag string, addr net.Addr) (string, error) {
	if flag != "" {
		return strings.TrimRight(flag, "/"), nil
	}
	host, port, err := net.SplitHostPort(addr.String())
	if err != nil {
		return "", err
	}
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		return "", fmt.Errorf("-listen %s names no host the other replicas can reach: pass -advertise http://HOST:%s", addr, port)
	}
	return "http://" + net.JoinHostPort(host, port), nil
}

// parseReserve parses -session-reserve: "N" starts or "P%" of the daily
// total.
func parseReserve(s string) (starts int, percent float64, err error) {
	s = strings.TrimSpace(s)
	if p, ok := strings.CutSuffix(s, "%"); ok {
		percent, err = strconv.ParseFloat(p, 64)
		if err != nil || percent < 0 || percent > 100 {
			return 0, 0, fmt.Errorf("%q: want a number of starts or a percentage from 0%% to 100%%", s)
		}
		if percent == 0 {
			percent = -1 // none
		}
		return 0, percent, nil
	}
	starts, err = strconv.Atoi(s)
	if err != nil || starts < 0 {
		return 0, 0, fmt.Errorf("%q: want a number of starts or a percentage from 0%% to 100%%", s)
	}
	if starts == 0 {
		return 0, -1, nil
	}
	return starts, 0, nil
}
