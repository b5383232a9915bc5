package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gatehouse-dev/gatehouse/client"
	"github.com/gatehouse-dev/gatehouse/internal/broker/natsbroker"
	"github.com/gatehouse-dev/gatehouse/internal/coord"
	"github.com/gatehouse-dev/gatehouse/internal/coord/coordapi"
	"github.com/gatehouse-dev/gatehouse/internal/coord/coordclient"
	"github.com/gatehouse-dev/gatehouse/internal/dashboard"
	"github.com/gatehouse-dev/gatehouse/internal/discord"
	"github.com/gatehouse-dev/gatehouse/internal/discord/codec"
	"github.com/gatehouse-dev/gatehouse/internal/gateway"
	"github.com/gatehouse-dev/gatehouse/internal/metrics"
)

// stackConfig is one process running the whole stack: embedded NATS, the
// coordinator's API and a gateway node that runs every shard and
// identifies through the coordinator's queue.
type stackConfig struct {
	name             string // "demo" or "serve", in messages
	api, botToken    string
	shardCount       int // 0: Discord's recommendation
	tokens           coord.Tokens
	identifyInterval time.Duration
	compression      codec.Compression // zero: zlib-stream
	noCompression    bool
	intents          discord.Intents
	listen           string        // coordinator API
	leaseTTL         time.Duration // 0: the coordinator's default
	natsListen       string
	dataDir          string
	// users, tlsCert, tlsKey: the embedded NATS's access (see
	// natsServerFlags); empty users makes credentials in the data dir.
	users, tlsCert, tlsKey string
	consumer               bool          // run a sample consumer and count what reaches it
	every                  time.Duration // live line period; 0: none
	log                    *slog.Logger
}

