package loadtest

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/discord"
	"github.com/gatehouse-dev/gatehouse/internal/discord/codec"
)

// The ingest benchmark measures how many dispatches a gateway client reads
// per CPU-second of its own process when a simulator floods its shards with
// ~1 KB MESSAGE_CREATEs. Gatehouse's gateway node and the JavaScript
// baseline (RunJSIngest) run against the same workload (IngestSimArgs) and
// fill the same IngestResult.

// IngestIntents are the intents every ingest client identifies with:
// GUILDS | GUILD_MESSAGES. Without MESSAGE_CONTENT the simulator strips
// content, embeds, attachments and components, as Discord does, and its
// MESSAGE_CREATEs average about 1 KB.
const IngestIntents = discord.IntentGuilds | discord.IntentGuildMessages

// IngestWorkload is the simulator side of an ingest run.
type IngestWorkload struct {
	Shards int     // shard count; required
	Rate   float64 // MESSAGE_CREATEs per second per shard offered; required
	Guilds int     // guilds in the simulated bot; default 10 × Shards
	// Backlog is how long the simulator may queue events faster than the
	// client reads them before it cuts the client as a slow consumer: it
	// sizes the replay buffer to Rate × Backlog dispatches per shard.
	// Default 60s.
	Backlog time.Duration
}

// IngestSimArgs returns the `gatehouse sim` arguments of workload w: only
// MESSAGE_CREATE, every shard its own identify bucket (so the start does not
// pace the run), a replay buffer deep enough that a saturated client is not
// cut, listening on 127.0.0.1:0.
func IngestSimArgs(w IngestWorkload) []string {
	if w.Guilds <= 0 {
		w.Guilds = 10 * w.Shards
	}
	if w.Backlog <= 0 {
		w.Backlog = time.Minute
	}
	replay := max(20000, int(min(w.Rate*w.Backlog.Seconds(), 1<<26)))
	return []string{"sim", "-addr", "127.0.0.1:0", "-log-level", "warn",
		"-guilds", strconv.Itoa(w.Guilds), "-shards", strconv.Itoa(w.Shards),
		"-max-concurrency", strconv.Itoa(w.Shards), "-identify-interval", "50ms",
		"-session-start-limit", strconv.Itoa(10 * w.Shards),
		"-rate", strconv.FormatFloat(w.Rate, 'f', -1, 64),
		"-event-types", "MESSAGE_CREATE",
		"-replay-buffer", strconv.Itoa(replay),
	}
}

// DefaultIngestRate is the events/s per shard both sides of the ingest
// comparison are offered by default: 200,000/s in total without
// compression, which saturates every client on 2 cores; 8,000/s in total
// with zlib-stream, the most @discordjs/ws with node:zlib reads without
// falling behind (above it undecoded messages pile up and it collapses).
func DefaultIngestRate(shards int, c codec.Compression) float64 {
	if c != codec.None {
		return 8000 / float64(shards)
	}
	return 200000 / float64(shards)
}

// IngestResult is what one ingest run measured over its window. The
// JavaScript baseline leaves the broker and allocation fields at their
// "not measured" values.
type IngestResult struct {
	Name        string // the client, e.g. "@discordjs/ws 2.0.4"
	Shards      int
	Compression codec.Compression
	Rate        float64       // events/s per shard the simulator offered
	Window      time.Duration // length of the measured window
	// Events is the number of dispatches the client received in the window.
	Events int64
	// Generated is the number of dispatches the simulator generated in the
	// window. Events well below it means the run was saturated: events were
	// offered faster than they were delivered and read (see Saturated).
	Generated    int64
	EventsPerSec float64
	// CPUSeconds is the client process's user+system CPU in the window,
	// every thread included.
	CPUSeconds float64
	// EventsPerCPUSecond is Events / CPUSeconds: the benchmark's figure.
	EventsPerCPUSecond float64
	SimCPUSeconds      float64 // the simulator process's CPU in the window
	// BrokerCPUSeconds is the message broker's CPU in the window; 0 when
	// the client publishes nowhere.
	BrokerCPUSeconds float64
	// AllocsPerEvent is the client's heap allocations per event; negative
	// when not measured.
	AllocsPerEvent float64
	RSSBytes       int64 // client resident set at the end of the window
	// Consumed is the events a durable JetStream consumer received and
	// acked in the window; 0 when the client publishes nowhere.
	Consumed int64
}

