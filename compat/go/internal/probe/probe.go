// Package probe holds what the per-package compatibility programs share:
// their command-line options, a recorder that tracks READY and dispatch
// events per shard, and the one-line JSON summary each program prints.
package probe

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"os/signal"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// DefaultIntents is GUILDS | GUILD_MESSAGES | GUILD_MESSAGE_REACTIONS |
// GUILD_MESSAGE_TYPING | MESSAGE_CONTENT: enough for the simulator's event
// generator to send MESSAGE_CREATE and friends.
const DefaultIntents = 1 | 1<<9 | 1<<10 | 1<<11 | 1<<15

// Options are the flags every program accepts.
type Options struct {
	// Base is the simulator's base URL, e.g. http://127.0.0.1:8787.
	Base string
	// Token is the bot token, without the "Bot " prefix.
	Token string
	// ShardCount is the total shard count; 0 lets the client ask
	// /gateway/bot.
	ShardCount int
	// ShardIDs are the shards this process runs; empty means all of them.
	ShardIDs []int
	// Events is how many dispatch events other than READY, RESUMED and
	// GUILD_CREATE the program waits for, summed over its shards.
	Events int
	// Timeout bounds the whole run.
	Timeout time.Duration
	// Intents sent in IDENTIFY.
	Intents int
	// Verbose turns on the client's debug logging (on stderr).
	Verbose bool
}

// Parse parses args into Options. extra, when non-nil, registers
// program-specific flags on the same FlagSet before parsing.
func Parse(name string, args []string, extra func(fs *flag.FlagSet)) (Options, error) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	var o Options
	var ids string
	fs.StringVar(&o.Base, "base", "http://127.0.0.1:8787", "simulator base `URL` (REST is BASE/api/vN)")
	fs.StringVar(&o.Token, "token", "", "bot `token` without the Bot prefix")
	fs.IntVar(&o.ShardCount, "shards", 0, "total shard count (0 = ask /gateway/bot)")
	fs.StringVar(&ids, "shard-ids", "", "comma-separated shard `ids` this process runs (empty = all)")
	fs.IntVar(&o.Events, "events", 10, "dispatch events to wait for (besides READY and GUILD_CREATE)")
	fs.DurationVar(&o.Timeout, "timeout", 60*time.Second, "give up after this long")
	fs.IntVar(&o.Intents, "intents", DefaultIntents, "gateway intents")
	fs.BoolVar(&o.Verbose, "v", false, "client debug logging on stderr")
	if extra != nil {
		extra(fs)
	}
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	o.Base = strings.TrimRight(o.Base, "/")
	if o.Token == "" {
		return o, errors.New("-token is required")
	}
	for f := range strings.SplitSeq(ids, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil || n < 0 {
			return o, fmt.Errorf("-shard-ids: bad shard id %q", f)
		}
		o.ShardIDs = append(o.ShardIDs, n)
	}
	if len(o.ShardIDs) > 0 && o.ShardCount == 0 {
		return o, errors.New("-shard-ids needs -shards")
	}
	return o, nil
}

// Handler returns a stderr log handler at debug level when verbose, warn
// otherwise.
func (o Options) Handler() slog.Handler {
	level := slog.LevelWarn
	if o.Verbose {
		level = slog.LevelDebug
	}
	return slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})
}

// ShardResult is what one shard reached.
type ShardResult struct {
	ID     int  `json:"id"`
	Ready  bool `json:"ready"`
	Readys int  `json:"readies"`
	Events int  `json:"events"`
	// InvalidSessions counts op 9 payloads the client reported receiving.
	InvalidSessions int   `json:"invalid_sessions"`
	ReadyMs         int64 `json:"ready_ms,omitempty"`
}

// Summary is the JSON line a program prints on stdout when it ends.
type Summary struct {
	Client     string        `json:"client"`
	Version    string        `json:"version"`
	OK         bool          `json:"ok"`
	ShardCount int           `json:"shard_count"`
	Shards     []ShardResult `json:"shards"`
	Events     int           `json:"events"`
	// InvalidSessions counts op 9 payloads the client reported receiving.
	InvalidSessions int `json:"invalid_sessions"`
	// InvalidSessionD counts those op 9 payloads by their d value ("true",
	// "false", "unknown" when the client does not say).
	InvalidSessionD map[string]int `json:"invalid_session_d"`
	EventTypes      map[string]int `json:"event_types"`
	// Notes are facts the client reported about itself, such as the
	// transport compression it used.
	Notes     map[string]string `json:"notes"`
	ElapsedMs int64             `json:"elapsed_ms"`
	Error     string            `json:"error,omitempty"`
}

// Recorder counts READYs and events per shard and says when the goal is met.
// Its methods are safe for concurrent use (clients call handlers from
// several goroutines).
type Recorder struct {
	client, version string
	want            int
	start           time.Time

	mu         sync.Mutex
	shardCount int
	shards     map[int]*ShardResult
	events     int
	invalid    int
	invalidD   map[string]int
	notes      map[string]string
	types      map[string]int
	done       chan struct{}
	closed     bool
}

