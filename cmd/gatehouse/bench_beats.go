package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/loadtest"
)

const benchBeatsSummary = `Shardman beat latency: N simulated bot processes each take a shard from a coordinator
(GET /connect, in its own process) and beat (POST /beat) every interval over their own
keep-alive connection. Prints beat latency percentiles as the workers see them and the
coordinator's CPU, for each run and the medians.`

func runBenchBeats(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("bench beats", benchBeatsSummary, stderr)
	var (
		workers  = fs.Int("workers", 10_000, "simulated worker processes")
		interval = fs.Duration("interval", time.Second, "between one worker's beats")
		warmup   = fs.Duration("warmup", 3*time.Second, "after every worker connected, before measuring")
		measure  = fs.Duration("measure", 15*time.Second, "measured window")
		runs     = fs.Int("runs", 3, "runs; the table shows each and the medians")
		follower = fs.Bool("via-follower", false, "run two coordinator replicas on a broker and beat through the one that does not lead (it forwards to the leader); the CPU column counts both")
	)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *workers < 1 || *runs < 1 {
		return usageError{"bench beats: -workers and -runs must be at least 1"}
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	cols := []string{"run", "workers", "beats/s", "errors", "p50 ms", "p90 ms", "p99 ms", "max ms", "coord CPU-s/s", "load CPU-s/s"}
	printRowOf(stdout, cols, cols)
	var rs []loadtest.BeatResult
	row := func(name string, r loadtest.BeatResult) {
		secs := max(r.Window.Seconds(), 1e-9)
		ms := func(d time.Duration) string { return fmt.Sprintf("%.2f", float64(d)/float64(time.Millisecond)) }
		printRowOf(stdout, cols, []string{name, fmt.Sprint(r.Workers), fmt.Sprintf("%.0f", float64(r.Beats)/secs), fmt.Sprint(r.Errors),
			ms(r.P50), ms(r.P90), ms(r.P99), ms(r.Max), fmt.Sprintf("%.2f", r.CoordCPUSeconds/secs), fmt.Sprintf("%.2f", r.LoadCPUSeconds/secs)})
	}
	for i := range *runs {
		r, err := loadtest.RunBeats(ctx, loadtest.BeatConfig{Exe: exe, Workers: *workers, Interval: *interval, Warmup: *warmup, Measure: *measure, Logs: stderr, ViaFollower: *follower})
		if err != nil {
			return fmt.Errorf("bench beats: %w", err)
		}
		rs = append(rs, r)
		row(fmt.Sprint(i+1), r)
		if r.FirstError != "" {
			fmt.Fprintf(stderr, "bench beats: run %d: first error: %s\n", i+1, r.FirstError)
		}
	}
	med := func(f func(loadtest.BeatResult) float64) float64 { return medianBy(rs, f) }
	dur := func(f func(loadtest.BeatResult) time.Duration) time.Duration {
		return time.Duration(med(func(r loadtest.BeatResult) float64 { return float64(f(r)) }))
	}
	row("median", loadtest.BeatResult{
		Workers: *workers, Window: time.Second,
		Beats:           int64(med(func(r loadtest.BeatResult) float64 { return float64(r.Beats) / r.Window.Seconds() })),
		Errors:          int64(med(func(r loadtest.BeatResult) float64 { return float64(r.Errors) })),
		P50:             dur(func(r loadtest.BeatResult) time.Duration { return r.P50 }),
		P90:             dur(func(r loadtest.BeatResult) time.Duration { return r.P90 }),
		P99:             dur(func(r loadtest.BeatResult) time.Duration { return r.P99 }),
		Max:             dur(func(r loadtest.BeatResult) time.Duration { return r.Max }),
		CoordCPUSeconds: med(func(r loadtest.BeatResult) float64 { return r.CoordCPUSeconds / r.Window.Seconds() }),
		LoadCPUSeconds:  med(func(r loadtest.BeatResult) float64 { return r.LoadCPUSeconds / r.Window.Seconds() }),
	})
	return nil
}

const benchFailoverSummary = `Leader failover: three coordinator replicas on a gatehouse broker; the leader is killed
(-9) and the table shows the time until another replica leads and until a write sent to a
surviving replica (forwarded to the new leader) is taken, for each run and the medians.`

func runBenchFailover(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("bench failover", benchFailoverSummary, stderr)
	var (
		ttl  = fs.Duration("lease-ttl", 15*time.Second, "the replicas' lease TTL: leadership lasts this long unrenewed")
		runs = fs.Int("runs", 5, "runs; the table shows each and the medians")
	)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *runs < 1 || *ttl < time.Second {
		return usageError{"bench failover: -runs must be at least 1 and -lease-ttl at least 1s"}
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	cols := []string{"run", "lease TTL", "new leader", "write taken"}
	printRowOf(stdout, cols, cols)
	var rs []loadtest.FailoverResult
	for i := range *runs {
		r, err := loadtest.RunFailover(ctx, loadtest.FailoverConfig{Exe: exe, LeaseTTL: *ttl, Logs: stderr})
		if err != nil {
			return fmt.Errorf("bench failover: %w", err)
		}
		rs = append(rs, r)
		printRowOf(stdout, cols, []string{fmt.Sprint(i + 1), ttl.String(), r.Elected.Round(time.Millisecond).String(), r.Writable.Round(time.Millisecond).String()})
	}
	med := func(f func(loadtest.FailoverResult) time.Duration) string {
		return time.Duration(medianBy(rs, func(r loadtest.FailoverResult) float64 { return float64(f(r)) })).Round(time.Millisecond).String()
	}
	printRowOf(stdout, cols, []string{"median", ttl.String(), med(func(r loadtest.FailoverResult) time.Duration { return r.Elected }),
		med(func(r loadtest.FailoverResult) time.Duration { return r.Writable })})
	return nil
}