// Saturated reports whether events queued up in the simulator during the
// window: fewer than 95% of those generated were received.
func (r IngestResult) Saturated() bool {
	return r.Generated > 0 && float64(r.Events) < 0.95*float64(r.Generated)
}

// ClientCores is the client's average CPU use in the window, in cores.
func (r IngestResult) ClientCores() float64 { return seconds(r.CPUSeconds, r.Window) }

// SimCores is the simulator's average CPU use in the window, in cores.
func (r IngestResult) SimCores() float64 { return seconds(r.SimCPUSeconds, r.Window) }

func seconds(cpu float64, window time.Duration) float64 {
	if window <= 0 {
		return 0
	}
	return cpu / window.Seconds()
}

// JSIngestConfig configures RunJSIngest. Zero values mean the documented
// defaults.
type JSIngestConfig struct {
	Exe    string // the gatehouse binary, to run the simulator; required
	Node   string // the node binary; default "node" (looked up in PATH)
	Script string // path to compat/js/ingest.mjs; required
	Shards int    // default 16
	// Rate is the events/s per shard the simulator offers. Default without
	// compression: 200,000 / Shards, more than node reads on a 2-core
	// machine, so the run is saturated. Default with zlib-stream: 8,000 /
	// Shards. @discordjs/ws's node:zlib path cannot be saturated: it inflates
	// each message through the libuv thread pool without back-pressure, and
	// above about 8,000 events/s (256 shards) to 16,000 (16 shards) it queues
	// undecoded messages in memory and its throughput collapses. With
	// zlib-sync installed the simulator's deflate is the limit instead, at
	// about 50,000 events/s per simulator core.
	Rate float64
	// Compression is the transport compression: codec.None or
	// codec.ZlibStream (the only one @discordjs/ws supports).
	Compression codec.Compression
	// Inflate picks the zlib-stream decompressor: "auto" (default:
	// zlib-sync when installed in the script's node_modules, else
	// node:zlib), "sync" or "native".
	Inflate      string
	Warmup       time.Duration // after every shard is READY; default 3s
	Measure      time.Duration // measured window; default 10s
	StartTimeout time.Duration // for every shard to be READY; default 60s
	// Logs receives the simulator's and node's stderr; nil discards.
	Logs io.Writer
}

// ErrClientExited means the benchmarked client process ended before the run
// did.
var ErrClientExited = errors.New("loadtest: client process exited")

