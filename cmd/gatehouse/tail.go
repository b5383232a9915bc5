package main

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gatehouse-dev/gatehouse/client"
	"github.com/gatehouse-dev/gatehouse/internal/broker"
)

const tailSummary = `Print the events gateway nodes publish, one JSON line per event:
{"shard":…,"seq":…,"key":…,"lease":…,"type":…,"guild_id":"…","d":…}, or with -count a running summary
(events per second, totals by type and by shard). It reads through an ephemeral
consumer unless -durable names one, and never changes what other consumers see.`

func runTail(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("tail", tailSummary, stderr)
	var (
		url      = fs.String("nats", "nats://127.0.0.1:4222", "NATS server `URL`")
		prefix   = fs.String("prefix", broker.DefaultPrefix, "subject prefix the gateways publish under")
		stream   = fs.String("stream", client.DefaultStream, "JetStream stream holding the events")
		types    = fs.String("types", "", "event types to show, comma-separated, e.g. MESSAGE_CREATE,GUILD_CREATE (empty = all)")
		shards   = fs.String("shards", "", "shards to show, e.g. 0,1,5-9 (empty = all)")
		count    = fs.Bool("count", false, "print a running summary every -interval instead of the events")
		interval = fs.Duration("interval", time.Second, "summary interval with -count")
		limit    = fs.Int("n", 0, "stop after `N` events (0 = run until interrupted)")
		from     = fs.String("from", "new", "where a new consumer starts: new (events from now on) or all (the oldest event the stream holds)")
		durable  = fs.String("durable", "", "durable consumer `NAME`: resume where the last run with this name stopped and keep the position (default: an ephemeral consumer)")
		natsAuth = addNATSClientFlags(fs)
		exclusiv = fs.Bool("exclusive", false, "with -durable: this is the only process reading through NAME, so what a killed previous run left unacknowledged is delivered again at once (not after the 30 s ack wait)")
	)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg := client.Config{
		URL:       *url,
		Name:      "gatehouse-tail",
		Prefix:    *prefix,
		Stream:    *stream,
		Consumer:  *durable,
		Exclusive: *exclusiv,
		NKeyFile:  *natsAuth.nkey,
		CAFile:    *natsAuth.ca,
		Logger:    slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	}
	switch *from {
	case "new":
		cfg.DeliverNew = true
	case "all":
	default:
		return usageError{fmt.Sprintf("tail: -from %q: want new or all", *from)}
	}
	for t := range strings.SplitSeq(*types, ",") {
		if t = strings.ToUpper(strings.TrimSpace(t)); t != "" {
			cfg.Types = append(cfg.Types, t)
		}
	}
	if *shards != "" {
		list, err := parseShardList(*shards)
		if err != nil {
			return usageError{fmt.Sprintf("tail: -shards: %v", err)}
		}
		cfg.Shards = list
	}
	if *limit < 0 {
		return usageError{fmt.Sprintf("tail: -n %d: want 0 or more", *limit)}
	}
	if *interval <= 0 {
		return usageError{fmt.Sprintf("tail: -interval %v: want a positive duration", *interval)}
	}

	c, err := client.Connect(ctx, cfg)
	if errors.Is(err, client.ErrInvalidConfig) {
		return usageError{fmt.Sprintf("tail: %v", err)}
	}
	if err != nil {
		return fmt.Errorf("tail: %w", err)
	}
	defer c.Close()

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	t := &tailer{out: stdout, limit: *limit, stop: cancel}
	var wg sync.WaitGroup
	if *count {
		t.sum = newTailSummary()
		wg.Go(func() { t.summarize(ctx, *interval) })
	}
	err = c.Consume(ctx, t.handle)
	cancel()
	wg.Wait()
	if t.sum != nil {
		t.printSummary(true)
	}
	if err == nil {
		err = t.writeErr
	}
	if err != nil {
		return fmt.Errorf("tail: %w", err)
	}
	return nil
}

// errTailDone refuses events past -n; the client gives them back.
var errTailDone = errors.New("tail: enough events")

// tailer prints events, or counts them for the summary.
type tailer struct {
	out   io.Writer
	limit int
	stop  context.CancelFunc

	mu       sync.Mutex
	seen     int
	line     []byte
	writeErr error
	sum      *tailSum // nil unless -count
}

