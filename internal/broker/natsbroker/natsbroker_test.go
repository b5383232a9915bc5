package natsbroker

import (
	"context"
	"errors"
	"github.com/google/go-cmp/cmp"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"

	"github.com/gatehouse-dev/gatehouse/internal/broker"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// openTest opens a Broker closed at the end of the test. Without URL it
// runs an embedded server in a fresh temporary directory, in-process only
// unless Listen is set.
func openTest(t testing.TB, cfg Config) *Broker {
	t.Helper()
	if cfg.URL == "" {
		if cfg.DataDir == "" {
			cfg.DataDir = t.TempDir()
		}
		if cfg.Listen == "" {
			cfg.NoListen = true
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b, err := Open(ctx, cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

// testCtx is a context bounded well below the test timeout.
func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// newBatch builds a records batch of payloads for shard on partition 0.
func newBatch(b *Broker, shard int, eventType, session string, first int64, payloads ...string) *broker.Batch {
	body := broker.NewBody(nil)
	for _, p := range payloads {
		body = broker.AppendRecord(body, []byte(p))
	}
	n := max(len(payloads), 1)
	return &broker.Batch{
		Subject:   string(b.Subjects().AppendEvent(nil, shard, 0, []byte(eventType))),
		Shard:     shard,
		NumShards: 16,
		Session:   session,
		FirstSeq:  first,
		LastSeq:   first + int64(n) - 1,
		Count:     n,
		Body:      body,
	}
}

// publishWait publishes batch and waits for its done callback.
func publishWait(t testing.TB, b *Broker, batch *broker.Batch) {
	t.Helper()
	ctx := testCtx(t)
	errc := make(chan error, 1)
	if err := b.Publish(ctx, batch, func(_ *broker.Batch, err error) { errc <- err }); err != nil {
		t.Fatalf("Publish(%s): %v", batch.MsgID(), err)
	}
	select {
	case err := <-errc:
		if err != nil {
			t.Fatalf("done(%s) = %v, want nil", batch.MsgID(), err)
		}
	case <-ctx.Done():
		t.Fatalf("done(%s) not called", batch.MsgID())
	}
}

// streamMsgs is the number of messages in b's stream.
func streamMsgs(t testing.TB, b *Broker) uint64 {
	t.Helper()
	info, err := b.stream.Info(testCtx(t))
	if err != nil {
		t.Fatalf("stream info: %v", err)
	}
	return info.State.Msgs
}

// readStream reads n messages from the start of b's stream with an
// ordered consumer.
func readStream(t testing.TB, b *Broker, n int) []jetstream.Msg {
	t.Helper()
	ctx := testCtx(t)
	cons, err := b.stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatalf("OrderedConsumer: %v", err)
	}
	it, err := cons.Messages()
	if err != nil {
		t.Fatalf("Messages: %v", err)
	}
	defer it.Stop()
	msgs := make([]jetstream.Msg, 0, n)
	for len(msgs) < n {
		m, err := it.Next(jetstream.NextContext(ctx))
		if err != nil {
			t.Fatalf("reading message %d of %d: %v", len(msgs)+1, n, err)
		}
		msgs = append(msgs, m)
	}
	return msgs
}

// logRecorder is a slog.Handler that hands Warn and above records to a
// channel, dropping them when the channel is full.
type logRecorder struct {
	records chan slog.Record
}

func newLogRecorder() *logRecorder { return &logRecorder{records: make(chan slog.Record, 64)} }

func (h *logRecorder) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelWarn }
func (h *logRecorder) Handle(_ context.Context, r slog.Record) error {
	select {
	case h.records <- r.Clone():
	default:
	}
	return nil
}
func (h *logRecorder) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *logRecorder) WithGroup(string) slog.Handler      { return h }

// attr returns the string form of r's attribute key.
func attr(r slog.Record, key string) string {
	var v string
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == key {
			v = a.Value.String()
			return false
		}
		return true
	})
	return v
}

