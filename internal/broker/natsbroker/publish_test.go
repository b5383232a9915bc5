package natsbroker

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/gatehouse-dev/gatehouse/internal/broker"
)

func TestPublishConcurrent(t *testing.T) {
	const (
		shards   = 4
		perShard = 2500
		total    = shards * perShard
	)
	b := openTest(t, Config{})
	ctx := testCtx(t)

	var calls [total]atomic.Int32
	var failed atomic.Int32
	var wg sync.WaitGroup
	wg.Add(total)
	done := func(batch *broker.Batch, err error) {
		if err != nil {
			failed.Add(1)
		}
		calls[batch.Shard*perShard+int(batch.FirstSeq-1)/2].Add(1)
		wg.Done()
	}
	var pubs sync.WaitGroup
	errs := make(chan error, shards)
	for shard := range shards {
		pubs.Go(func() {
			for i := range perShard {
				batch := newBatch(b, shard, "MESSAGE_CREATE", "sess"+strconv.Itoa(shard), int64(2*i+1), "one", "two")
				if err := b.Publish(ctx, batch, done); err != nil {
					errs <- fmt.Errorf("shard %d batch %d: %w", shard, i, err)
					return
				}
			}
		})
	}
	pubs.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	wg.Wait()
	if n := failed.Load(); n != 0 {
		t.Errorf("%d done callbacks had an error", n)
	}
	if n := streamMsgs(t, b); n != total {
		t.Errorf("stream holds %d messages, want %d", n, total)
	}

	// Per-shard order: every shard's first sequence numbers increase.
	last := make([]int64, shards)
	for i, m := range readStream(t, b, total) {
		h := m.Headers()
		shard, _, _ := strings.Cut(h.Get(broker.HeaderShard), "/")
		s, err := strconv.Atoi(shard)
		if err != nil || s < 0 || s >= shards {
			t.Fatalf("message %d: shard header %q", i, h.Get(broker.HeaderShard))
		}
		first, _, _ := strings.Cut(h.Get(broker.HeaderSeq), "-")
		seq, err := strconv.ParseInt(first, 10, 64)
		if err != nil {
			t.Fatalf("message %d: seq header %q", i, h.Get(broker.HeaderSeq))
		}
		if seq <= last[s] {
			t.Fatalf("message %d: shard %d first seq %d after %d", i, s, seq, last[s])
		}
		last[s] = seq
	}

	// Close drains; no callback runs again.
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	for i := range calls {
		if n := calls[i].Load(); n != 1 {
			t.Fatalf("batch %d: done called %d times, want 1", i, n)
		}
	}
}

func TestPublishMessage(t *testing.T) {
	b := openTest(t, Config{Prefix: "gh"})
	batch := newBatch(b, 3, "MESSAGE_CREATE", "abc", 41, `{"t":"MESSAGE_CREATE","s":41}`, `{"t":"MESSAGE_CREATE","s":42}`)
	batch.Lease = 1763856000123456
	publishWait(t, b, batch)
	m := readStream(t, b, 1)[0]
	if got, want := m.Subject(), "gh.ev.3.0.MESSAGE_CREATE"; got != want {
		t.Errorf("subject = %q, want %q", got, want)
	}
	got := map[string]string{}
	for k, v := range m.Headers() {
		got[k] = v[0]
	}
	if broker.HeaderMsgID != jetstream.MsgIDHeader {
		t.Errorf("broker.HeaderMsgID = %q, JetStream deduplicates on %q", broker.HeaderMsgID, jetstream.MsgIDHeader)
	}
	want := map[string]string{
		broker.HeaderMsgID:   "3:abc:41",
		broker.HeaderShard:   "3/16",
		broker.HeaderSession: "abc",
		broker.HeaderSeq:     "41-42",
		broker.HeaderLease:   "1763856000123456",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("headers (-want +got):\n%s", diff)
	}
	var records []string
	if err := broker.Records(m.Data(), func(p []byte) error { records = append(records, string(p)); return nil }); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{`{"t":"MESSAGE_CREATE","s":41}`, `{"t":"MESSAGE_CREATE","s":42}`}, records); diff != "" {
		t.Errorf("records (-want +got):\n%s", diff)
	}
}