func (t *tailer) handle(_ context.Context, ev *client.Event) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.limit > 0 && t.seen >= t.limit {
		return errTailDone
	}
	t.seen++
	if t.limit > 0 && t.seen == t.limit {
		t.stop()
	}
	if t.sum != nil {
		t.sum.add(ev)
		return nil
	}
	t.line = appendEventJSON(t.line[:0], ev)
	if _, err := t.out.Write(t.line); err != nil {
		t.writeErr = err
		t.stop()
		return err
	}
	return nil
}

// appendEventJSON appends ev as one JSON line.
func appendEventJSON(b []byte, ev *client.Event) []byte {
	b = append(b, `{"shard":`...)
	b = strconv.AppendInt(b, int64(ev.Shard), 10)
	b = append(b, `,"seq":`...)
	b = strconv.AppendInt(b, ev.Seq, 10)
	b = append(b, `,"key":`...)
	b = strconv.AppendQuote(b, ev.Key()) // digits, ':' and Discord's hex session ID
	b = append(b, `,"lease":`...)
	b = strconv.AppendUint(b, ev.Lease, 10)
	b = append(b, `,"type":`...)
	if ev.Type == "" {
		b = append(b, "null"...)
	} else {
		b = strconv.AppendQuote(b, ev.Type) // event names are [A-Z0-9_]: the same in JSON
	}
	b = append(b, `,"guild_id":`...)
	if ev.GuildID == 0 {
		b = append(b, "null"...)
	} else {
		b = append(b, '"')
		b = strconv.AppendUint(b, ev.GuildID, 10)
		b = append(b, '"')
	}
	b = append(b, `,"d":`...)
	var buf bytes.Buffer
	if len(ev.Data) == 0 {
		b = append(b, "null"...)
	} else if err := json.Compact(&buf, ev.Data); err == nil {
		b = append(b, buf.Bytes()...)
	} else {
		q, _ := json.Marshal(string(ev.Data)) // not JSON: show it as a string
		b = append(b, q...)
	}
	return append(b, "}\n"...)
}

// tailSum counts events for -count.
type tailSum struct {
	start, last time.Time
	total       int
	sinceLast   int
	byType      map[string]int
	byShard     map[int]int
}

func newTailSummary() *tailSum {
	now := time.Now()
	return &tailSum{start: now, last: now, byType: map[string]int{}, byShard: map[int]int{}}
}

func (s *tailSum) add(ev *client.Event) {
	s.total++
	s.sinceLast++
	s.byType[ev.Type]++
	s.byShard[ev.Shard]++
}

func (t *tailer) summarize(ctx context.Context, every time.Duration) {
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			t.printSummary(false)
		}
	}
}

// printSummary prints one summary line: the rate since the previous line
// (since the start for the final one), the total and the top ten types and
// shards.
func (t *tailer) printSummary(final bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := t.sum
	now := time.Now()
	n, since := s.sinceLast, s.last
	if final {
		n, since = s.total, s.start
	}
	rate := 0.0
	if d := now.Sub(since).Seconds(); d > 0 {
		rate = float64(n) / d
	}
	s.sinceLast, s.last = 0, now
	var b strings.Builder
	if final {
		b.WriteString("final ")
	}
	fmt.Fprintf(&b, "%s %.1f ev/s total %d | types:", now.Format("15:04:05"), rate, s.total)
	for _, kv := range top(s.byType, 10) {
		name := kv.k
		if name == "" {
			name = "null"
		}
		fmt.Fprintf(&b, " %s=%d", name, kv.n)
	}
	b.WriteString(" | shards:")
	for _, kv := range top(s.byShard, 10) {
		fmt.Fprintf(&b, " %d=%d", kv.k, kv.n)
	}
	b.WriteByte('\n')
	io.WriteString(t.out, b.String())
}

type counted[K cmp.Ordered] struct {
	k K
	n int
}

// top returns the n largest counts of m, largest first, ties by key.
func top[K cmp.Ordered](m map[K]int, n int) []counted[K] {
	all := make([]counted[K], 0, len(m))
	for k, c := range m {
		all = append(all, counted[K]{k, c})
	}
	slices.SortFunc(all, func(a, b counted[K]) int {
		if c := cmp.Compare(b.n, a.n); c != 0 {
			return c
		}
		return cmp.Compare(a.k, b.k)
	})
	return all[:min(n, len(all))]
}
