package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/discord/codec"
	"github.com/gatehouse-dev/gatehouse/internal/loadtest"
)

const benchSummary = `Run Gatehouse's end-to-end benchmarks and print a table (medians of several runs).

  gatehouse bench sim   one simulator process serving N shard connections at R events/s
                        per shard; reports delivered events/s, the simulator's CPU-seconds
                        and events per simulator CPU-second (the load client runs in this
                        process and is measured apart).
  gatehouse bench ingest
                        events per CPU-second of a gateway node publishing to JetStream
                        (with a consumer acking) against the fastest JavaScript gateway
                        library, side by side on the same simulator workload.
  gatehouse bench fleet first IDENTIFY to last READY for N shards at max_concurrency M.
  gatehouse bench idle  resident memory per idle shard of a gateway node.
  gatehouse bench beats Shardman beat latency at the coordinator: N workers beating once a
                        second, each over its own connection (-via-follower: through a
                        replica that forwards to the leader).
  gatehouse bench failover
                        kill -9 the leader of three coordinator replicas: the time until
                        another leads and a write through a follower is taken.`

func runBench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 {
		switch args[0] {
		case "ingest":
			return runBenchIngest(ctx, args[1:], stdout, stderr)
		case "fleet":
			return runBenchFleet(ctx, args[1:], stdout, stderr)
		case "idle":
			return runBenchIdle(ctx, args[1:], stdout, stderr)
		case "beats":
			return runBenchBeats(ctx, args[1:], stdout, stderr)
		case "failover":
			return runBenchFailover(ctx, args[1:], stdout, stderr)
		}
	}
	if len(args) == 0 || args[0] != "sim" {
		if len(args) > 0 && (args[0] == "-h" || args[0] == "-help" || args[0] == "--help") {
			fmt.Fprintf(stderr, "Usage: gatehouse bench sim|ingest|fleet|idle|beats|failover [flags]\n\n%s\n", benchSummary)
			return nil
		}
		return usageError{"bench: name a benchmark: sim, ingest, fleet, idle, beats or failover"}
	}
	fs := newFlagSet("bench sim", benchSummary, stderr)
	var (
		cfg      loadtest.SimBenchConfig
		runs     = fs.Int("runs", 3, "runs; the table shows each and the median")
		compress = fs.String("compress", "none", "transport compression the clients ask for: none, zlib-stream, zstd-stream")
	)
	fs.IntVar(&cfg.Shards, "shards", 1000, "shard connections")
	fs.IntVar(&cfg.Guilds, "guilds", 0, "guilds (0 = 20 per shard)")
	fs.Float64Var(&cfg.Rate, "rate", 100, "events per second per shard")
	fs.IntVar(&cfg.MaxConcurrency, "max-concurrency", 0, "identify buckets (0 = one per shard, so the fleet start does not pace the measurement)")
	fs.DurationVar(&cfg.IdentifyInterval, "identify-interval", 50*time.Millisecond, "identify window per bucket (short, so the fleet starts fast)")
	fs.DurationVar(&cfg.Warmup, "warmup", 10*time.Second, "wait after the fleet is up before measuring (the GUILD_CREATE burst and any backlog drain first)")
	fs.DurationVar(&cfg.Measure, "measure", 10*time.Second, "measured window per run")
	if err := parseFlags(fs, args[1:]); err != nil {
		return err
	}
	var err error
	if cfg.Compression, err = codec.ParseCompression(*compress); err != nil {
		return usageError{"bench sim: -compress: " + err.Error()}
	}
	if *runs < 1 {
		return usageError{"bench sim: -runs must be at least 1"}
	}
	cfg.Logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	cfg.Logs = stderr
	if cfg.Exe, err = os.Executable(); err != nil {
		return err
	}

	fmt.Fprintf(stdout, "simulator scale: %d shards, %g events/s/shard, compression %s, %v windows\n",
		cfg.Shards, cfg.Rate, compressionName(cfg.Compression), cfg.Measure)
	printRow(stdout, simColumns)
	var results []loadtest.SimBenchResult
	for i := range *runs {
		r, err := loadtest.RunSimBench(ctx, cfg)
		if err != nil {
			return fmt.Errorf("bench sim: run %d: %w", i+1, err)
		}
		results = append(results, r)
		printSimRow(stdout, fmt.Sprint(i+1), r)
	}
	printSimRow(stdout, "median", medianSim(results))
	return nil
}

