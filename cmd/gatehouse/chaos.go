package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/chaos"
)

var chaosSummary = `Run the zero-loss scenarios against the simulator at a steady load and print
a table: events produced, delivered, lost, duplicated, redelivered (same
idempotency key), the longest wait between events of one shard, IDENTIFYs
used and the time to recover. Each scenario runs on a fresh deployment of
this binary's processes (broker, coordinator, two gateway nodes, a consumer
through gatehouse tail) on loopback. Scenarios: ` + strings.Join(chaos.Scenarios(), ", ") + `.
Exits 1 when a scenario lost or duplicated an event or failed a check.`

func runChaos(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("chaos", chaosSummary, stderr)
	var (
		names    = fs.String("scenarios", "", "scenarios to run, comma-separated (empty = all)")
		shards   = fs.Int("shards", 8, "the bot's shard count (two nodes share them)")
		mc       = fs.Int("max-concurrency", 4, "the simulated bot's max_concurrency")
		rate     = fs.Float64("rate", 50, "events per second per shard")
		steady   = fs.Duration("steady", 5*time.Second, "load before each fault and again after recovery")
		ttl      = fs.Duration("lease-ttl", 5*time.Second, "the coordinator's lease TTL (node failover takes about this long)")
		outage   = fs.Duration("outage", 60*time.Second, "coordinator-outage: how long every coordinator stays down")
		logLevel = fs.String("log-level", "info", "progress log level: debug, info, warn, error")
	)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	log, err := newLogger("chaos", *logLevel, stderr)
	if err != nil {
		return err
	}
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("chaos: finding this binary: %w", err)
	}
	cfg := chaos.Config{Exe: exe, Shards: *shards, MaxConcurrency: *mc, Rate: *rate, Steady: *steady, LeaseTTL: *ttl, Outage: *outage, Logger: log}
	for n := range strings.SplitSeq(*names, ",") {
		if n = strings.TrimSpace(n); n != "" {
			cfg.Scenarios = append(cfg.Scenarios, n)
		}
	}
	if *shards < 2 || *mc < 1 || *rate <= 0 || *steady <= 0 || *ttl <= 0 {
		return usageError{"chaos: want -shards >= 2, -max-concurrency >= 1 and a positive -rate, -steady and -lease-ttl"}
	}
	rs, err := chaos.Run(ctx, cfg)
	if err != nil {
		return usageError{err.Error()}
	}
	if err := chaos.WriteTable(stdout, rs); err != nil {
		return err
	}
	failed := 0
	for _, r := range rs {
		if !r.OK() {
			failed++
		}
	}
	if failed > 0 {
		return fmt.Errorf("chaos: %d of %d scenarios failed", failed, len(rs))
	}
	return nil
}
