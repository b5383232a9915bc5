package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"os"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/coord"
	"github.com/gatehouse-dev/gatehouse/internal/discord/sim"
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
		heartbeat  = fs.Duration("heartbeat-interval", 41250*time.Millisecond, "the simulator's gateway heartbeat interval (Discord's is 41.25s)")
		leaseTTL   = fs.Duration("lease-ttl", 15*time.Second, "shard lease TTL; the node reports its shards to the dashboard every third of it")
		logLevel   = fs.String("log-level", "warn", "log level: debug, info, warn, error")
	)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	log, err := newLogger("demo", *logLevel, stderr)
	if err != nil {
		return err
	}
	if *guilds < 1 || *maxConc < 1 || *rate < 0 || *interval <= 0 || *every <= 0 {
		return usageError{"demo: -guilds, -max-concurrency, -identify-interval and -report-every must be positive, -rate not negative"}
	}
	if *dataDir == "" {
		dir, err := os.MkdirTemp("", "gatehouse-demo-")
		if err != nil {
			return fmt.Errorf("demo: %w", err)
		}
		defer os.RemoveAll(dir)
		*dataDir = dir
	}

	// The simulated Discord.
	simSrv, err := sim.New(sim.Config{Guilds: *guilds, MaxConcurrency: *maxConc, EventRate: *rate, IdentifyInterval: *interval,
		HeartbeatInterval: *heartbeat, Logger: log.With("part", "sim")})
	if err != nil {
		return usageError{"demo: " + err.Error()}
	}
	simLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	simDone := make(chan struct{})
	go func() { defer close(simDone); simSrv.Serve(simLn) }()
	defer func() {
		sctx, scancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer scancel()
		simSrv.Shutdown(sctx)
		<-simDone
	}()
	api := "http://" + simLn.Addr().String() + "/api/v10"
	shards := (*guilds + 999) / 1000
	fmt.Fprintf(stdout, "gatehouse demo: simulated bot in %d guilds, %d shards, max_concurrency %d (Discord simulator at %s)\n",
		*guilds, shards, *maxConc, api)
	tokens := coord.Tokens{Admin: envOr("GATEHOUSE_ADMIN_TOKEN", randomToken()), Node: os.Getenv("GATEHOUSE_NODE_TOKEN"),
		Worker: os.Getenv("GATEHOUSE_WORKER_TOKEN"), Status: envOr("GATEHOUSE_STATUS_TOKEN", randomToken())}
	fmt.Fprintf(stdout, "gatehouse demo: status token %s (read-only API access)\n", tokens.Status)
	if os.Getenv("GATEHOUSE_ADMIN_TOKEN") == "" {
		// Made up for this run, on loopback: say it, so the admin view opens.
		fmt.Fprintf(stdout, "gatehouse demo: admin token %s (the dashboard's /admin view and every API call)\n", tokens.Admin)
	}
	return runStack(ctx, stackConfig{name: "demo", api: api, botToken: "sim-token", tokens: tokens,
		identifyInterval: *interval, listen: *listen, natsListen: *natsListen, dataDir: *dataDir, leaseTTL: *leaseTTL,
		consumer: true, every: *every, log: log}, stdout)
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
