package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/discord/codec"
	"github.com/gatehouse-dev/gatehouse/internal/loadtest"
)

const benchIngestSummary = `Compare ingest cost side by side on one simulator workload (1 KB MESSAGE_CREATE,
saturating): the fastest JavaScript gateway library (@discordjs/ws, counting events,
publishing nowhere) against a gatehouse gateway node publishing every event to JetStream
with a durable consumer acking. Each run measures every client in turn; the table shows
each run and the medians. events/CPU-s counts the client process (for the gateway node,
the embedded broker included); the "separate broker" rows run NATS in its own process so
its CPU shows apart.`

func runBenchIngest(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("bench ingest", benchIngestSummary, stderr)
	var (
		runs     = fs.Int("runs", 3, "runs; the table shows each and the medians")
		shardsF  = fs.String("shards", "16,256", "shard counts to compare, comma-separated")
		compress = fs.String("compress", "none,zlib-stream", "transport compressions to compare, comma-separated")
		rate     = fs.Float64("rate", 0, "events/s per shard the simulator offers to every client (0 = 200,000/s in total without compression, saturating; 8,000/s with zlib-stream, the most the JavaScript client with node:zlib keeps up with)")
		warmup   = fs.Duration("warmup", 5*time.Second, "wait after every shard is READY before measuring")
		measure  = fs.Duration("measure", 10*time.Second, "measured window")
		node     = fs.String("node", "node", "the node binary for the JavaScript baseline")
		script   = fs.String("script", "compat/js/ingest.mjs", "the JavaScript baseline script (needs npm ci in its directory)")
		skipJS   = fs.Bool("skip-js", false, "measure only the gateway node")
		separate = fs.Bool("separate-broker", true, "also measure the gateway node with NATS in its own process")
		linger   = fs.Duration("batch-linger", 0, "the node's -batch-linger (0 = its default)")
		batchC   = fs.String("batch-compress", "", "the node's -batch-compress values to compare, comma-separated, e.g. s2,none (empty = its default, s2)")
	)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	var shardCounts []int
	for f := range strings.SplitSeq(*shardsF, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return usageError{fmt.Sprintf("bench ingest: -shards: %q is not a positive number", f)}
		}
		shardCounts = append(shardCounts, n)
	}
	var comps []codec.Compression
	for f := range strings.SplitSeq(*compress, ",") {
		c, err := codec.ParseCompression(strings.TrimSpace(f))
		if err != nil {
			return usageError{"bench ingest: -compress: " + err.Error()}
		}
		comps = append(comps, c)
	}
	if *runs < 1 {
		return usageError{"bench ingest: -runs must be at least 1"}
	}
	batchComps := []string{""}
	if *batchC != "" {
		batchComps = nil
		for f := range strings.SplitSeq(*batchC, ",") {
			switch f = strings.TrimSpace(f); f {
			case "s2", "none":
				batchComps = append(batchComps, f)
			default:
				return usageError{fmt.Sprintf("bench ingest: -batch-compress: %q is not s2 or none", f)}
			}
		}
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	if !*skipJS {
		if _, err := exec.LookPath(*node); err != nil {
			return fmt.Errorf("bench ingest: %s not found (install Node.js, or pass -skip-js): %w", *node, err)
		}
		if _, err := os.Stat(*script); err != nil {
			return fmt.Errorf("bench ingest: %s: %w (run from the repository root after npm ci in compat/js, or pass -skip-js)", *script, err)
		}
	}

	header := slices.Clone(ingestColumns)
	header[1] = "client"
	printRowOf(stdout, ingestColumns, header)
	for _, shards := range shardCounts {
		for _, comp := range comps {
			byClient := map[string][]loadtest.IngestResult{}
			var order []string
			add := func(r loadtest.IngestResult) {
				if _, ok := byClient[r.Name]; !ok {
					order = append(order, r.Name)
				}
				byClient[r.Name] = append(byClient[r.Name], r)
			}
			for i := range *runs {
				run := fmt.Sprint(i + 1)
				if !*skipJS {
					r, err := loadtest.RunJSIngest(ctx, loadtest.JSIngestConfig{Exe: exe, Node: *node, Script: *script, Shards: shards,
						Rate: *rate, Compression: comp, Warmup: *warmup, Measure: *measure, Logs: stderr})
					if err != nil {
						return fmt.Errorf("bench ingest: JavaScript, %d shards, %s: %w", shards, compressionName(comp), err)
					}
					add(r)
					printIngestRow(stdout, run, r)
				}
				for _, bc := range batchComps {
					for _, sep := range []bool{false, true} {
						if sep && !*separate {
							continue
						}
						r, err := loadtest.RunGatewayIngest(ctx, loadtest.GatewayIngestConfig{Exe: exe, Shards: shards, Rate: *rate,
							Compression: comp, SeparateBroker: sep, BatchLinger: *linger, BatchCompress: bc,
							Warmup: *warmup, Measure: *measure, Logs: stderr})
						if err != nil {
							return fmt.Errorf("bench ingest: gateway, %d shards, %s: %w", shards, compressionName(comp), err)
						}
						add(r)
						printIngestRow(stdout, run, r)
					}
				}
			}
			for _, name := range order {
				printIngestRow(stdout, "median", medianIngest(byClient[name]))
			}
		}
	}
	return nil
}