func TestPublishDedup(t *testing.T) {
	b := openTest(t, Config{})
	publishWait(t, b, newBatch(b, 1, "READY", "s", 1, "a"))
	publishWait(t, b, newBatch(b, 1, "READY", "s", 1, "a"))
	publishWait(t, b, newBatch(b, 1, "READY", "s", 1, "a different body, same id"))
	if n := streamMsgs(t, b); n != 1 {
		t.Errorf("stream holds %d messages after 3 publishes of one ID, want 1", n)
	}
	publishWait(t, b, newBatch(b, 1, "READY", "s", 2, "b"))
	if n := streamMsgs(t, b); n != 2 {
		t.Errorf("stream holds %d messages, want 2", n)
	}
}

func TestPublishRejects(t *testing.T) {
	b := openTest(t, Config{})
	ok := newBatch(b, 0, "X", "s", 1, "p")
	with := func(f func(*broker.Batch)) *broker.Batch {
		c := *ok
		f(&c)
		return &c
	}
	tests := map[string]struct {
		batch *broker.Batch
		want  error
	}{
		"nil":              {nil, broker.ErrBadBatch},
		"empty body":       {with(func(c *broker.Batch) { c.Body = nil }), broker.ErrBadBatch},
		"too large":        {with(func(c *broker.Batch) { c.Body = make([]byte, b.MaxBody()+1) }), broker.ErrTooLarge},
		"other prefix":     {with(func(c *broker.Batch) { c.Subject = "other.ev.0.0.X" }), broker.ErrBadBatch},
		"command":          {with(func(c *broker.Batch) { c.Subject = "gatehouse.cmd.0" }), broker.ErrBadBatch},
		"bare prefix":      {with(func(c *broker.Batch) { c.Subject = "gatehouse.ev." }), broker.ErrBadBatch},
		"wildcard":         {with(func(c *broker.Batch) { c.Subject = "gatehouse.ev.0.*.X" }), broker.ErrBadBatch},
		"space":            {with(func(c *broker.Batch) { c.Subject = "gatehouse.ev.0.0.X Y" }), broker.ErrBadBatch},
		"empty subject":    {with(func(c *broker.Batch) { c.Subject = "" }), broker.ErrBadBatch},
		"prefix lookalike": {with(func(c *broker.Batch) { c.Subject = "gatehousex.ev.0.0.X" }), broker.ErrBadBatch},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			err := b.Publish(t.Context(), tt.batch, func(*broker.Batch, error) { t.Error("done called for a rejected batch") })
			if !errors.Is(err, tt.want) {
				t.Errorf("Publish = %v, want %v", err, tt.want)
			}
		})
	}
	if n := streamMsgs(t, b); n != 0 {
		t.Errorf("stream holds %d messages, want 0", n)
	}
}

func TestPublishLargeBody(t *testing.T) {
	b := openTest(t, Config{})
	payload := bytes.Repeat([]byte("x"), 3<<20) // above NATS's default 1 MiB
	batch := newBatch(b, 0, "GUILD_CREATE", "s", 1, string(payload))
	if len(batch.Body) >= b.MaxBody() {
		t.Fatalf("body %d not below MaxBody %d", len(batch.Body), b.MaxBody())
	}
	publishWait(t, b, batch)
	m, err := b.stream.GetMsg(testCtx(t), 1)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(m.Data, batch.Body) {
		t.Errorf("stored body of %d bytes, want the %d published", len(m.Data), len(batch.Body))
	}

	// A body of exactly MaxBody fits too, headers included.
	batch = newBatch(b, 0, "GUILD_CREATE", "s", 2, "")
	batch.Body = append(batch.Body, make([]byte, b.MaxBody()-len(batch.Body))...)
	publishWait(t, b, batch)
}