func TestConfigInvalid(t *testing.T) {
	dir := t.TempDir()
	tests := map[string]Config{
		"no data dir":       {},
		"bad listen":        {DataDir: dir, Listen: "localhost"},
		"bad port":          {DataDir: dir, Listen: "127.0.0.1:99999"},
		"payload too large": {DataDir: dir, NoListen: true, MaxPayload: 65 << 20},
		"prefix wildcard":   {DataDir: dir, NoListen: true, Prefix: "gh.*"},
		"prefix space":      {DataDir: dir, NoListen: true, Prefix: "g h"},
		"prefix dots":       {DataDir: dir, NoListen: true, Prefix: "a..b"},
		"stream dot":        {DataDir: dir, NoListen: true, Stream: "A.B"},
		"bucket space":      {DataDir: dir, NoListen: true, SessionBucket: "a b"},
		"negative pending":  {DataDir: dir, NoListen: true, MaxPending: -1},
		"negative replicas": {DataDir: dir, NoListen: true, Replicas: -1},
	}
	for name, cfg := range tests {
		t.Run(name, func(t *testing.T) {
			b, err := Open(t.Context(), cfg)
			if !errors.Is(err, ErrConfig) {
				if b != nil {
					b.Close()
				}
				t.Fatalf("Open(%+v) error = %v, want ErrConfig", cfg, err)
			}
		})
	}
}

func TestConfigDefaults(t *testing.T) {
	got, err := Config{DataDir: "d", MaxAge: time.Minute}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if got.Duplicates != time.Minute {
		t.Errorf("Duplicates = %v, want MaxAge %v", got.Duplicates, time.Minute)
	}
	if got.Listen != DefaultListen || got.Stream != DefaultStream || got.SessionBucket != DefaultSessionBucket ||
		got.ControlBucket != DefaultControlBucket || got.LiveBucket != DefaultLiveBucket || !got.Manage ||
		got.MaxPending != DefaultMaxPending || got.MaxPayload != DefaultMaxPayload || got.SyncInterval != time.Second ||
		got.Prefix != broker.DefaultPrefix || got.Replicas != 0 || got.Logger == nil {
		t.Errorf("defaults not applied: %+v", got)
	}
}

