package loadtest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/gatehouse-dev/gatehouse/internal/broker"
	"github.com/gatehouse-dev/gatehouse/internal/discord/codec"
	"github.com/gatehouse-dev/gatehouse/internal/gateway"
)

// GatewayIngestConfig configures RunGatewayIngest. Zero values mean the
// documented defaults; the workload matches RunJSIngest's.
type GatewayIngestConfig struct {
	Exe    string // the gatehouse binary: simulator, gateway node, broker; required
	Shards int    // default 16
	// Rate is the events/s per shard the simulator offers; default
	// DefaultIngestRate, as for RunJSIngest.
	Rate        float64
	Compression codec.Compression
	// SeparateBroker runs NATS JetStream in its own process (gatehouse
	// broker) instead of embedded in the gateway node, so that the broker's
	// CPU is measured apart from the gateway's.
	SeparateBroker bool
	// BatchLinger is passed to the node's -batch-linger; 0 keeps its default.
	BatchLinger time.Duration
	// BatchCompress is passed to the node's -batch-compress ("s2" or
	// "none"); empty keeps its default.
	BatchCompress string
	Warmup        time.Duration // after every shard is READY; default 3s
	Measure       time.Duration // default 10s
	StartTimeout  time.Duration // default 60s
	Logs          io.Writer     // the children's stderr; nil discards
}