// NewRecorder returns a Recorder for client (whose version is read from the
// build info of module modPath) waiting for READY on every shard in ids and
// for events dispatch events in total.
func NewRecorder(client, modPath string, events int) *Recorder {
	return &Recorder{
		client: client, version: ModuleVersion(modPath), want: events, start: time.Now(),
		shards: map[int]*ShardResult{}, types: map[string]int{}, invalidD: map[string]int{}, notes: map[string]string{}, done: make(chan struct{}),
	}
}

// Shards fills in what the command line left open: the shard count from
// Discord's recommendation (GET /gateway/bot) and, without -shard-ids, every
// shard of that count.
func Shards(count int, ids []int, recommended int) (int, []int) {
	if count == 0 {
		count = recommended
	}
	if len(ids) == 0 {
		for i := range count {
			ids = append(ids, i)
		}
	}
	return count, ids
}

// Expect declares the shards (and total count) the program runs. Call it
// once the client has decided them (it may ask /gateway/bot).
func (r *Recorder) Expect(shardCount int, ids []int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.shardCount = shardCount
	for _, id := range ids {
		if r.shards[id] == nil {
			r.shards[id] = &ShardResult{ID: id}
		}
	}
	r.checkLocked()
}

// Ready records a READY on shard id.
func (r *Recorder) Ready(id int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.shard(id)
	if !s.Ready {
		s.ReadyMs = time.Since(r.start).Milliseconds()
	}
	s.Ready = true
	s.Readys++
	r.checkLocked()
}

// InvalidSession records that shard id received op 9 (as the client
// reports it, usually through its logs); a negative id means the shard is
// unknown and only the total counts it. d is the payload's d as the client
// reported it: "true", "false", or "unknown" when the client does not say.
func (r *Recorder) InvalidSession(id int, d string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.invalid++
	r.invalidD[d]++
	if id >= 0 {
		r.shard(id).InvalidSessions++
	}
}

// Note records a fact the client reported about itself.
func (r *Recorder) Note(key, value string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.notes[key] = value
}

// Event records a dispatch of type t on shard id. READY, RESUMED and
// GUILD_CREATE are counted by type but not towards the goal.
func (r *Recorder) Event(id int, t string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.types[t]++
	switch t {
	case "READY", "RESUMED", "GUILD_CREATE", "":
		return
	}
	r.shard(id).Events++
	r.events++
	r.checkLocked()
}

func (r *Recorder) shard(id int) *ShardResult {
	s := r.shards[id]
	if s == nil {
		s = &ShardResult{ID: id}
		r.shards[id] = s
	}
	return s
}

func (r *Recorder) metLocked() bool {
	if len(r.shards) == 0 || r.events < r.want {
		return false
	}
	for _, s := range r.shards {
		if !s.Ready {
			return false
		}
	}
	return true
}

func (r *Recorder) checkLocked() {
	if !r.closed && r.shardCount > 0 && r.metLocked() {
		r.closed = true
		close(r.done)
	}
}

// Done is closed when every expected shard is READY and enough events came.
func (r *Recorder) Done() <-chan struct{} { return r.done }

// Summary returns the current state; err, when non-nil, marks it failed.
func (r *Recorder) Summary(err error) Summary {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := Summary{
		Client: r.client, Version: r.version, ShardCount: r.shardCount,
		Events: r.events, InvalidSessions: r.invalid, InvalidSessionD: map[string]int{},
		EventTypes: map[string]int{}, ElapsedMs: time.Since(r.start).Milliseconds(),
	}
	maps.Copy(s.EventTypes, r.types)
	maps.Copy(s.InvalidSessionD, r.invalidD)
	s.Notes = maps.Clone(r.notes)
	for _, sh := range r.shards {
		s.Shards = append(s.Shards, *sh)
	}
	slices.SortFunc(s.Shards, func(a, b ShardResult) int { return a.ID - b.ID })
	s.OK = err == nil && r.metLocked()
	if err != nil {
		s.Error = err.Error()
	} else if !s.OK {
		s.Error = "goal not met"
	}
	return s
}

// Print writes the summary as one JSON line.
func (s Summary) Print(w io.Writer) {
	b, _ := json.Marshal(s)
	fmt.Fprintf(w, "%s\n", b)
}

// Wait blocks until the recorder is done, ctx ends (timeout or signal) or
// fatal receives an error from the client, and returns the reason it
// stopped early (nil when done).
func (r *Recorder) Wait(ctx context.Context, fatal <-chan error) error {
	select {
	case <-r.done:
		return nil
	case err := <-fatal:
		return err
	case <-ctx.Done():
		return fmt.Errorf("gave up: %w", context.Cause(ctx))
	}
}

// Context returns a context that ends on SIGINT/SIGTERM or after timeout.
func Context(timeout time.Duration) (context.Context, context.CancelFunc) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	ctx, cancel := context.WithTimeoutCause(ctx, timeout, fmt.Errorf("timeout after %s", timeout))
	return ctx, func() { cancel(); stop() }
}

// ModuleVersion reports the version of dependency modPath linked into the
// running binary, or "unknown".
func ModuleVersion(modPath string) string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	for _, d := range bi.Deps {
		if d.Path == modPath {
			if d.Replace != nil {
				return d.Replace.Version
			}
			return d.Version
		}
	}
	return "unknown"
}

// Finish prints the summary for err and returns the process exit code.
func (r *Recorder) Finish(err error) int {
	s := r.Summary(err)
	s.Print(os.Stdout)
	if s.OK {
		return 0
	}
	return 1
}