// RunJSIngest runs the JavaScript baseline of the ingest benchmark: it
// starts a simulator process with IngestSimArgs, then node running the
// @discordjs/ws script with every shard, waits until all are READY, warms
// up, and measures the dispatches node counted, node's and the simulator's
// CPU, and node's memory over the window. It stops both processes before
// it returns.
func RunJSIngest(ctx context.Context, cfg JSIngestConfig) (IngestResult, error) {
	if cfg.Exe == "" || cfg.Script == "" {
		return IngestResult{}, errors.New("loadtest: Exe and Script are required")
	}
	if cfg.Node == "" {
		cfg.Node = "node"
	}
	if cfg.Shards <= 0 {
		cfg.Shards = 16
	}
	if cfg.Inflate == "" {
		cfg.Inflate = "auto"
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
	compress := "none"
	switch cfg.Compression {
	case codec.None:
	case codec.ZlibStream:
		compress = string(codec.ZlibStream)
	default:
		return IngestResult{}, fmt.Errorf("loadtest: compression %q: @discordjs/ws supports none and zlib-stream", cfg.Compression)
	}

	var logs io.Writer = io.Discard
	if cfg.Logs != nil {
		logs = &lockedWriter{w: cfg.Logs} // both processes' stderr
	}
	sim, err := StartSim(ctx, cfg.Exe, IngestSimArgs(IngestWorkload{Shards: cfg.Shards, Rate: cfg.Rate}), logs)
	if err != nil {
		return IngestResult{}, err
	}
	defer sim.Stop()

	node, err := startNodeIngest(cfg.Node, cfg.Script, logs,
		"--base", sim.Base, "--token", "sim-token", "--shards", strconv.Itoa(cfg.Shards),
		"--compress", compress, "--inflate", cfg.Inflate, "--intents", strconv.FormatUint(uint64(IngestIntents), 10))
	if err != nil {
		return IngestResult{}, err
	}
	defer node.stop()

	ready, err := node.waitReady(ctx, cfg.StartTimeout)
	if err != nil {
		return IngestResult{}, err
	}
	timer := time.NewTimer(cfg.Warmup)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return IngestResult{}, ctx.Err()
	case <-node.done:
		return IngestResult{}, node.exitErr()
	case <-timer.C:
	}

	// The window runs from one progress line to a later one: the script
	// samples its count and clock together, and the CPU is read as each line
	// arrives.
	p0, err := node.nextProgress(ctx, 0)
	if err != nil {
		return IngestResult{}, err
	}
	n0, s0 := mustProcessCPU(node.pid()), mustCPU(sim)
	g0, err := sim.stats(ctx)
	if err != nil {
		return IngestResult{}, err
	}
	p1, err := node.nextProgress(ctx, p0.TMS+cfg.Measure.Milliseconds())
	if err != nil {
		return IngestResult{}, err
	}
	n1, s1 := mustProcessCPU(node.pid()), mustCPU(sim)
	rss, _ := ProcessRSS(node.pid())
	g1, err := sim.stats(ctx)
	if err != nil {
		return IngestResult{}, err
	}

	r := IngestResult{
		Name: ready.name(), Shards: cfg.Shards, Compression: cfg.Compression, Rate: cfg.Rate,
		Window: time.Duration(p1.TMS-p0.TMS) * time.Millisecond, Events: p1.Events - p0.Events,
		Generated: g1.Events - g0.Events, CPUSeconds: (n1 - n0).Seconds(), SimCPUSeconds: (s1 - s0).Seconds(),
		AllocsPerEvent: -1, RSSBytes: rss,
	}
	r.EventsPerSec = float64(r.Events) / r.Window.Seconds()
	if r.CPUSeconds > 0 {
		r.EventsPerCPUSecond = float64(r.Events) / r.CPUSeconds
	}
	if closes, destroys := p1.Closes-p0.Closes, p1.Destroys-p0.Destroys; closes > 0 || destroys > 0 {
		return r, fmt.Errorf("loadtest: %d shard connections closed and %d torn down during the window (simulator: %s)",
			closes, destroys, sim.violations(ctx))
	}
	return r, nil
}

func mustProcessCPU(pid int) time.Duration {
	d, _ := ProcessCPU(pid)
	return d
}

// jsReady is the line ingest.mjs prints when every shard is READY.
type jsReady struct {
	Ready       bool   `json:"ready"`
	Shards      int    `json:"shards"`
	Library     string `json:"library"`
	Compression string `json:"compression"`
	Version     string `json:"version"`
}

// name is the client's name with its version, and the decompressor when
// there is one: "@discordjs/ws 2.0.4, zlib-stream (zlib-sync)".
func (r jsReady) name() string {
	n := r.Library + " " + r.Version
	if r.Compression != "" && r.Compression != "none" {
		n += ", " + r.Compression
	}
	return n
}

// jsProgress is one of ingest.mjs's periodic lines.
type jsProgress struct {
	TMS      int64 `json:"t_ms"`
	Events   int64 `json:"events"`
	Closes   int64 `json:"closes"`
	Destroys int64 `json:"destroys"`
}

// nodeIngest is a running ingest.mjs process. One goroutine reads its
// stdout, keeps the READY line and the latest progress line, then waits for
// the process; stop ends the process and that goroutine.
type nodeIngest struct {
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited and stdout is drained
	wake chan struct{} // signalled (cap 1) on every line

	mu       sync.Mutex
	ready    *jsReady
	progress jsProgress
	seen     bool  // a progress line arrived
	waitErr  error // the process's exit status, once done
	badLine  string
	tail     *tailWriter
}