var simColumns = []string{"run", "connected", "generated/s", "delivered/s", "sim CPU-s/s", "events/sim-CPU-s",
	"client CPU-s/s", "sim RSS MiB", "start s", "identify retries"}

// printRow prints one table row, each cell right-aligned under its column
// name. Rows print as runs finish, so widths come from the names, not from
// the data.
func printRow(w io.Writer, cells []string) { printRowOf(w, simColumns, cells) }

// printRowOf prints a row of a table with the given column names; a
// column name may carry a minimum width after a '|' ("client|36").
func printRowOf(w io.Writer, columns, cells []string) {
	var b []byte
	for i, c := range cells {
		name, minw, _ := strings.Cut(columns[i], "|")
		width := max(len(name), 8)
		if n, err := strconv.Atoi(minw); err == nil {
			width = max(width, n)
			c = fmt.Sprintf("%-*s", width, c)
		}
		if i > 0 {
			b = append(b, "  "...)
		}
		b = fmt.Appendf(b, "%*s", width, c)
	}
	b = append(b, '\n')
	w.Write(b)
}

func printSimRow(w io.Writer, name string, r loadtest.SimBenchResult) {
	perSec := func(d time.Duration) float64 { return d.Seconds() / r.Window.Seconds() }
	printRow(w, []string{name, fmt.Sprint(r.Connected), fmt.Sprintf("%.0f", r.GeneratedPerSec), fmt.Sprintf("%.0f", r.EventsPerSec),
		fmt.Sprintf("%.2f", perSec(r.SimCPU)), fmt.Sprintf("%.0f", r.EventsPerCPUs), fmt.Sprintf("%.2f", perSec(r.ClientCPU)),
		fmt.Sprintf("%.0f", float64(r.SimRSS)/(1<<20)), fmt.Sprintf("%.1f", r.StartTime.Seconds()), fmt.Sprint(r.IdentifyRetries)})
}

// medianSim takes each column's median separately.
func medianSim(rs []loadtest.SimBenchResult) loadtest.SimBenchResult {
	med := func(get func(loadtest.SimBenchResult) float64) float64 { return medianBy(rs, get) }
	w := time.Second
	return loadtest.SimBenchResult{
		Window:          w,
		Connected:       int(med(func(r loadtest.SimBenchResult) float64 { return float64(r.Connected) })),
		EventsPerSec:    med(func(r loadtest.SimBenchResult) float64 { return r.EventsPerSec }),
		GeneratedPerSec: med(func(r loadtest.SimBenchResult) float64 { return r.GeneratedPerSec }),
		SimCPU:          time.Duration(med(func(r loadtest.SimBenchResult) float64 { return float64(r.SimCPU) / r.Window.Seconds() })),
		ClientCPU:       time.Duration(med(func(r loadtest.SimBenchResult) float64 { return float64(r.ClientCPU) / r.Window.Seconds() })),
		EventsPerCPUs:   med(func(r loadtest.SimBenchResult) float64 { return r.EventsPerCPUs }),
		SimRSS:          int64(med(func(r loadtest.SimBenchResult) float64 { return float64(r.SimRSS) })),
		StartTime:       time.Duration(med(func(r loadtest.SimBenchResult) float64 { return float64(r.StartTime) })),
		IdentifyRetries: int64(med(func(r loadtest.SimBenchResult) float64 { return float64(r.IdentifyRetries) })),
	}
}

func compressionName(c codec.Compression) string {
	if c == codec.None {
		return "none"
	}
	return string(c)
}

// medianBy returns the median of get over rs.
func medianBy[T any](rs []T, get func(T) float64) float64 {
	v := make([]float64, len(rs))
	for i, r := range rs {
		v[i] = get(r)
	}
	slices.Sort(v)
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}