// runStack runs the stack until ctx ends.
func runStack(ctx context.Context, sc stackConfig, stdout io.Writer) error {
	hc := &http.Client{Timeout: 30 * time.Second}
	fetch := func(ctx context.Context) (discord.GatewayBot, error) {
		return gateway.FetchGatewayBot(ctx, hc, sc.api, sc.botToken)
	}
	gb, err := fetch(ctx)
	if err != nil {
		return fmt.Errorf("%s: %w", sc.name, err)
	}
	count := sc.shardCount
	if count == 0 {
		count = gb.Shards
	}
	ssl := gb.SessionStartLimit
	mc := max(ssl.MaxConcurrency, 1)

	var wg sync.WaitGroup
	defer wg.Wait()
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()

	bcfg := natsbroker.Config{DataDir: sc.dataDir, Listen: sc.natsListen, LiveTTL: sc.leaseTTL, Name: "gatehouse-" + sc.name, Logger: sc.log.With("part", "nats")}
	creds, err := embeddedAuth(&bcfg, sc.dataDir, "stack", sc.users, sc.tlsCert, sc.tlsKey)
	if err != nil {
		return fmt.Errorf("%s: %w", sc.name, err)
	}
	b, err := natsbroker.Open(ctx, bcfg)
	if err != nil {
		return fmt.Errorf("%s: broker (is -nats-listen %s free?): %w", sc.name, sc.natsListen, err)
	}
	defer b.Close()

	coLn, err := net.Listen("tcp", sc.listen)
	if err != nil {
		return fmt.Errorf("%s: -listen: %w", sc.name, err)
	}
	defer coLn.Close() // for the returns before Serve owns it
	ttl := sc.leaseTTL
	if ttl <= 0 {
		ttl = natsbroker.DefaultLiveTTL
	}
	// The coordinator is a replica of a control plane of one, on the
	// embedded NATS: its leases live in KV, so the node keeps its shards
	// whatever happens to the coordinator.
	co, err := coord.New(coord.Config{Tokens: sc.tokens, ShardCount: count, MaxConcurrency: mc, Recommended: gb.Shards,
		IdentifyInterval: sc.identifyInterval, SessionStarts: ssl.Remaining, SessionStartTotal: ssl.Total,
		SessionReset: time.Now().Add(time.Duration(ssl.ResetAfter) * time.Millisecond),
		GatewayBot:   fetch, LeaseTTL: ttl, Control: controlOf(b, ttl), ReplicaID: sc.name, Advertise: "http://" + coLn.Addr().String(),
		Logger: sc.log.With("part", "coordinator")})
	if err != nil {
		return usageError{fmt.Sprintf("%s: %v", sc.name, err)}
	}
	// Everything below stops before the broker closes: the dashboard saves
	// its history and the coordinator its state through it.
	var bg sync.WaitGroup
	defer func() { cancel(); bg.Wait() }()
	load, save := historyOf(b, co)
	dash, err := dashboard.New(dashboard.Config{Coordinator: co, Consumers: b.Consumers, LoadHistory: load, SaveHistory: save,
		Logger: sc.log.With("part", "dashboard")})
	if err != nil {
		return err
	}
	// The node runs the shards the coordinator leases it, over loopback,
	// like a node of a multi-process deployment: its reports fill the
	// dashboard and its publishing is fenced by the leases.
	cc, err := coordclient.New(coordclient.Config{URL: "http://" + coLn.Addr().String(), Token: sc.tokens.Admin, Logger: sc.log.With("part", "agent")})
	if err != nil {
		return err
	}
	defer cc.Close()
	var node *gateway.Node // the agent's reports read it once it runs
	agent, err := cc.NewAgent(coordclient.AgentConfig{NodeID: sc.name, Liveness: b.Live(),
		Report: func() []coordapi.ShardReport { return shardReports(node.Status()) }})
	if err != nil {
		return err
	}
	node, err = gateway.New(gateway.Config{API: sc.api, Token: sc.botToken, ShardCount: count, Shards: []int{}, Publisher: b, Store: b,
		Gate: co, Leases: agent, IdentifyInterval: sc.identifyInterval, Compression: sc.compression, NoCompression: sc.noCompression, Intents: sc.intents,
		NodeID: sc.name, Logger: sc.log.With("part", "gateway")})
	if err != nil {
		return usageError{fmt.Sprintf("%s: %v", sc.name, err)}
	}
	mh := metricsHandler(metrics.Coordinator(co, b.Consumers), metrics.Node(node))
	httpSrv := apiServer(withMetrics(dash.Handler(co.Handler()), mh, co), runCtx, sc.log)
	bg.Go(func() { co.Run(runCtx) })
	bg.Go(func() { dash.Run(runCtx) })
	bg.Go(func() {
		if err := httpSrv.Serve(coLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
			sc.log.Error("coordinator API", "err", err)
		}
	})
	defer func() {
		sctx, scancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer scancel()
		httpSrv.Shutdown(sctx)
	}()

	fmt.Fprintf(stdout, "gatehouse %s: dashboard at http://%s/ (admin view at /admin), API described at /openapi.json\n", sc.name, coLn.Addr())
	fmt.Fprintf(stdout, "gatehouse %s: NATS at %s; watch the events with: gatehouse tail -nats %s -nats-nkey %s -count\n", sc.name, b.ClientURL(), b.ClientURL(), creds.Seed("tail"))
	printCredentials(stdout, sc.name, creds, b.ClientURL())
	rounds := (count + mc - 1) / mc
	plural := "s"
	if rounds == 1 {
		plural = ""
	}
	fmt.Fprintf(stdout, "gatehouse %s: starting %d shards in %d identify round%s, %v apart\n", sc.name, count, rounds, plural, sc.identifyInterval)

	var consumed atomic.Int64
	if sc.consumer {
		cl, err := client.Connect(ctx, client.Config{URL: b.ClientURL(), NKeyFile: creds.Seed("worker"), CAFile: sc.tlsCA(), Consumer: "gatehouse-" + sc.name, Logger: sc.log.With("part", "consumer")})
		if err != nil {
			return fmt.Errorf("%s: consumer: %w", sc.name, err)
		}
		defer cl.Close()
		wg.Go(func() {
			err := cl.Consume(runCtx, func(context.Context, *client.Event) error { consumed.Add(1); return nil })
			if err != nil && runCtx.Err() == nil {
				sc.log.Error("sample consumer stopped", "err", err)
			}
		})
	}
	// The agent outlives the node by its shutdown: the node saves its
	// sessions under the leases the agent's liveness record holds.
	agentCtx, stopAgent := context.WithCancel(context.WithoutCancel(ctx))
	defer stopAgent()
	nodeDone := make(chan error, 1)
	wg.Go(func() { nodeDone <- node.Run(runCtx); stopAgent() })
	bg.Go(func() {
		select {
		case <-node.Started():
		case <-agentCtx.Done():
			return
		}
		if err := agent.Run(agentCtx, reshardingNode{node}); err != nil {
			sc.log.Error("coordinator agent stopped; the node runs no new shards", "err", err)
		}
	})

	var tick <-chan time.Time
	if sc.every > 0 {
		t := time.NewTicker(sc.every)
		defer t.Stop()
		tick = t.C
	}
	start := time.Now()
	last, lastAt := int64(0), start
	for {
		select {
		case <-ctx.Done():
			cancel()
			return <-nodeDone
		case err := <-nodeDone:
			cancel()
			return err
		case now := <-tick:
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
			line := fmt.Sprintf("%5.0fs  shards ready %d/%d  identify queue %d waiting, %d session starts left",
				now.Sub(start).Seconds(), ready, count, waiting, q.Remaining)
			if sc.consumer {
				n := consumed.Load()
				line += fmt.Sprintf("  %6.0f events/s reach the consumer (%d in all)", float64(n-last)/now.Sub(lastAt).Seconds(), n)
				last, lastAt = n, now
			} else {
				line += fmt.Sprintf("  %d events published", node.Stats().Published)
			}
			fmt.Fprintln(stdout, line)
		}
	}
}

// tlsCA is what the stack's own worker trusts: the server's certificate,
// when it speaks TLS (a self-signed one is its own authority).
func (sc stackConfig) tlsCA() string { return sc.tlsCert }
