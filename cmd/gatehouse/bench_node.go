package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/discord/codec"
	"github.com/gatehouse-dev/gatehouse/internal/loadtest"
)

const benchFleetSummary = `Start a gateway node of N shards against a simulator enforcing max_concurrency
buckets and the 5 s identify window, and report the time from the first IDENTIFY to the
last READY next to the limit Discord's rules allow, with the simulator's violation count.`

func runBenchFleet(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("bench fleet", benchFleetSummary, stderr)
	var cfg loadtest.NodeRunConfig
	runs := fs.Int("runs", 1, "runs")
	compress := fs.String("compress", "zlib-stream", "transport compression: none, zlib-stream, zstd-stream")
	fs.IntVar(&cfg.Shards, "shards", 256, "shards")
	fs.IntVar(&cfg.MaxConcurrency, "max-concurrency", 16, "identify buckets")
	fs.DurationVar(&cfg.IdentifyInterval, "identify-interval", 5*time.Second, "identify window per bucket, in the simulator and the node")
	fs.IntVar(&cfg.GuildsPerShard, "guilds-per-shard", 20, "guilds per shard")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	var err error
	if cfg.Compression, err = codec.ParseCompression(*compress); err != nil {
		return usageError{"bench fleet: -compress: " + err.Error()}
	}
	if cfg.Exe, err = os.Executable(); err != nil {
		return err
	}
	cfg.Logs = stderr
	cols := []string{"run", "shards", "max_conc", "interval", "limit s", "first IDENTIFY→last READY s", "identifies", "violations"}
	printRowOf(stdout, cols, cols)
	for i := range *runs {
		r, err := loadtest.RunFleetStart(ctx, cfg)
		if err != nil {
			return fmt.Errorf("bench fleet: %w", err)
		}
		printRowOf(stdout, cols, []string{fmt.Sprint(i + 1), fmt.Sprint(r.Shards), fmt.Sprint(r.MaxConcurrency), r.Interval.String(),
			fmt.Sprintf("%.1f", r.Limit.Seconds()), fmt.Sprintf("%.3f", r.FirstIdentifyToLastReady.Seconds()),
			fmt.Sprint(r.Identifies), fmt.Sprint(r.Violations)})
		if r.ViolationRules != "" {
			fmt.Fprintln(stdout, "  violations:", r.ViolationRules)
		}
	}
	return nil
}

const benchIdleSummary = `Start a gateway node of N idle shards (GUILD_CREATEs fill the inflate windows,
then no events) and report its resident memory per shard, embedded NATS included: the
median and the largest of one-second samples taken after the node settles.`

func runBenchIdle(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("bench idle", benchIdleSummary, stderr)
	var cfg loadtest.NodeRunConfig
	compress := fs.String("compress", "zlib-stream", "transport compression: none, zlib-stream, zstd-stream")
	fs.IntVar(&cfg.Shards, "shards", 1000, "shards")
	fs.IntVar(&cfg.GuildsPerShard, "guilds-per-shard", 20, "guilds per shard")
	fs.DurationVar(&cfg.Settle, "settle", 45*time.Second, "wait after the last READY before sampling (past every shard's first heartbeat)")
	fs.DurationVar(&cfg.Window, "window", 45*time.Second, "sample RSS every second for this long and report the median and the largest sample")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	var err error
	if cfg.Compression, err = codec.ParseCompression(*compress); err != nil {
		return usageError{"bench idle: -compress: " + err.Error()}
	}
	if cfg.Exe, err = os.Executable(); err != nil {
		return err
	}
	cfg.MaxConcurrency = cfg.Shards // every shard its own bucket: start fast
	cfg.IdentifyInterval = 50 * time.Millisecond
	cfg.Logs = stderr
	cols := []string{"shards", "compress", "RSS MiB", "RSS KiB/shard", "max KiB/shard", "samples", "Go heap MiB"}
	printRowOf(stdout, cols, cols)
	r, err := loadtest.RunIdleMemory(ctx, cfg)
	if err != nil {
		return fmt.Errorf("bench idle: %w", err)
	}
	printRowOf(stdout, cols, []string{fmt.Sprint(r.Shards), compressionName(r.Compression),
		fmt.Sprintf("%.1f", float64(r.RSSBytes)/(1<<20)), fmt.Sprintf("%.1f", r.PerShard()/1024),
		fmt.Sprintf("%.1f", r.MaxPerShard()/1024), fmt.Sprint(r.Samples), fmt.Sprintf("%.1f", float64(r.HeapBytes)/(1<<20))})
	return nil
}
