package loadtest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/discord/codec"
	"github.com/gatehouse-dev/gatehouse/internal/gateway"
)

// NodeRunConfig configures RunFleetStart and RunIdleMemory: a simulator
// process and a gatehouse gateway node process (embedded NATS) against it.
type NodeRunConfig struct {
	Exe              string        // the gatehouse binary; required
	Shards           int           // default 256
	GuildsPerShard   int           // default 20
	MaxConcurrency   int           // default 16
	IdentifyInterval time.Duration // the simulator's window and the node's; default 5s
	Compression      codec.Compression
	Rate             float64       // events/s per shard; default 0 (idle)
	Settle           time.Duration // RunIdleMemory: wait after the last READY; default 45s (past the first heartbeat of every shard)
	Window           time.Duration // RunIdleMemory: how long RSS is sampled after Settle; default 45s (a heartbeat interval)
	Timeout          time.Duration // for every shard to be READY; default 5m
	Logs             io.Writer
}

// FleetStartResult is what RunFleetStart measured.
type FleetStartResult struct {
	Shards, MaxConcurrency int
	Interval               time.Duration
	// Limit is the least time Discord's rules allow from the first IDENTIFY
	// to the last: (ceil(shards / max_concurrency) - 1) × interval.
	Limit time.Duration
	// FirstIdentifyToLastReady is the node's own clock from the first
	// IDENTIFY it sent to the last READY it received.
	FirstIdentifyToLastReady time.Duration
	Identifies               int64 // IDENTIFYs the simulator received
	IdentifyViolations       int64
	Violations               int64  // all simulator rule violations
	ViolationRules           string // the non-zero violation counters, by rule
}

// RunFleetStart starts a node of cfg.Shards shards against a simulator
// with cfg.MaxConcurrency buckets and cfg.IdentifyInterval windows, and
// measures how long the fleet takes to come up and whether any rule was
// broken.
func RunFleetStart(ctx context.Context, cfg NodeRunConfig) (FleetStartResult, error) {
	cfg.defaults()
	run, err := startNodeRun(ctx, cfg)
	if err != nil {
		return FleetStartResult{}, err
	}
	defer run.stop()
	st, err := run.waitReady(ctx, cfg)
	if err != nil {
		return FleetStartResult{}, err
	}
	var first, last time.Time
	for _, s := range st.Shards {
		if first.IsZero() || (!s.IdentifiedAt.IsZero() && s.IdentifiedAt.Before(first)) {
			first = s.IdentifiedAt
		}
		if s.ReadyAt.After(last) {
			last = s.ReadyAt
		}
	}
	ss, err := run.sim.stats(ctx)
	if err != nil {
		return FleetStartResult{}, err
	}
	rounds := (cfg.Shards + cfg.MaxConcurrency - 1) / cfg.MaxConcurrency
	return FleetStartResult{
		Shards: cfg.Shards, MaxConcurrency: cfg.MaxConcurrency, Interval: cfg.IdentifyInterval,
		Limit:                    time.Duration(rounds-1) * cfg.IdentifyInterval,
		FirstIdentifyToLastReady: last.Sub(first),
		Identifies:               ss.Identifies, IdentifyViolations: ss.IdentifyViolations,
		Violations: sumViolations(ss.Violations), ViolationRules: nonZero(ss.Violations),
	}, nil
}

// IdleMemoryResult is what RunIdleMemory measured.
type IdleMemoryResult struct {
	Shards      int
	Compression codec.Compression
	// RSS of the node process (embedded NATS and the binary's mapped pages
	// included), sampled every second over the window: the median and the
	// largest sample. An idle node's RSS is a saw-tooth: heartbeats wake
	// shards, which grow stacks and take windows back, until a collection
	// returns the memory.
	RSSBytes, MaxRSSBytes int64
	Samples               int
	HeapBytes             int64 // Go heap in use at the end (runtime.MemStats.HeapAlloc)
}

// PerShard is the median RSS divided by shards.
func (r IdleMemoryResult) PerShard() float64 { return float64(r.RSSBytes) / float64(r.Shards) }

// MaxPerShard is the largest RSS sample divided by shards.
func (r IdleMemoryResult) MaxPerShard() float64 { return float64(r.MaxRSSBytes) / float64(r.Shards) }