func TestOpenStreamConfig(t *testing.T) {
	b := openTest(t, Config{MaxBytes: 1 << 30})
	info, err := b.stream.Info(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	c := info.Config
	if c.Name != DefaultStream || len(c.Subjects) != 1 || c.Subjects[0] != "gatehouse.ev.>" ||
		c.Storage != jetstream.FileStorage || c.Retention != jetstream.LimitsPolicy || c.Discard != jetstream.DiscardOld ||
		c.MaxAge != DefaultMaxAge || c.MaxBytes != 1<<30 || c.Duplicates != DefaultDuplicates ||
		c.MaxMsgSize != DefaultMaxPayload || c.Replicas != 1 {
		t.Errorf("stream config = %+v", c)
	}
	if b.StreamName() != DefaultStream {
		t.Errorf("StreamName() = %q, want %q", b.StreamName(), DefaultStream)
	}
	if b.ClientURL() != "" {
		t.Errorf("ClientURL() with NoListen = %q, want empty", b.ClientURL())
	}
	if b.MaxBody() != DefaultMaxPayload-headerMargin {
		t.Errorf("MaxBody() = %d, want %d", b.MaxBody(), DefaultMaxPayload-headerMargin)
	}
	st, err := b.kv.Status(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	if st.Bucket() != DefaultSessionBucket || st.History() != 1 {
		t.Errorf("bucket %q history %d, want %q history 1", st.Bucket(), st.History(), DefaultSessionBucket)
	}
}

func TestServerLogsAtDebug(t *testing.T) {
	h := &debugRecorder{}
	openTest(t, Config{Logger: slog.New(h)})
	n, above := h.counts()
	if n == 0 {
		t.Error("no embedded server logs at Debug level")
	}
	if above != 0 {
		t.Errorf("%d embedded server logs above Debug level, want 0", above)
	}
}

// debugRecorder counts the embedded server's records.
type debugRecorder struct {
	mu        sync.Mutex
	n, aboveN int
}

func (h *debugRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (h *debugRecorder) Handle(_ context.Context, r slog.Record) error {
	if attr(r, "server_level") == "" {
		return nil
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.n++
	if r.Level > slog.LevelDebug {
		h.aboveN++
	}
	return nil
}
func (h *debugRecorder) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *debugRecorder) WithGroup(string) slog.Handler      { return h }
func (h *debugRecorder) counts() (n, above int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.n, h.aboveN
}

func TestRestart(t *testing.T) {
	dir := t.TempDir()
	ctx := testCtx(t)
	cfg := Config{DataDir: dir, NoListen: true}
	b, err := Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		publishWait(t, b, newBatch(b, 2, "MESSAGE_CREATE", "s1", int64(10*i+1), "a", "b"))
	}
	want := broker.SessionState{Shard: 2, NumShards: 16, SessionID: "s1", Seq: 22, ResumeGatewayURL: "wss://r", Updated: time.Unix(1700000000, 0).UTC()}
	if err := b.SaveSession(ctx, want); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}

	b = openTest(t, cfg)
	if n := streamMsgs(t, b); n != 3 {
		t.Errorf("after restart the stream holds %d messages, want 3", n)
	}
	got, err := b.LoadSession(ctx, 2, 16)
	if err != nil {
		t.Fatalf("LoadSession after restart: %v", err)
	}
	if !cmp.Equal(got, want) {
		t.Errorf("LoadSession after restart = %+v, want %+v", got, want)
	}
	lb, err := b.LastBatch(ctx, 2)
	if err != nil || lb != (broker.LastBatch{Session: "s1", LastSeq: 22, NumShards: 16}) {
		t.Errorf("LastBatch(2) after restart = %+v, %v; want {s1 22 16}, nil", lb, err)
	}
}

func TestExternalURL(t *testing.T) {
	first := openTest(t, Config{Listen: "127.0.0.1:0"})
	url := first.ClientURL()
	if !strings.HasPrefix(url, "nats://127.0.0.1:") || strings.HasSuffix(url, ":0") || strings.HasSuffix(url, ":-1") {
		t.Fatalf("ClientURL() = %q, want nats://127.0.0.1:<port>", url)
	}
	second := openTest(t, Config{URL: url, Name: "second"})
	if second.ClientURL() != url {
		t.Errorf("second.ClientURL() = %q, want %q", second.ClientURL(), url)
	}
	if second.MaxBody() != first.MaxBody() {
		t.Errorf("second.MaxBody() = %d, want the server's %d", second.MaxBody(), first.MaxBody())
	}
	publishWait(t, second, newBatch(second, 5, "GUILD_CREATE", "ext", 7, "x"))
	if n := streamMsgs(t, first); n != 1 {
		t.Errorf("first sees %d messages, want 1", n)
	}
	lb, err := first.LastBatch(testCtx(t), 5)
	if err != nil || lb != (broker.LastBatch{Session: "ext", LastSeq: 7, NumShards: 16}) {
		t.Errorf("first.LastBatch(5) = %+v, %v; want {ext 7 16}, nil", lb, err)
	}
	st := broker.SessionState{Shard: 5, NumShards: 16, SessionID: "ext", Seq: 7}
	if err := second.SaveSession(testCtx(t), st); err != nil {
		t.Fatal(err)
	}
	if got, err := first.LoadSession(testCtx(t), 5, 16); err != nil || got.SessionID != "ext" {
		t.Errorf("first.LoadSession = %+v, %v; want the session saved through second", got, err)
	}
}

func TestClosed(t *testing.T) {
	b := openTest(t, Config{})
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	ctx := testCtx(t)
	if err := b.Publish(ctx, newBatch(b, 0, "X", "s", 1, "p"), nil); !errors.Is(err, broker.ErrClosed) {
		t.Errorf("Publish after Close = %v, want ErrClosed", err)
	}
	if _, err := b.LoadSession(ctx, 0, 1); !errors.Is(err, broker.ErrClosed) {
		t.Errorf("LoadSession after Close = %v, want ErrClosed", err)
	}
	if err := b.SaveSession(ctx, broker.SessionState{NumShards: 1}); !errors.Is(err, broker.ErrClosed) {
		t.Errorf("SaveSession after Close = %v, want ErrClosed", err)
	}
	if err := b.DeleteSession(ctx, 0, 1, 0); !errors.Is(err, broker.ErrClosed) {
		t.Errorf("DeleteSession after Close = %v, want ErrClosed", err)
	}
	if _, err := b.LastBatch(ctx, 0); !errors.Is(err, broker.ErrClosed) {
		t.Errorf("LastBatch after Close = %v, want ErrClosed", err)
	}
	if err := b.ServeCommands(ctx, func(int) bool { return true }, func(int, []byte) error { return nil }); !errors.Is(err, broker.ErrClosed) {
		t.Errorf("ServeCommands after Close = %v, want ErrClosed", err)
	}
}