func startNodeIngest(node, script string, logs io.Writer, args ...string) (*nodeIngest, error) {
	script, err := filepath.Abs(script)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(node, append([]string{script}, args...)...)
	cmd.Dir = filepath.Dir(script)
	n := &nodeIngest{cmd: cmd, done: make(chan struct{}), wake: make(chan struct{}, 1), tail: &tailWriter{max: 2048}}
	cmd.Stderr = io.MultiWriter(logs, n.tail)
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("loadtest: starting node: %w", err)
	}
	go n.read(out)
	return n, nil
}

func (n *nodeIngest) read(out io.Reader) {
	defer close(n.done)
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		line := sc.Bytes()
		var r jsReady
		var p jsProgress
		n.mu.Lock()
		switch {
		case json.Unmarshal(line, &r) == nil && r.Ready:
			n.ready = &r
		case json.Unmarshal(line, &p) == nil:
			n.progress, n.seen = p, true
		default:
			n.badLine = string(line)
		}
		n.mu.Unlock()
		select {
		case n.wake <- struct{}{}:
		default:
		}
	}
	_, _ = io.Copy(io.Discard, out)
	err := n.cmd.Wait()
	n.mu.Lock()
	n.waitErr = err
	n.mu.Unlock()
}

func (n *nodeIngest) pid() int { return n.cmd.Process.Pid }

// exitErr describes an early exit of the process.
func (n *nodeIngest) exitErr() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	msg := fmt.Sprintf("%v", n.waitErr)
	if n.badLine != "" {
		msg += fmt.Sprintf("; unexpected output %q", n.badLine)
	}
	if t := n.tail.String(); t != "" {
		msg += "; stderr: " + t
	}
	return fmt.Errorf("%w: %s", ErrClientExited, msg)
}

// waitReady waits for the READY line.
func (n *nodeIngest) waitReady(ctx context.Context, timeout time.Duration) (jsReady, error) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		n.mu.Lock()
		r := n.ready
		n.mu.Unlock()
		if r != nil {
			return *r, nil
		}
		select {
		case <-ctx.Done():
			return jsReady{}, ctx.Err()
		case <-n.done:
			return jsReady{}, n.exitErr()
		case <-deadline.C:
			return jsReady{}, fmt.Errorf("loadtest: node shards not READY after %v; stderr: %s", timeout, n.tail.String())
		case <-n.wake:
		}
	}
}

// nextProgress waits for a progress line newer than the current one with
// t_ms at least minT.
func (n *nodeIngest) nextProgress(ctx context.Context, minT int64) (jsProgress, error) {
	n.mu.Lock()
	cur, seen := n.progress, n.seen
	n.mu.Unlock()
	// A line is at most a few seconds away unless node is stuck.
	stuck := time.NewTimer(time.Duration(max(0, minT-cur.TMS))*time.Millisecond + 10*time.Second)
	defer stuck.Stop()
	for {
		select {
		case <-ctx.Done():
			return jsProgress{}, ctx.Err()
		case <-n.done:
			return jsProgress{}, n.exitErr()
		case <-stuck.C:
			return jsProgress{}, errors.New("loadtest: node stopped reporting progress")
		case <-n.wake:
		}
		n.mu.Lock()
		p, ok := n.progress, n.seen
		n.mu.Unlock()
		if ok && (!seen || p.TMS > cur.TMS) && p.TMS >= minT {
			return p, nil
		}
	}
}

// stop sends SIGTERM, waits up to 10 s, then kills the process, and waits
// for the reading goroutine.
func (n *nodeIngest) stop() {
	_ = n.cmd.Process.Signal(syscall.SIGTERM)
	t := time.NewTimer(10 * time.Second)
	defer t.Stop()
	select {
	case <-n.done:
	case <-t.C:
		_ = n.cmd.Process.Kill()
		<-n.done
	}
}

// lockedWriter serialises writes to w.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