var ingestColumns = []string{"run", "client|36", "shards", "compress", "events/s", "generated/s", "CPU-s/s",
	"events/CPU-s", "broker CPU-s/s", "sim CPU-s/s", "allocs/event", "RSS MiB", "consumed/s"}

func printIngestRow(w io.Writer, run string, r loadtest.IngestResult) {
	secs := r.Window.Seconds()
	if secs <= 0 {
		secs = 1
	}
	allocs := "-"
	if r.AllocsPerEvent >= 0 {
		allocs = fmt.Sprintf("%.2f", r.AllocsPerEvent)
	}
	consumed := "-"
	if r.Consumed > 0 {
		consumed = fmt.Sprintf("%.0f", float64(r.Consumed)/secs)
	}
	broker := "-"
	if r.BrokerCPUSeconds > 0 {
		broker = fmt.Sprintf("%.2f", r.BrokerCPUSeconds/secs)
	}
	printRowOf(w, ingestColumns, []string{run, r.Name, fmt.Sprint(r.Shards), compressionName(r.Compression),
		fmt.Sprintf("%.0f", r.EventsPerSec), fmt.Sprintf("%.0f", float64(r.Generated)/secs),
		fmt.Sprintf("%.2f", r.CPUSeconds/secs), fmt.Sprintf("%.0f", r.EventsPerCPUSecond), broker,
		fmt.Sprintf("%.2f", r.SimCPUSeconds/secs), allocs, fmt.Sprintf("%.0f", float64(r.RSSBytes)/(1<<20)), consumed})
}

// medianIngest returns the field-by-field median of rs.
func medianIngest(rs []loadtest.IngestResult) loadtest.IngestResult {
	med := func(f func(loadtest.IngestResult) float64) float64 { return medianBy(rs, f) }
	perSec := func(f func(loadtest.IngestResult) float64) func(loadtest.IngestResult) float64 {
		return func(r loadtest.IngestResult) float64 { return f(r) / r.Window.Seconds() }
	}
	m := rs[0]
	m.Window = time.Second // the median row is per second
	m.EventsPerSec = med(func(r loadtest.IngestResult) float64 { return r.EventsPerSec })
	m.Generated = int64(med(perSec(func(r loadtest.IngestResult) float64 { return float64(r.Generated) })))
	m.CPUSeconds = med(perSec(func(r loadtest.IngestResult) float64 { return r.CPUSeconds }))
	m.EventsPerCPUSecond = med(func(r loadtest.IngestResult) float64 { return r.EventsPerCPUSecond })
	m.BrokerCPUSeconds = med(perSec(func(r loadtest.IngestResult) float64 { return r.BrokerCPUSeconds }))
	m.SimCPUSeconds = med(perSec(func(r loadtest.IngestResult) float64 { return r.SimCPUSeconds }))
	m.AllocsPerEvent = med(func(r loadtest.IngestResult) float64 { return r.AllocsPerEvent })
	m.RSSBytes = int64(med(func(r loadtest.IngestResult) float64 { return float64(r.RSSBytes) }))
	m.Consumed = int64(med(perSec(func(r loadtest.IngestResult) float64 { return float64(r.Consumed) })))
	return m
}
