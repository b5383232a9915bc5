package loadtest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/discord/codec"
)

// SimBenchConfig configures one simulator scale run.
type SimBenchConfig struct {
	Exe              string        // the gatehouse binary; required
	Shards           int           // shard connections; default 1000
	Guilds           int           // guilds in the simulated bot; default 20 × Shards
	Rate             float64       // events/s per shard; default 100
	MaxConcurrency   int           // default: Shards (every shard its own bucket)
	IdentifyInterval time.Duration // default 50ms, so 1,000 shards start in seconds
	Compression      codec.Compression
	Warmup           time.Duration // after the last GUILD_CREATE; default 2s
	Measure          time.Duration // measured window; default 10s
	StartTimeout     time.Duration // for all shards to be READY with guilds; default 3m
	Logs             io.Writer     // simulator stderr; nil discards
	Logger           *slog.Logger
}

// SimBenchResult is what one run measured over its window.
type SimBenchResult struct {
	Shards       int
	Connected    int
	Window       time.Duration // wall time of the measured window
	Events       int64         // dispatches received by the fleet in the window
	Generated    int64         // dispatches the simulator generated in the window
	EventsPerSec float64
	// GeneratedPerSec is Generated per second. Above EventsPerSec, the
	// fleet or the simulator's writers fall behind (a growing backlog);
	// below, a backlog from before the window drains.
	GeneratedPerSec float64
	SimCPU          time.Duration // simulator process CPU in the window
	ClientCPU       time.Duration // this process's CPU in the window
	EventsPerCPUs   float64       // events per simulator CPU-second
	SimRSS          int64         // simulator resident set at the end, bytes
	StartTime       time.Duration // first IDENTIFY to last READY
	// IdentifyRetries counts IDENTIFYs the simulator rejected as too fast
	// while the fleet started (each retried after 1 s). The fleet paces
	// IDENTIFYs one interval plus a margin apart; a rejection means the
	// simulator read one late because both processes were saturated.
	IdentifyRetries int64
}

