package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gatehouse-dev/gatehouse/client"
	"github.com/gatehouse-dev/gatehouse/internal/broker/natsbroker"
	"github.com/gatehouse-dev/gatehouse/internal/coord"
	"github.com/gatehouse-dev/gatehouse/internal/discord"
	"github.com/gatehouse-dev/gatehouse/internal/discord/sim"
	"github.com/gatehouse-dev/gatehouse/internal/gateway"
)

const demoSummary = `Run the whole stack in one process against the built-in Discord simulator, no token
needed: a simulated bot in 40,000 guilds (40 shards, max_concurrency 16) with events
flowing, embedded NATS JetStream, the coordinator's API, a gateway node that identifies
through the coordinator's queue, and a sample consumer. It prints where everything
listens and a live line of events per second reaching the consumer. Stop it with Ctrl-C.`

func runDemo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("demo", demoSummary, stderr)
	var (
		guilds     = fs.Int("guilds", 40000, "guilds of the simulated bot (shards: one per 1,000 guilds, as Discord recommends)")
		maxConc    = fs.Int("max-concurrency", 16, "the simulated bot's max_concurrency")
		rate       = fs.Float64("rate", 25, "events per second per shard the simulator generates")
		interval   = fs.Duration("identify-interval", 5*time.Second, "identify window per bucket, in the simulator and the coordinator alike")
		listen     = fs.String("listen", "127.0.0.1:8080", "coordinator API `HOST:PORT` (port 0 picks a free port)")
		natsListen = fs.String("nats-listen", "127.0.0.1:4222", "embedded NATS `HOST:PORT` for gatehouse tail and bot workers (port 0 picks a free port)")
		dataDir    = fs.String("data-dir", "", "JetStream store `directory` (default: a temporary directory removed at exit)")
		every      = fs.Duration("report-every", 2*time.Second, "how often to print the live line")
		logLevel   = fs.String("log-level", "warn", "log level: debug, info, warn, error")
	)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return usageError{fmt.Sprintf("demo: -log-level: %v", err)}
	}
	if *guilds < 1 || *maxConc < 1 || *rate < 0 || *interval <= 0 || *every <= 0 {
		return usageError{"demo: -guilds, -max-concurrency, -identify-interval and -report-every must be positive, -rate not negative"}
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	if *dataDir == "" {
		dir, err := os.MkdirTemp("", "gatehouse-demo-")
		if err != nil {
			return fmt.Errorf("demo: %w", err)
		}
		defer os.RemoveAll(dir)
		*dataDir = dir
	}

	var wg sync.WaitGroup
	defer wg.Wait()
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()

	// The simulated Discord.
	simSrv, err := sim.New(sim.Config{Guilds: *guilds, MaxConcurrency: *maxConc, EventRate: *rate, IdentifyInterval: *interval,
		Logger: log.With("part", "sim")})
	if err != nil {
		return usageError{"demo: " + err.Error()}
	}
	simLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	wg.Go(func() { simSrv.Serve(simLn) })
	defer func() {
		sctx, scancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer scancel()
		simSrv.Shutdown(sctx)
	}()
	api := "http://" + simLn.Addr().String() + "/api/v10"
	const botToken = "sim-token"
	hc := &http.Client{Timeout: 30 * time.Second}
	fetch := func(ctx context.Context) (discord.GatewayBot, error) {
		return gateway.FetchGatewayBot(ctx, hc, api, botToken)
	}
	gb, err := fetch(ctx)
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}

	// The coordinator.
	tokens := coord.Tokens{Admin: envOr("GATEHOUSE_ADMIN_TOKEN", randomToken()), Node: os.Getenv("GATEHOUSE_NODE_TOKEN"),
		Worker: os.Getenv("GATEHOUSE_WORKER_TOKEN"), Status: envOr("GATEHOUSE_STATUS_TOKEN", randomToken())}
	ssl := gb.SessionStartLimit
	co, err := coord.New(coord.Config{Tokens: tokens, ShardCount: gb.Shards, MaxConcurrency: ssl.MaxConcurrency,
		IdentifyInterval: *interval, SessionStarts: ssl.Remaining, SessionReset: time.Now().Add(time.Duration(ssl.ResetAfter) * time.Millisecond),
		GatewayBot: fetch, Logger: log.With("part", "coordinator")})
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	coLn, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("demo: -listen: %w", err)
	}
	httpSrv := &http.Server{Handler: co.Handler(), ReadHeaderTimeout: 10 * time.Second,
		BaseContext: func(net.Listener) context.Context { return runCtx }, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelDebug)}
	wg.Go(func() { co.Run(runCtx) })
	wg.Go(func() {
		if err := httpSrv.Serve(coLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("coordinator API", "err", err)
		}
	})
	defer func() {
		sctx, scancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer scancel()
		httpSrv.Shutdown(sctx)
	}()

	// Embedded JetStream.
	b, err := natsbroker.Open(ctx, natsbroker.Config{DataDir: *dataDir, Listen: *natsListen, Name: "gatehouse-demo", Logger: log.With("part", "nats")})
	if err != nil {
		return fmt.Errorf("demo: broker (is -nats-listen %s free?): %w", *natsListen, err)
	}
	defer b.Close()

	// The gateway node, identifying through the coordinator's queue.
	node, err := gateway.New(gateway.Config{API: api, Token: botToken, ShardCount: gb.Shards, Publisher: b, Store: b,
		Gate: co.Gate(), IdentifyInterval: *interval, Logger: log.With("part", "gateway")})
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}

	fmt.Fprintf(stdout, "gatehouse demo: simulated bot in %d guilds, %d shards, max_concurrency %d (Discord simulator at %s)\n",
		*guilds, gb.Shards, ssl.MaxConcurrency, api)
	fmt.Fprintf(stdout, "gatehouse demo: coordinator API at http://%s (OpenAPI at /openapi.json; status token %s)\n", coLn.Addr(), tokens.Status)
	fmt.Fprintf(stdout, "gatehouse demo: NATS at %s; watch the events with: gatehouse tail -nats %s -count\n", b.ClientURL(), b.ClientURL())
	rounds := (gb.Shards + ssl.MaxConcurrency - 1) / ssl.MaxConcurrency
	plural := "s"
	if rounds == 1 {
		plural = ""
	}
	fmt.Fprintf(stdout, "gatehouse demo: starting %d shards in %d identify round%s, %v apart\n", gb.Shards, rounds, plural, *interval)

	// The sample consumer.
	var consumed atomic.Int64
	cl, err := client.Connect(ctx, client.Config{URL: b.ClientURL(), Consumer: "gatehouse-demo", Logger: log.With("part", "consumer")})
	if err != nil {
		return fmt.Errorf("demo: consumer: %w", err)
	}
	defer cl.Close()
	nodeDone := make(chan error, 1)
	wg.Go(func() { nodeDone <- node.Run(runCtx) })
	wg.Go(func() {
		err := cl.Consume(runCtx, func(context.Context, *client.Event) error { consumed.Add(1); return nil })
		if err != nil && runCtx.Err() == nil {
			log.Error("sample consumer stopped", "err", err)
		}
	})

	start := time.Now()
	tick := time.NewTicker(*every)
	defer tick.Stop()
	last, lastAt := int64(0), start
	for {
		select {
		case <-ctx.Done():
			cancel()
			return <-nodeDone
		case err := <-nodeDone:
			cancel()
			return err
		case now := <-tick.C:
			n := consumed.Load()
			ready := 0
			for _, s := range node.Status() {
				if s.State == "ready" {
					ready++
				}
			}
			q := co.Status().Identify
			waiting := 0
			for _, bk := range q.Buckets {
				waiting += bk.Waiting
			}
			fmt.Fprintf(stdout, "%5.0fs  shards ready %d/%d  identify queue %d waiting, %d session starts left  %6.0f events/s reach the consumer (%d in all)\n",
				now.Sub(start).Seconds(), ready, gb.Shards, waiting, q.Remaining, float64(n-last)/now.Sub(lastAt).Seconds(), n)
			last, lastAt = n, now
		}
	}
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// randomToken returns 128 random bits in hex.
func randomToken() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