func TestPublishBackPressure(t *testing.T) {
	const maxPending = 4
	b := openTest(t, Config{MaxPending: maxPending})
	ctx := testCtx(t)

	// The first done callback blocks, so the ack goroutine holds all four
	// batches in flight.
	entered, release := make(chan struct{}), make(chan struct{})
	var mu sync.Mutex
	var order []int64
	allDone := make(chan struct{})
	done := func(batch *broker.Batch, err error) {
		if err != nil {
			t.Errorf("done(%s) = %v", batch.MsgID(), err)
		}
		if batch.FirstSeq == 1 {
			close(entered)
			<-release
		}
		mu.Lock()
		order = append(order, batch.FirstSeq)
		n := len(order)
		mu.Unlock()
		if n == maxPending+2 {
			close(allDone)
		}
	}
	for i := range maxPending {
		if err := b.Publish(ctx, newBatch(b, 0, "X", "s", int64(i+1), "p"), done); err != nil {
			t.Fatal(err)
		}
	}
	<-entered
	if n := len(b.sem); n != maxPending {
		t.Errorf("%d batches in flight, want %d", n, maxPending)
	}

	// The window is full: Publish blocks until its context ends.
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	err := b.Publish(short, newBatch(b, 0, "X", "s", 5, "p"), done)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Publish with a full window = %v, want DeadlineExceeded", err)
	}

	// Unblocking the callback lets blocked publishers through.
	published := make(chan error, 2)
	go func() {
		for seq := int64(5); seq <= 6; seq++ {
			published <- b.Publish(ctx, newBatch(b, 0, "X", "s", seq, "p"), done)
		}
	}()
	close(release)
	for range 2 {
		if err := <-published; err != nil {
			t.Fatalf("Publish after release: %v", err)
		}
	}
	<-allDone
	mu.Lock()
	defer mu.Unlock()
	if diff := cmp.Diff([]int64{1, 2, 3, 4, 5, 6}, order); diff != "" {
		t.Errorf("done order (-want +got):\n%s", diff)
	}
	if n := streamMsgs(t, b); n != 6 {
		t.Errorf("stream holds %d messages, want 6", n)
	}
}

func TestPublishBlockedUntilClose(t *testing.T) {
	b := openTest(t, Config{MaxPending: 1})
	ctx := testCtx(t)
	entered, release := make(chan struct{}), make(chan struct{})
	if err := b.Publish(ctx, newBatch(b, 0, "X", "s", 1, "p"), func(*broker.Batch, error) {
		close(entered)
		<-release
	}); err != nil {
		t.Fatal(err)
	}
	<-entered
	blocked := make(chan error, 1)
	go func() { blocked <- b.Publish(ctx, newBatch(b, 0, "X", "s", 2, "p"), nil) }()
	closed := make(chan error, 1)
	go func() { closed <- b.Close() }()
	if err := <-blocked; !errors.Is(err, broker.ErrClosed) {
		t.Errorf("blocked Publish during Close = %v, want ErrClosed", err)
	}
	close(release)
	if err := <-closed; err != nil {
		t.Errorf("Close = %v", err)
	}
}

// TestPublishRetry deletes the stream under a publisher: the batch fails,
// is retried with a warning, and is stored once the stream is back.
func TestPublishRetry(t *testing.T) {
	rec := newLogRecorder()
	b := openTest(t, Config{Logger: slog.New(rec)})
	ctx := testCtx(t)
	streamCfg := b.stream.CachedInfo().Config
	if err := b.js.DeleteStream(ctx, b.StreamName()); err != nil {
		t.Fatal(err)
	}

	batch := newBatch(b, 7, "MESSAGE_CREATE", "s", 100, "p")
	errc := make(chan error, 1)
	if err := b.Publish(ctx, batch, func(_ *broker.Batch, err error) { errc <- err }); err != nil {
		t.Fatal(err)
	}
	r := waitWarn(t, rec)
	if got := attr(r, "msg_id"); got != batch.MsgID() {
		t.Errorf("retry warning msg_id = %q, want %q", got, batch.MsgID())
	}
	if _, err := b.js.CreateOrUpdateStream(ctx, streamCfg); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-errc:
		if err != nil {
			t.Fatalf("done = %v, want nil after the stream is back", err)
		}
	case <-ctx.Done():
		t.Fatal("done not called after the stream is back")
	}
	if n := streamMsgs(t, b); n != 1 {
		t.Errorf("stream holds %d messages, want 1", n)
	}
	lb, err := b.LastBatch(ctx, 7)
	if err != nil || lb.LastSeq != 100 {
		t.Errorf("LastBatch(7) = %+v, %v; want seq 100", lb, err)
	}
}