// RunGatewayIngest runs the simulator, a gateway node (with embedded NATS,
// or a separate broker process) and, in this process, a durable JetStream
// consumer that acks every batch, and measures the node over a window:
// events published (acknowledged by JetStream), the node's CPU, the
// broker's CPU when separate, allocations per event in the node process,
// and its RSS.
func RunGatewayIngest(ctx context.Context, cfg GatewayIngestConfig) (IngestResult, error) {
	if cfg.Exe == "" {
		return IngestResult{}, errors.New("loadtest: Exe is required")
	}
	if cfg.Shards <= 0 {
		cfg.Shards = 16
	}
	if cfg.Rate <= 0 {
		cfg.Rate = DefaultIngestRate(cfg.Shards, cfg.Compression)
	}
	if cfg.Warmup <= 0 {
		cfg.Warmup = 3 * time.Second
	}
	if cfg.Measure <= 0 {
		cfg.Measure = 10 * time.Second
	}
	if cfg.StartTimeout <= 0 {
		cfg.StartTimeout = time.Minute
	}
	var logs io.Writer = io.Discard
	if cfg.Logs != nil {
		logs = &lockedWriter{w: cfg.Logs}
	}
	dir, err := os.MkdirTemp("", "gatehouse-ingest-")
	if err != nil {
		return IngestResult{}, err
	}
	defer os.RemoveAll(dir)

	sim, err := StartSim(ctx, cfg.Exe, IngestSimArgs(IngestWorkload{Shards: cfg.Shards, Rate: cfg.Rate}), logs)
	if err != nil {
		return IngestResult{}, err
	}
	defer sim.Stop()

	compress := string(cfg.Compression)
	if compress == "" {
		compress = "none"
	}
	args := []string{"gateway", "-api", sim.Base + "/api/v10", "-token", "sim-token",
		"-shard-count", strconv.Itoa(cfg.Shards), "-compress", compress,
		"-intents", strconv.FormatUint(uint64(IngestIntents), 10),
		"-status-addr", "127.0.0.1:0", "-log-level", "warn", "-identify-margin", "0s"}
	if cfg.BatchLinger != 0 {
		args = append(args, "-batch-linger", cfg.BatchLinger.String())
	}
	if cfg.BatchCompress != "" {
		args = append(args, "-batch-compress", cfg.BatchCompress)
	}
	var brk *Child
	seeds := dir + "/node/credentials"
	if cfg.SeparateBroker {
		seeds = dir + "/broker/credentials"
		brk, err = startChild(ctx, cfg.Exe, []string{"broker", "-listen", "127.0.0.1:0", "-data-dir", dir + "/broker", "-log-level", "warn"}, logs, "gatehouse broker: NATS at ")
		if err != nil {
			return IngestResult{}, err
		}
		defer brk.stop()
		brokerURL, _, _ := strings.Cut(brk.lines[0], ",")
		args = append(args, "-nats", brokerURL, "-nats-nkey", seeds+"/node.nk")
	} else {
		args = append(args, "-nats", "embedded", "-nats-listen", "127.0.0.1:0", "-data-dir", dir+"/node")
	}
	gw, err := startChild(ctx, cfg.Exe, args, logs, "gatehouse gateway: NATS at ", "gatehouse gateway: status on ")
	if err != nil {
		return IngestResult{}, err
	}
	defer gw.stop()
	// With a separate broker the node prints that broker's URL too.
	natsURL, _, _ := strings.Cut(gw.lines[0], ",")
	statusURL := strings.TrimSpace(gw.lines[1])

	// The consumer: a durable pull consumer acking every batch.
	seed, err := nats.NkeyOptionFromSeed(seeds + "/worker.nk")
	if err != nil {
		return IngestResult{}, fmt.Errorf("loadtest: consumer credentials: %w", err)
	}
	nc, err := nats.Connect(natsURL, nats.Name("gatehouse-bench-consumer"), seed)
	if err != nil {
		return IngestResult{}, fmt.Errorf("loadtest: consumer: %w", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return IngestResult{}, err
	}
	var consumed atomic.Int64
	cons, err := js.CreateOrUpdateConsumer(ctx, "GATEHOUSE_EVENTS", jetstream.ConsumerConfig{
		Durable: "bench", AckPolicy: jetstream.AckExplicitPolicy, MaxAckPending: 4096,
		FilterSubject: broker.Subjects{}.Events(),
	})
	if err != nil {
		return IngestResult{}, fmt.Errorf("loadtest: consumer: %w", err)
	}
	cc, err := cons.Consume(func(m jetstream.Msg) {
		n := 0
		_ = broker.Records(m.Data(), func([]byte) error { n++; return nil })
		consumed.Add(int64(n))
		_ = m.Ack()
	}, jetstream.PullMaxMessages(1024))
	if err != nil {
		return IngestResult{}, fmt.Errorf("loadtest: consume: %w", err)
	}
	defer cc.Stop()

	deadline := time.Now().Add(cfg.StartTimeout)
	for {
		st, err := fetchNodeStatus(ctx, statusURL, false)
		if err == nil && st.allReady(cfg.Shards) {
			break
		}
		if time.Now().After(deadline) {
			return IngestResult{}, fmt.Errorf("loadtest: gateway shards not READY within %s (last error %v)", cfg.StartTimeout, err)
		}
		select {
		case <-ctx.Done():
			return IngestResult{}, ctx.Err()
		case <-gw.done:
			return IngestResult{}, fmt.Errorf("loadtest: gateway exited: %s", gw.tail.String())
		case <-time.After(100 * time.Millisecond):
		}
	}
	select {
	case <-ctx.Done():
		return IngestResult{}, ctx.Err()
	case <-time.After(cfg.Warmup):
	}

	sample := func() (nodeStatus, time.Duration, time.Duration, time.Duration, simStats, time.Time, error) {
		st, err := fetchNodeStatus(ctx, statusURL, true)
		if err != nil {
			return st, 0, 0, 0, simStats{}, time.Time{}, err
		}
		t := time.Now()
		g, _ := ProcessCPU(gw.PID())
		var b time.Duration
		if brk != nil {
			b, _ = ProcessCPU(brk.PID())
		}
		s, _ := sim.CPU()
		ss, err := sim.stats(ctx)
		return st, g, b, s, ss, t, err
	}
	st0, g0, b0, s0, ss0, t0, err := sample()
	if err != nil {
		return IngestResult{}, err
	}
	c0 := consumed.Load()
	select {
	case <-ctx.Done():
		return IngestResult{}, ctx.Err()
	case <-time.After(cfg.Measure):
	}
	st1, g1, b1, s1, ss1, t1, err := sample()
	if err != nil {
		return IngestResult{}, err
	}
	c1 := consumed.Load()
	rss, _ := ProcessRSS(gw.PID())

	name := "gatehouse gateway"
	if cfg.SeparateBroker {
		name += " + separate broker"
	} else {
		name += " (embedded broker)"
	}
	if cfg.BatchCompress != "" {
		name += ", batches " + cfg.BatchCompress
	}
	r := IngestResult{
		Name: name, Shards: cfg.Shards, Compression: cfg.Compression, Rate: cfg.Rate, Window: t1.Sub(t0),
		Events: st1.Stats.Published - st0.Stats.Published, Generated: ss1.Events - ss0.Events,
		CPUSeconds: (g1 - g0).Seconds(), SimCPUSeconds: (s1 - s0).Seconds(), BrokerCPUSeconds: (b1 - b0).Seconds(),
		RSSBytes: rss, Consumed: c1 - c0,
	}
	r.EventsPerSec = float64(r.Events) / r.Window.Seconds()
	if r.CPUSeconds > 0 {
		r.EventsPerCPUSecond = float64(r.Events) / r.CPUSeconds
	}
	if read := st1.Stats.Events - st0.Stats.Events; read > 0 {
		r.AllocsPerEvent = float64(st1.Mallocs-st0.Mallocs) / float64(read)
	}
	if sumViolations(ss1.Violations) > 0 {
		return r, fmt.Errorf("loadtest: simulator reported violations: %s", sim.violations(ctx))
	}
	return r, nil
}

// nodeStatus is the part of a gateway node's GET /status the benchmark reads.
type nodeStatus struct {
	Stats     gateway.Stats         `json:"stats"`
	Mallocs   uint64                `json:"mallocs"`
	HeapAlloc uint64                `json:"heap_alloc"`
	Shards    []gateway.ShardStatus `json:"shards"`
}

func (s nodeStatus) allReady(n int) bool {
	if len(s.Shards) != n {
		return false
	}
	for _, sh := range s.Shards {
		if sh.State != gateway.StateReady.String() {
			return false
		}
	}
	return true
}

func fetchNodeStatus(ctx context.Context, url string, memstats bool) (nodeStatus, error) {
	var st nodeStatus
	if memstats {
		url += "?memstats=1"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return st, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return st, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return st, json.NewDecoder(resp.Body).Decode(&st)
}

func sumViolations(m map[string]int64) int64 {
	var n int64
	for _, v := range m {
		n += v
	}
	return n
}
