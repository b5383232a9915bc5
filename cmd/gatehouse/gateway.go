package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/broker"
	"github.com/gatehouse-dev/gatehouse/internal/broker/natsbroker"
	"github.com/gatehouse-dev/gatehouse/internal/coord/coordapi"
	"github.com/gatehouse-dev/gatehouse/internal/coord/coordclient"
	"github.com/gatehouse-dev/gatehouse/internal/discord/codec"
	"github.com/gatehouse-dev/gatehouse/internal/gateway"
	"github.com/gatehouse-dev/gatehouse/internal/metrics"
)

const gatewaySummary = `Run a gateway node: hold the bot's shard sessions to Discord (heartbeats, zombie
detection, RESUME, compression) and publish every dispatch to NATS JetStream, where bot
workers consume it with acks. Session state is kept in JetStream KV, so a restarted node
RESUMEs instead of identifying. The bot token comes from -token or $GATEHOUSE_TOKEN.`

func runGateway(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("gateway", gatewaySummary, stderr)
	var (
		api         = fs.String("api", gateway.DefaultAPI, "Discord REST base `URL` (a gatehouse sim: http://127.0.0.1:8787/api/v10)")
		token       = fs.String("token", "", "bot `token` without \"Bot \" (default $GATEHOUSE_TOKEN)")
		shards      = fs.String("shards", "all", "shards this node runs: all, a range A-B, a list 0,2,5-7, or assigned (the -coordinator leases them to this node and moves them between nodes)")
		capacity    = fs.Int("capacity", 0, "with -shards assigned: the most shards this node runs (0 = no limit)")
		shardCount  = fs.String("shard-count", "auto", "total shard count: a number, or auto (Discord's recommendation from /gateway/bot)")
		natsURL     = fs.String("nats", "embedded", "NATS: embedded (run nats-server with JetStream in this process) or a nats:// `URL` of an external server or cluster")
		natsListen  = fs.String("nats-listen", "127.0.0.1:4222", "embedded NATS: TCP `HOST:PORT` other processes (bot workers, gatehouse tail) connect to; empty = in-process only")
		dataDir     = fs.String("data-dir", "gatehouse-data", "embedded NATS: JetStream store `directory`")
		compress    = fs.String("compress", "zlib-stream", "transport compression: zlib-stream, zstd-stream or none")
		intents     = fs.String("intents", "", "intents, comma-separated names (GUILDS,GUILD_MESSAGES,…) or a number (default: every non-privileged intent)")
		prefix      = fs.String("prefix", broker.DefaultPrefix, "subject prefix: events on PREFIX.ev.<shard>.<partition>.<type>, commands on PREFIX.cmd.<shard>")
		partitions  = fs.Int("partitions", 1, "guild partitions in event subjects, so several workers can split a shard's guilds with per-guild order kept")
		linger      = fs.Duration("batch-linger", 5*time.Millisecond, "longest a batch waits for more events of its shard and type before it is published; an event of a trickling shard does not wait (negative: publish every event at once)")
		batchComp   = fs.String("batch-compress", "s2", "compress batch bodies before publishing: s2 or none (consumers using the client package read both)")
		batchBytes  = fs.Int("batch-bytes", 64<<10, "publish a batch when it reaches this many bytes")
		idleAfter   = fs.Duration("idle-after", 2*time.Second, "a shard quiet this long packs its zlib-stream window (32 KiB to about 8) and returns its read buffers (negative: never)")
		maxAge      = fs.Duration("retention", 24*time.Hour, "embedded/created stream: how long events are kept")
		create      = fs.Bool("create-streams", false, "with -nats URL: create the event stream and buckets when missing (they are normally created by gatehouse broker or the coordinator, so that nodes need no permission to change streams)")
		interval    = fs.Duration("identify-interval", 5*time.Second, "identify window per bucket (Discord: 5s; shorter only against a simulator configured the same)")
		margin      = fs.Duration("identify-margin", 25*time.Millisecond, "added to the 5 s identify window of each bucket, against clock and network jitter")
		nodeID      = fs.String("node-id", "", "this node's name in saved state and logs (default: host name)")
		statusAddr  = fs.String("status-addr", "", "serve GET /status (JSON shard states), /metrics (Prometheus), /healthz and /debug/pprof/ on `HOST:PORT` (empty = off; keep it on loopback)")
		coordURL    = fs.String("coordinator", "", "coordinator base `URL` (http://HOST:PORT): every IDENTIFY waits for its global queue instead of this node's own (token: -coordinator-token or $GATEHOUSE_NODE_TOKEN)")
		coordTok    = fs.String("coordinator-token", "", "the coordinator's node `token` (default $GATEHOUSE_NODE_TOKEN)")
		logLevel    = fs.String("log-level", "info", "log level: debug, info, warn, error")
		shutdown    = fs.Duration("shutdown-timeout", 30*time.Second, "graceful shutdown budget: close with a resumable code, publish what was read, save state")
		exitDrained = fs.Bool("exit-when-drained", true, "with -shards assigned: exit (status 0) once an operator drained this node and every shard was handed off; the drain mark ends with the process, so a node started again under the same -node-id takes shards")
		silence     = fs.Duration("silence-after", 30*time.Second, "cycle a shard by RESUME when an event type that flowed on it is absent this long and for as many events as -silence-events at its usual rate (negative: off)")
		silenceN    = fs.Int("silence-events", 100, "events of a type a silence must have missed, at the shard's own rate of that type, to count")
		natsAuth    = addNATSClientFlags(fs)
		natsSrv     = addNATSServerFlags(fs)
	)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	log, err := newLogger("gateway", *logLevel, stderr)
	if err != nil {
		return err
	}

	cfg := gateway.Config{
		API: *api, Token: *token, Partitions: *partitions, BatchLinger: *linger, MaxBatchBytes: *batchBytes,
		IdentifyMargin: *margin, IdentifyInterval: *interval, BatchCompression: gateway.BatchCompression(*batchComp), NodeID: *nodeID, ShutdownTimeout: *shutdown, Logger: log,
		SilenceAfter: *silence, SilenceEvents: *silenceN,
		Subjects: broker.Subjects{Prefix: *prefix}, IdleAfter: *idleAfter,
	}
	if cfg.Token = botToken(cfg.Token); cfg.Token == "" {
		return usageError{"gateway: no token: pass -token or set GATEHOUSE_TOKEN"}
	}
	if cfg.ShardCount, err = parseShardCount(*shardCount); err != nil {
		return usageError{"gateway: -shard-count: " + err.Error()}
	}
	assigned := strings.TrimSpace(*shards) == "assigned"
	if assigned {
		if *coordURL == "" {
			return usageError{"gateway: -shards assigned needs -coordinator"}
		}
		cfg.Shards = []int{} // none at start: the coordinator assigns them
	} else if cfg.Shards, err = parseShardList(*shards); err != nil {
		return usageError{"gateway: -shards: " + err.Error()}
	}
	if *capacity < 0 {
		return usageError{"gateway: -capacity must not be negative"}
	}
	if cfg.Shards != nil && len(cfg.Shards) > 0 && cfg.ShardCount == 0 {
		return usageError{"gateway: -shards lists shards, so -shard-count must be a number: every node of a fleet must agree on it"}
	}
	c, err := codec.ParseCompression(*compress)
	if err != nil {
		return usageError{"gateway: -compress: " + err.Error()}
	}
	cfg.Compression, cfg.NoCompression = c, c == codec.None
	if cfg.Intents, err = parseIntentsFlag("gateway", *intents); err != nil {
		return err
	}
	if *partitions < 1 {
		return usageError{"gateway: -partitions must be at least 1"}
	}

	bcfg := natsbroker.Config{Prefix: *prefix, MaxAge: *maxAge, Name: "gatehouse-gateway", Logger: log}
	if *natsURL != "embedded" {
		bcfg.URL, bcfg.Manage = *natsURL, *create
	} else {
		bcfg.DataDir = *dataDir
		if err := os.MkdirAll(*dataDir, 0o755); err != nil {
			return fmt.Errorf("gateway: -data-dir: %w", err)
		}
		if abs, err := filepath.Abs(*dataDir); err == nil {
			bcfg.DataDir = abs
		}
		if *natsListen == "" {
			bcfg.NoListen = true
		} else {
			bcfg.Listen = *natsListen
		}
	}
	natsAuth.apply(&bcfg)
	var creds natsbroker.Credentials
	if bcfg.URL == "" {
		if creds, err = natsSrv.embedded(&bcfg, bcfg.DataDir, "stack"); err != nil {
			return fmt.Errorf("gateway: %w", err)
		}
	}
	b, err := natsbroker.Open(ctx, bcfg)
	if err != nil {
		return fmt.Errorf("gateway: broker: %w", err)
	}
	defer func() {
		if err := b.Close(); err != nil {
			log.Warn("closing the broker", "err", err)
		}
	}()
	if u := b.ClientURL(); u != "" {
		fmt.Fprintf(stdout, "gatehouse gateway: NATS at %s, events on %s, stream %s\n", u, b.Subjects().Events(), b.StreamName())
		if bcfg.URL == "" {
			printCredentials(stdout, "gateway", creds, u)
		}
	}
	cfg.Publisher, cfg.Store = b, b
	var cc *coordclient.Client
	if *coordURL != "" {
		tok := *coordTok
		if tok == "" {
			tok = os.Getenv("GATEHOUSE_NODE_TOKEN")
		}
		cc, err = coordclient.New(coordclient.Config{URL: *coordURL, Token: tok, Logger: log})
		if err != nil {
			return usageError{"gateway: -coordinator: " + err.Error()}
		}
		defer cc.Close()
		cfg.Gate = cc
	}
	var (
		agent *coordclient.Agent
		node  *gateway.Node // set below, before the agent runs
	)
	if assigned {
		if cfg.NodeID == "" {
			cfg.NodeID, _ = os.Hostname()
		}
		report := func() []coordapi.ShardReport { return shardReports(node.Status()) }
		// The node's liveness record, in the control plane's live bucket,
		// holds its leases through any coordinator outage.
		acfg := coordclient.AgentConfig{NodeID: cfg.NodeID, Capacity: *capacity, Report: report, ExitWhenDrained: *exitDrained,
			Liveness: b.Live(), Budget: func() *coordapi.SessionBudget { return sessionBudget(node) }}
		if agent, err = cc.NewAgent(acfg); err != nil {
			return usageError{"gateway: -node-id: " + err.Error()}
		}
		cfg.Leases = agent // publish and save only under a live lease
	}
	node, err = gateway.New(cfg)
	if err != nil {
		return usageError{err.Error()}
	}

	var wg sync.WaitGroup
	defer wg.Wait()
	nodeCtx, drainedExit := context.WithCancel(ctx)
	defer drainedExit()
	cmdCtx, cancelCmd := context.WithCancel(ctx)
	defer cancelCmd()
	wg.Go(func() {
		select {
		case <-node.Started():
		case <-cmdCtx.Done():
			return // Run failed before starting any shard
		}
		err := b.ServeCommands(cmdCtx, node.Owns, func(shard int, payload []byte) error {
			ctx, cancel := context.WithTimeout(cmdCtx, 30*time.Second)
			defer cancel()
			return node.Command(ctx, shard, payload)
		})
		if err != nil && cmdCtx.Err() == nil {
			log.Error("command subscription ended", "err", err)
		}
	})
	wg.Go(func() { trimMemory(cmdCtx, memTrimEvery) })

	if assigned {
		id := node.ID()
		agentDone := make(chan struct{})
		wg.Go(func() {
			defer close(agentDone)
			select {
			case <-node.Started():
			case <-cmdCtx.Done():
				return
			}
			switch err := agent.Run(cmdCtx, reshardingNode{node}); {
			case errors.Is(err, coordclient.ErrDrained):
				fmt.Fprintf(stdout, "gatehouse gateway: drained, every shard handed off; exiting\n")
				drainedExit()
			case err != nil:
				log.Error("coordinator agent stopped; this node runs no new shards", "err", err)
			}
		})
		defer func() {
			// After the node saved its sessions and the agent stopped
			// heartbeating: let the coordinator move the shards now rather
			// than after the lease TTL.
			<-agentDone
			lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			if err := cc.Leave(lctx, id); err != nil {
				log.Warn("telling the coordinator this node left", "err", err)
			}
		}()
	}
	if *statusAddr != "" {
		srv, err := serveStatus(&wg, *statusAddr, node, log)
		if err != nil {
			return fmt.Errorf("gateway: -status-addr: %w", err)
		}
		fmt.Fprintf(stdout, "gatehouse gateway: status on http://%s/status\n", srv.Addr)
		if f, ok := stdout.(interface{ Sync() error }); ok {
			_ = f.Sync()
		}
		defer func() {
			sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			_ = srv.Shutdown(sctx)
		}()
	}
	err = node.Run(nodeCtx) // its errors already say "gateway: …"
	cancelCmd()
	return err
}