// TestCloseGivesUp closes a broker whose batch cannot be stored: done gets
// an error and Close returns.
func TestCloseGivesUp(t *testing.T) {
	rec := newLogRecorder()
	b := openTest(t, Config{Logger: slog.New(rec), DrainTimeout: 100 * time.Millisecond})
	ctx := testCtx(t)
	if err := b.js.DeleteStream(ctx, b.StreamName()); err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	if err := b.Publish(ctx, newBatch(b, 0, "X", "s", 1, "p"), func(_ *broker.Batch, err error) { errc <- err }); err != nil {
		t.Fatal(err)
	}
	waitWarn(t, rec)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err == nil {
		t.Error("done = nil for a batch never stored")
	}
}

// waitWarn returns the next "publish failed, retrying" record.
func waitWarn(t *testing.T, rec *logRecorder) slog.Record {
	t.Helper()
	ctx := testCtx(t)
	for {
		select {
		case r := <-rec.records:
			if r.Message == "publish failed, retrying" {
				return r
			}
		case <-ctx.Done():
			t.Fatal("no retry warning logged")
		}
	}
}

func TestBackoff(t *testing.T) {
	want := []time.Duration{0, 50 * time.Millisecond, 100 * time.Millisecond, 200 * time.Millisecond,
		400 * time.Millisecond, 800 * time.Millisecond, 1600 * time.Millisecond, 2 * time.Second, 2 * time.Second}
	for i, w := range want {
		if got := backoff(i + 1); got != w {
			t.Errorf("backoff(%d) = %v, want %v", i+1, got, w)
		}
	}
	if got := backoff(1000); got != retryMaxBackoff {
		t.Errorf("backoff(1000) = %v, want %v", got, retryMaxBackoff)
	}
}

// BenchmarkPublish publishes batches of 32 dispatches of 1 KiB each from
// one goroutine, the shape of a busy shard, and waits for every ack.
func BenchmarkPublish(b *testing.B) {
	const perBatch = 32
	br := openTest(b, Config{})
	payload := bytes.Repeat([]byte("x"), 1024)
	body := broker.NewBody(nil)
	for range perBatch {
		body = broker.AppendRecord(body, payload)
	}
	subject := string(br.Subjects().AppendEvent(nil, 0, 0, []byte("MESSAGE_CREATE")))
	ctx := context.Background()
	var wg sync.WaitGroup
	var failed atomic.Int64
	done := func(_ *broker.Batch, err error) {
		if err != nil {
			failed.Add(1)
		}
		wg.Done()
	}
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	start := time.Now()
	seq := int64(1)
	for b.Loop() {
		batch := &broker.Batch{Subject: subject, Shard: 0, NumShards: 1, Session: "bench",
			FirstSeq: seq, LastSeq: seq + perBatch - 1, Count: perBatch, Body: body}
		seq += perBatch
		wg.Add(1)
		if err := br.Publish(ctx, batch, done); err != nil {
			b.Fatal(err)
		}
	}
	wg.Wait()
	elapsed := time.Since(start)
	if n := failed.Load(); n != 0 {
		b.Fatalf("%d batches failed", n)
	}
	events := float64(seq-1) / elapsed.Seconds()
	b.ReportMetric(events, "events/s")
	b.ReportMetric(events/perBatch, "batches/s")
}