// RunSimBench starts a simulator process, connects a fleet, waits until it
// is fully up, then measures delivered events and CPU over a window.
func RunSimBench(ctx context.Context, cfg SimBenchConfig) (SimBenchResult, error) {
	if cfg.Exe == "" {
		return SimBenchResult{}, errors.New("loadtest: Exe is required")
	}
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&cfg.Shards, 1000)
	def(&cfg.Guilds, 20*cfg.Shards)
	def(&cfg.MaxConcurrency, cfg.Shards)
	if cfg.Rate <= 0 {
		cfg.Rate = 100
	}
	if cfg.IdentifyInterval <= 0 {
		cfg.IdentifyInterval = 50 * time.Millisecond
	}
	if cfg.Warmup <= 0 {
		cfg.Warmup = 2 * time.Second
	}
	if cfg.Measure <= 0 {
		cfg.Measure = 10 * time.Second
	}
	if cfg.StartTimeout <= 0 {
		cfg.StartTimeout = 3 * time.Minute
	}
	args := []string{"sim", "-addr", "127.0.0.1:0", "-log-level", "warn",
		"-guilds", strconv.Itoa(cfg.Guilds), "-shards", strconv.Itoa(cfg.Shards),
		"-max-concurrency", strconv.Itoa(cfg.MaxConcurrency),
		"-rate", strconv.FormatFloat(cfg.Rate, 'f', -1, 64),
		"-identify-interval", cfg.IdentifyInterval.String(),
		"-session-start-limit", strconv.Itoa(10 * cfg.Shards)}
	p, err := StartSim(ctx, cfg.Exe, args, cfg.Logs)
	if err != nil {
		return SimBenchResult{}, err
	}
	defer p.Stop()

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	fleet, err := NewFleet(ctx, FleetConfig{
		BaseURL: p.Base + "/api/v10", Token: "sim-token", Shards: cfg.Shards,
		IdentifyInterval: cfg.IdentifyInterval, Compression: cfg.Compression, Logger: cfg.Logger,
	})
	if err != nil {
		return SimBenchResult{}, err
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = fleet.Run(ctx)
	}()
	defer func() {
		cancel()
		<-done
	}()

	deadline := time.Now().Add(cfg.StartTimeout)
	for {
		st := fleet.Stats()
		if st.Ready == cfg.Shards && st.Guilds >= int64(cfg.Guilds) {
			break
		}
		if st.Errors > 0 {
			return SimBenchResult{}, fmt.Errorf("loadtest: %d connections failed while starting (simulator: %s)", st.Errors, p.violations(ctx))
		}
		if time.Now().After(deadline) {
			return SimBenchResult{}, fmt.Errorf("loadtest: fleet not up after %v: %d/%d ready, %d/%d guilds",
				cfg.StartTimeout, st.Ready, cfg.Shards, st.Guilds, cfg.Guilds)
		}
		select {
		case <-ctx.Done():
			return SimBenchResult{}, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	select {
	case <-ctx.Done():
		return SimBenchResult{}, ctx.Err()
	case <-time.After(cfg.Warmup):
	}

	g0, err := p.stats(ctx)
	if err != nil {
		return SimBenchResult{}, err
	}
	s0, c0, e0, t0 := mustCPU(p), SelfCPU(), fleet.Stats().Events, time.Now()
	select {
	case <-ctx.Done():
		return SimBenchResult{}, ctx.Err()
	case <-time.After(cfg.Measure):
	}
	s1, c1, st, t1 := mustCPU(p), SelfCPU(), fleet.Stats(), time.Now()
	g1, err := p.stats(ctx)
	if err != nil {
		return SimBenchResult{}, err
	}

	r := SimBenchResult{
		Shards: cfg.Shards, Connected: st.Connected, Window: t1.Sub(t0),
		Events: st.Events - e0, Generated: g1.Events - g0.Events, SimCPU: s1 - s0, ClientCPU: c1 - c0,
		StartTime: st.LastReady.Sub(st.FirstIdentify), IdentifyRetries: st.Invalid,
	}
	r.EventsPerSec = float64(r.Events) / r.Window.Seconds()
	r.GeneratedPerSec = float64(r.Generated) / r.Window.Seconds()
	if r.SimCPU > 0 {
		r.EventsPerCPUs = float64(r.Events) / r.SimCPU.Seconds()
	}
	r.SimRSS, _ = ProcessRSS(p.PID())
	if st.Errors > 0 {
		return r, fmt.Errorf("loadtest: %d connections failed during the run", st.Errors)
	}
	return r, nil
}

// simStats is the part of the simulator's /sim/stats the benchmark reads.
type simStats struct {
	Events             int64            `json:"events"`
	Identifies         int64            `json:"identifies"`
	IdentifyViolations int64            `json:"identify_violations"`
	Violations         map[string]int64 `json:"violations"`
}

func (p *SimProcess) stats(ctx context.Context) (simStats, error) {
	var st simStats
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.Base+"/sim/stats", nil)
	if err != nil {
		return st, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return st, fmt.Errorf("loadtest: GET /sim/stats: %s", resp.Status)
	}
	return st, json.NewDecoder(resp.Body).Decode(&st)
}

// violations returns the simulator's violation counters as text, for error
// messages.
func (p *SimProcess) violations(ctx context.Context) string {
	st, err := p.stats(ctx)
	if err != nil {
		return err.Error()
	}
	return fmt.Sprint("violations ", st.Violations)
}

func mustCPU(p *SimProcess) time.Duration {
	d, _ := p.CPU()
	return d
}

// ProcessRSS returns a process's resident set size in bytes (Linux only).
func ProcessRSS(pid int) (int64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return kb * 1024, err
		}
	}
	return 0, errors.New("loadtest: no VmRSS")
}