// reshardingNode lets a coordinator's agent run a node through reshards.
type reshardingNode struct{ *gateway.Node }

// SetMode implements coordclient.Resharder.
func (n reshardingNode) SetMode(numShards int, mode string, newCount int) {
	m, err := gateway.ParsePublishMode(mode)
	if err != nil {
		m = gateway.ModePublish // an order this build does not know: publish, never drop
	}
	n.Node.SetMode(numShards, m, newCount)
}

// serveStatus serves the node's shard states as JSON.
func serveStatus(wg *sync.WaitGroup, addr string, node *gateway.Node, log *slog.Logger) (*http.Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		var ms runtime.MemStats
		if r.URL.Query().Has("memstats") {
			runtime.ReadMemStats(&ms) // stops the world briefly: only on request
		}
		_ = json.NewEncoder(w).Encode(struct {
			Stats      gateway.Stats         `json:"stats"`
			Mallocs    uint64                `json:"mallocs,omitempty"`
			HeapAlloc  uint64                `json:"heap_alloc,omitempty"`
			HeapInuse  uint64                `json:"heap_inuse,omitempty"`
			StackInuse uint64                `json:"stack_inuse,omitempty"`
			Sys        uint64                `json:"sys,omitempty"`
			Released   uint64                `json:"heap_released,omitempty"`
			Goroutines int                   `json:"goroutines"`
			Shards     []gateway.ShardStatus `json:"shards"`
		}{node.Stats(), ms.Mallocs, ms.HeapAlloc, ms.HeapInuse, ms.StackInuse, ms.Sys, ms.HeapReleased, runtime.NumGoroutine(), node.Status()})
	})
	mux.Handle("GET /metrics", metricsHandler(metrics.Node(node)))
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		for _, s := range node.Status() {
			if s.Error != "" {
				http.Error(w, fmt.Sprintf("shard %d stopped: %s", s.Shard, s.Error), http.StatusServiceUnavailable)
				return
			}
		}
		fmt.Fprintln(w, "ok")
	})
	srv := &http.Server{Addr: ln.Addr().String(), Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	wg.Go(func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("status server", "err", err)
		}
	})
	return srv, nil
}

