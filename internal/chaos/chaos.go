package chaos

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// Config configures Run.
type Config struct {
	// Exe is the gatehouse binary the children run. Required.
	Exe string
	// Scenarios to run, by name (see Scenarios); empty means all.
	Scenarios []string
	// Shards is the bot's shard count. Default 8.
	Shards int
	// MaxConcurrency is the simulated bot's max_concurrency. Default 4.
	MaxConcurrency int
	// Rate is events per second per shard. Default 50.
	Rate float64
	// Steady is how long the load runs before the fault and again after
	// recovery. Default 5s.
	Steady time.Duration
	// LeaseTTL is the coordinator's lease TTL. Default 5s.
	LeaseTTL time.Duration
	// Outage is how long coordinator-outage keeps every coordinator down.
	// Default 60s.
	Outage time.Duration
	// Dir holds the scenarios' JetStream stores. Default: a temporary
	// directory, removed at the end.
	Dir string
	// Logger receives progress. Default: discard.
	Logger *slog.Logger
}

func (c *Config) defaults() error {
	if c.Exe == "" {
		return errors.New("chaos: Config.Exe (the gatehouse binary) is required")
	}
	if c.Shards == 0 {
		c.Shards = 8
	}
	if c.MaxConcurrency == 0 {
		c.MaxConcurrency = 4
	}
	if c.Rate == 0 {
		c.Rate = 50
	}
	if c.Steady == 0 {
		c.Steady = 5 * time.Second
	}
	if c.LeaseTTL == 0 {
		c.LeaseTTL = 5 * time.Second
	}
	if c.Outage == 0 {
		c.Outage = 60 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	switch {
	case c.Shards < 2:
		return fmt.Errorf("chaos: %d shards: want at least 2 (two nodes share them)", c.Shards)
	case c.MaxConcurrency < 1:
		return fmt.Errorf("chaos: max_concurrency %d: want at least 1", c.MaxConcurrency)
	case c.Rate < 0 || c.Steady < 0 || c.LeaseTTL < 0:
		return errors.New("chaos: rate, steady and lease TTL must not be negative")
	}
	for _, s := range c.Scenarios {
		if !slices.ContainsFunc(scenarios, func(sc scenario) bool { return sc.name == s }) {
			return fmt.Errorf("chaos: unknown scenario %q; want one of %s", s, strings.Join(Scenarios(), ", "))
		}
	}
	return nil
}

// Result is one scenario's outcome, counted end to end: every event the
// simulator sent to some session (each has a unique sim_event_id) against
// what the consumer process handled.
type Result struct {
	Scenario string
	// Produced are the events sent to some shard session during the run
	// (an event no session was due, such as a silenced one, is not).
	Produced int64
	// Delivered were handled by the consumer at least once.
	Delivered int64
	// Lost were produced and never handled.
	Lost int64
	// Duplicated were handled under more than one idempotency key: copies
	// the key cannot catch.
	Duplicated int64
	// Redelivered were handled again under the same key (at-least-once
	// delivery; the key makes them harmless).
	Redelivered int64
	// MaxGap is the longest wait between two new events of one shard at
	// the consumer, from the fault to the end.
	MaxGap time.Duration
	// Identifies are the IDENTIFYs the scenario cost after startup, and
	// Violations the IDENTIFYs the simulator refused as too fast.
	Identifies int64
	Violations int64
	// ShardsDown is the most shards of the bot's count without a
	// connection at once, sampled every 20ms from the fault to the end.
	ShardsDown int
	// Recovery is the scenario's time to recover (see each scenario).
	Recovery time.Duration
	// Note says what Recovery measures and anything else checked.
	Note string
	// Err is why the scenario failed to run or failed a check ("" when
	// it passed).
	Err string
}

// OK reports whether the scenario ran and lost and duplicated nothing.
func (r Result) OK() bool { return r.Err == "" && r.Lost == 0 && r.Duplicated == 0 }

// scenario is a fault and how it recovers. run injects the fault and
// returns when the system has recovered, with the recovery time.
type scenario struct {
	name string
	run  func(ctx context.Context, c *cluster) (time.Duration, string, error)
	opts options
}

// options shape a scenario's deployment and checks.
type options struct {
	// coordinators is how many coordinator replicas run (default 1).
	coordinators int
	// steady: the fault must not touch a shard: no shard without a
	// connection at any sample, no RESUME, no IDENTIFY.
	steady bool
	// natsCluster runs three brokers as a NATS cluster (R3) instead of one.
	natsCluster bool
	// leaseTTL replaces Config.LeaseTTL for the scenario.
	leaseTTL time.Duration
}

var scenarios = []scenario{
	{name: "consumer-kill", run: consumerKill},
	{name: "node-kill", run: nodeKill},
	{name: "node-drain", run: nodeDrain},
	{name: "coordinator-kill", run: coordinatorKill, opts: options{steady: true}},
	{name: "silent-shard", run: silentShard},
	{name: "reshard", run: reshard},
	{name: "reshard-coordinator-kill", run: reshardCoordinatorKill},
	{name: "leader-kill", run: leaderKill, opts: options{coordinators: 3, steady: true}},
	{name: "coordinator-outage", run: coordinatorOutage, opts: options{coordinators: 3, steady: true}},
	{name: "auth-flood", run: authFlood, opts: options{steady: true}},
	{name: "forged-publish", run: forgedPublish, opts: options{steady: true}},
	// A stream's leader election in a 3-node cluster takes seconds: a
	// lease TTL shorter than that would fence nodes that only wait for it.
	{name: "broker-node-kill", run: brokerNodeKill, opts: options{coordinators: 3, steady: true, natsCluster: true, leaseTTL: 15 * time.Second}},
}

// Scenarios returns the scenario names in the order Run takes them.
func Scenarios() []string {
	out := make([]string, len(scenarios))
	for i, s := range scenarios {
		out[i] = s.name
	}
	return out
}

// Run runs the scenarios one after another, each on a fresh deployment, and
// returns their results. It returns an error only for a bad Config.
func Run(ctx context.Context, cfg Config) ([]Result, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	dir := cfg.Dir
	if dir == "" {
		d, err := os.MkdirTemp("", "gatehouse-chaos-")
		if err != nil {
			return nil, err
		}
		dir = d
	}
	var out []Result
	failed := false
	defer func() {
		// A failed scenario's logs are kept for reading.
		if cfg.Dir == "" && !failed {
			_ = os.RemoveAll(dir)
		}
	}()
	for i, sc := range scenarios {
		if len(cfg.Scenarios) > 0 && !slices.Contains(cfg.Scenarios, sc.name) {
			continue
		}
		if ctx.Err() != nil {
			break
		}
		cfg.Logger.Info("scenario", "name", sc.name)
		out = append(out, runOne(ctx, cfg, fmt.Sprintf("%s/%d-%s", dir, i, sc.name), sc))
		r := out[len(out)-1]
		if r.Err != "" {
			failed = true
			cfg.Logger.Warn("scenario failed: its processes' logs are kept", "name", sc.name, "dir", fmt.Sprintf("%s/%d-%s", dir, i, sc.name))
		}
		cfg.Logger.Info("scenario done", "name", sc.name, "lost", r.Lost, "duplicated", r.Duplicated, "recovery", r.Recovery, "err", r.Err)
	}
	return out, nil
}

// runOne runs one scenario: steady load, the fault, recovery, steady load
// again, then a cut: every event up to the cut must reach the consumer.
func runOne(ctx context.Context, cfg Config, dir string, sc scenario) (res Result) {
	res.Scenario = sc.name
	c, err := up(ctx, cfg, dir, sc.opts)
	defer func() {
		if c != nil {
			c.down()
		}
	}()
	if err != nil {
		res.Err = err.Error()
		return res
	}
	before := c.sim.Stats()
	sleep(ctx, cfg.Steady)
	c.col.startGaps()
	stopSampling := c.sampleShardsDown(ctx, &res.ShardsDown)
	rec, note, err := sc.run(ctx, c)
	res.Recovery, res.Note = rec, note
	if err != nil {
		res.Err = err.Error()
	}
	sleep(ctx, cfg.Steady)
	stopSampling()
	cut := uint64(c.sim.Stats().EventIDs)
	want := c.sim.Delivered()
	// Everything up to the cut must come through: wait for the stragglers.
	if werr := waitFor(ctx, 20*time.Second, "every event up to the cut at the consumer", func() bool {
		return c.col.missing(want, cut) == 0
	}); werr != nil && res.Err == "" {
		res.Err = "events missing at the end (see lost)"
	}
	after := c.sim.Stats()
	res.Produced, res.Delivered, res.Lost, res.Duplicated = c.col.counts(want, cut)
	c.col.mu.Lock()
	res.Redelivered, res.MaxGap = c.col.redelivered, c.col.maxGap
	bad := c.col.bad
	c.col.mu.Unlock()
	res.Identifies = after.Identifies - before.Identifies
	res.Violations = after.IdentifyViolations
	resumes := after.Resumes - before.Resumes
	switch {
	case res.Err != "":
	case bad > 0:
		res.Err = fmt.Sprintf("%d consumer lines did not parse", bad)
	case c.col.forged > 0:
		res.Err = fmt.Sprintf("the consumer handled %d forged events", c.col.forged)
	case after.IdentifyViolations > 0:
		res.Err = fmt.Sprintf("%d identify violations", after.IdentifyViolations)
	case res.Identifies > 0 && !strings.HasPrefix(sc.name, "reshard"): // a reshard checks its own: one per new shard
		res.Err = fmt.Sprintf("%d IDENTIFYs, want 0", res.Identifies)
	case sc.opts.steady && res.ShardsDown > 0:
		res.Err = fmt.Sprintf("%d shards were down at once, want 0", res.ShardsDown)
	case sc.opts.steady && resumes > 0:
		res.Err = fmt.Sprintf("%d RESUMEs: the fault touched the shards, want 0", resumes)
	}
	return res
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// WriteTable prints the results as an aligned table.
func WriteTable(w io.Writer, rs []Result) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "scenario\tproduced\tdelivered\tlost\tduplicated\tredelivered\tmax gap\tidentifies\tviolations\tshards down\trecovery\tresult")
	for _, r := range rs {
		result := "ok"
		if !r.OK() {
			result = "FAIL"
			if r.Err != "" {
				result += ": " + r.Err
			}
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%v\t%d\t%d\t%d\t%v\t%s\n", r.Scenario, r.Produced, r.Delivered, r.Lost, r.Duplicated,
			r.Redelivered, r.MaxGap.Round(10*time.Millisecond), r.Identifies, r.Violations, r.ShardsDown, r.Recovery.Round(10*time.Millisecond), result)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, r := range rs {
		if r.Note != "" {
			if _, err := fmt.Fprintf(w, "%s: %s\n", r.Scenario, r.Note); err != nil {
				return err
			}
		}
	}
	return nil
}