// RunIdleMemory starts a node of cfg.Shards idle shards (no events after
// the GUILD_CREATEs, which fill the inflate windows), waits cfg.Settle
// after the last READY, then samples its RSS every second for cfg.Window.
func RunIdleMemory(ctx context.Context, cfg NodeRunConfig) (IdleMemoryResult, error) {
	cfg.defaults()
	run, err := startNodeRun(ctx, cfg)
	if err != nil {
		return IdleMemoryResult{}, err
	}
	defer run.stop()
	if _, err := run.waitReady(ctx, cfg); err != nil {
		return IdleMemoryResult{}, err
	}
	select {
	case <-ctx.Done():
		return IdleMemoryResult{}, ctx.Err()
	case <-time.After(cfg.Settle):
	}
	var rss []int64
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for end := time.Now().Add(cfg.Window); ; {
		v, err := ProcessRSS(run.node.PID())
		if err != nil {
			return IdleMemoryResult{}, err
		}
		rss = append(rss, v)
		if !time.Now().Before(end) {
			break
		}
		select {
		case <-ctx.Done():
			return IdleMemoryResult{}, ctx.Err()
		case <-t.C:
		}
	}
	// The status call allocates; it comes after the last sample.
	st, err := fetchNodeStatus(ctx, run.status, true)
	if err != nil {
		return IdleMemoryResult{}, err
	}
	slices.Sort(rss)
	return IdleMemoryResult{Shards: cfg.Shards, Compression: cfg.Compression, RSSBytes: rss[len(rss)/2],
		MaxRSSBytes: rss[len(rss)-1], Samples: len(rss), HeapBytes: int64(st.HeapAlloc)}, nil
}

func (cfg *NodeRunConfig) defaults() {
	if cfg.Shards <= 0 {
		cfg.Shards = 256
	}
	if cfg.GuildsPerShard <= 0 {
		cfg.GuildsPerShard = 20
	}
	if cfg.MaxConcurrency <= 0 {
		cfg.MaxConcurrency = 16
	}
	if cfg.IdentifyInterval <= 0 {
		cfg.IdentifyInterval = 5 * time.Second
	}
	if cfg.Window <= 0 {
		cfg.Window = 45 * time.Second
	}
	if cfg.Settle <= 0 {
		cfg.Settle = 45 * time.Second
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 5 * time.Minute
	}
	if cfg.Logs == nil {
		cfg.Logs = io.Discard
	}
}

type nodeRun struct {
	sim    *SimProcess
	node   *Child
	status string
	dir    string
}

func startNodeRun(ctx context.Context, cfg NodeRunConfig) (*nodeRun, error) {
	if cfg.Exe == "" {
		return nil, errors.New("loadtest: Exe is required")
	}
	dir, err := os.MkdirTemp("", "gatehouse-node-")
	if err != nil {
		return nil, err
	}
	logs := &lockedWriter{w: cfg.Logs}
	sim, err := StartSim(ctx, cfg.Exe, []string{"sim", "-addr", "127.0.0.1:0", "-log-level", "warn",
		"-guilds", strconv.Itoa(cfg.Shards * cfg.GuildsPerShard), "-shards", strconv.Itoa(cfg.Shards),
		"-max-concurrency", strconv.Itoa(cfg.MaxConcurrency), "-identify-interval", cfg.IdentifyInterval.String(),
		"-rate", strconv.FormatFloat(cfg.Rate, 'f', -1, 64)}, logs)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	compress := string(cfg.Compression)
	if compress == "" {
		compress = "none"
	}
	node, err := startChild(ctx, cfg.Exe, []string{"gateway", "-api", sim.Base + "/api/v10", "-token", "sim-token",
		"-compress", compress, "-nats", "embedded", "-nats-listen", "127.0.0.1:0", "-data-dir", dir,
		"-status-addr", "127.0.0.1:0", "-log-level", "warn", "-identify-interval", cfg.IdentifyInterval.String()}, logs, "gatehouse gateway: NATS at ", "gatehouse gateway: status on ")
	if err != nil {
		sim.Stop()
		os.RemoveAll(dir)
		return nil, err
	}
	return &nodeRun{sim: sim, node: node, status: node.lines[1], dir: dir}, nil
}

func (r *nodeRun) stop() {
	r.node.stop()
	r.sim.Stop()
	os.RemoveAll(r.dir)
}

func (r *nodeRun) waitReady(ctx context.Context, cfg NodeRunConfig) (nodeStatus, error) {
	deadline := time.Now().Add(cfg.Timeout)
	for {
		st, err := fetchNodeStatus(ctx, r.status, false)
		if err == nil && st.allReady(cfg.Shards) {
			return st, nil
		}
		if err == nil {
			for _, s := range st.Shards {
				if s.State == gateway.StateStopped.String() {
					return st, fmt.Errorf("loadtest: shard %d stopped: %s", s.Shard, s.Error)
				}
			}
		}
		if time.Now().After(deadline) {
			return st, fmt.Errorf("loadtest: shards not READY within %s (last error %v)", cfg.Timeout, err)
		}
		select {
		case <-ctx.Done():
			return st, ctx.Err()
		case <-r.node.done:
			return st, fmt.Errorf("loadtest: gateway exited: %s", r.node.tail.String())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func nonZero(m map[string]int64) string {
	var parts []string
	for k, v := range m {
		if v != 0 {
			parts = append(parts, fmt.Sprintf("%s=%d", k, v))
		}
	}
	slices.Sort(parts)
	return strings.Join(parts, ",")
}