// parseShardCount parses -shard-count: auto (0) or a positive number.
func parseShardCount(s string) (int, error) {
	if s == "auto" || s == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		return 0, fmt.Errorf("%q is neither auto nor a positive number", s)
	}
	return n, nil
}

// parseShardList parses -shards: all (nil), A-B, or a comma-separated list
// of IDs and ranges.
func parseShardList(s string) ([]int, error) {
	s = strings.TrimSpace(s)
	if s == "all" || s == "" {
		return nil, nil
	}
	var out []int
	for part := range strings.SplitSeq(s, ",") {
		part = strings.TrimSpace(part)
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.Atoi(lo)
		if err != nil || a < 0 {
			return nil, fmt.Errorf("%q: want all, A-B or a list like 0,2,5-7", part)
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(hi); err != nil || b < a {
				return nil, fmt.Errorf("%q: a range is A-B with A <= B", part)
			}
		}
		if b-a > 1<<20 {
			return nil, fmt.Errorf("%q: range too large", part)
		}
		for i := a; i <= b; i++ {
			out = append(out, i)
		}
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// shardReports turns a node's shard status into the agent's reports.
func shardReports(sts []gateway.ShardStatus) []coordapi.ShardReport {
	out := make([]coordapi.ShardReport, len(sts))
	for i, st := range sts {
		r := coordapi.ShardReport{
			Shard: st.Shard, State: st.Condition(), LatencyMS: float64(st.Latency) / float64(time.Millisecond),
			ShardCounters: coordapi.ShardCounters{Events: st.Events, Identifies: st.Counters.Identifies, Resumes: st.Counters.Resumes,
				Reconnects: st.Counters.Reconnects, Zombies: st.Counters.Zombies, ReadyAt: st.ReadyAt},
			Error: st.Error, NumShards: st.NumShards, Mode: st.Mode, GuildsPending: st.GuildsPending, HandedOver: st.HandedOver,
		}
		if st.GuildsKnown {
			r.Guilds = &st.Guilds
		}
		out[i] = r
	}
	return out
}

// sessionBudget is the session-start budget the node read from Discord at
// its start, for a coordinator without a bot token; nil before it did.
func sessionBudget(n *gateway.Node) *coordapi.SessionBudget {
	ssl, at, ok := n.SessionStartLimit()
	if !ok {
		return nil
	}
	return &coordapi.SessionBudget{Total: ssl.Total, Remaining: ssl.Remaining, ResetAfterMS: int64(ssl.ResetAfter),
		AgeMS: time.Since(at).Milliseconds()}
}
