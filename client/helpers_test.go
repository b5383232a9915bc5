package client

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"

	"github.com/gatehouse-dev/gatehouse/internal/broker"
	"github.com/gatehouse-dev/gatehouse/internal/discord"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// testTimeout bounds every wait of a test, so that a bug fails fast instead
// of hanging.
const testTimeout = 10 * time.Second

// env is an embedded NATS server with JetStream and the event stream.
type env struct {
	ns     *server.Server
	url    string
	nc     *nats.Conn
	js     jetstream.JetStream
	stream jetstream.Stream
	subj   broker.Subjects
}

func newEnv(t testing.TB) *env {
	t.Helper()
	return newEnvPrefix(t, broker.DefaultPrefix, DefaultStream)
}

func newEnvPrefix(t testing.TB, prefix, stream string) *env {
	t.Helper()
	ns, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(),
		NoLog: true, NoSigs: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	ns.Start()
	t.Cleanup(func() {
		ns.Shutdown()
		ns.WaitForShutdown()
	})
	if !ns.ReadyForConnections(testTimeout) {
		t.Fatal("nats server not ready")
	}
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	subj := broker.Subjects{Prefix: prefix}
	st, err := js.CreateStream(t.Context(), jetstream.StreamConfig{
		Name:       stream,
		Subjects:   []string{subj.Events()},
		Storage:    jetstream.FileStorage,
		Duplicates: 2 * time.Minute,
	})
	if err != nil {
		t.Fatal(err)
	}
	return &env{ns: ns, url: ns.ClientURL(), nc: nc, js: js, stream: st, subj: subj}
}

// connect returns a client of e with cfg (URL filled in), closed at cleanup.
func (e *env) connect(t testing.TB, cfg Config) *Client {
	t.Helper()
	if cfg.URL == "" && cfg.Conn == nil {
		cfg.URL = e.url
	}
	if cfg.RetryDelay == 0 {
		cfg.RetryDelay = 5 * time.Millisecond
	}
	c, err := Connect(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// testEvent is one dispatch the tests publish.
type testEvent struct {
	typ   string
	seq   int64
	guild uint64
	raw   []byte
	d     []byte
}

func (ev testEvent) key(shard int, session string) string {
	return strconv.Itoa(shard) + ":" + session + ":" + strconv.FormatInt(ev.seq, 10)
}

// newTestEvent builds a dispatch frame as Discord would send it.
func newTestEvent(typ string, seq int64, guild uint64) testEvent {
	var d []byte
	switch {
	case guild == 0:
		d = fmt.Appendf(nil, `{"user_id":"80351110224678912","n":%d}`, seq)
	case typ == "GUILD_CREATE" || typ == "GUILD_UPDATE" || typ == "GUILD_DELETE":
		d = fmt.Appendf(nil, `{"id":"%d","name":"g","n":%d}`, guild, seq)
	default:
		d = fmt.Appendf(nil, `{"content":"hi","guild_id":"%d","n":%d}`, guild, seq)
	}
	return testEvent{typ: typ, seq: seq, guild: guild, raw: discord.AppendFrame(nil, typ, seq, discord.OpDispatch, d), d: d}
}

// guildOn returns the k-th guild ID that lands on shard of numShards.
func guildOn(shard, numShards, k int) uint64 {
	return uint64(k*numShards+shard)<<22 | uint64(k%4096)
}

// testBatch is one published batch.
type testBatch struct {
	shard, numShards, partition int
	session                     string
	events                      []testEvent
}

// publish publishes b with the headers a gateway node sets.
func (e *env) publish(t testing.TB, b testBatch) {
	t.Helper()
	body := broker.NewBody(nil)
	for _, ev := range b.events {
		body = broker.AppendRecord(body, ev.raw)
	}
	typ := ""
	if len(b.events) > 0 {
		typ = b.events[0].typ
	}
	e.publishRaw(t, string(e.subj.AppendEvent(nil, b.shard, b.partition, []byte(typ))), body, nats.Header{
		broker.HeaderMsgID:   {fmt.Sprintf("%d:%s:%d", b.shard, b.session, b.events[0].seq)},
		broker.HeaderShard:   {fmt.Sprintf("%d/%d", b.shard, b.numShards)},
		broker.HeaderSession: {b.session},
		broker.HeaderSeq:     {fmt.Sprintf("%d-%d", b.events[0].seq, b.events[len(b.events)-1].seq)},
	})
}

func (e *env) publishRaw(t testing.TB, subject string, body []byte, h nats.Header) {
	t.Helper()
	msg := nats.NewMsg(subject)
	msg.Data = body
	msg.Header = h
	if _, err := e.js.PublishMsg(t.Context(), msg); err != nil {
		t.Fatalf("publish %s: %v", subject, err)
	}
}

// gotEvent is a copy of an Event a handler received.
type gotEvent struct {
	Key         string
	Type        string
	Shard       int
	NumShards   int
	Seq         int64
	GuildID     uint64
	Raw, Data   string
	Redelivered bool
}

func copyEvent(ev *Event) gotEvent {
	return gotEvent{ev.Key(), ev.Type, ev.Shard, ev.NumShards, ev.Seq, ev.GuildID, string(ev.Raw), string(ev.Data), ev.Redelivered}
}

// consumer runs Consume in a goroutine.
type consumer struct {
	cancel context.CancelFunc
	done   chan error
}

func startConsume(t testing.TB, c *Client, h func(ctx context.Context, ev *Event) error) *consumer {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	cs := &consumer{cancel: cancel, done: make(chan error, 1)}
	go func() { cs.done <- c.Consume(ctx, h) }()
	t.Cleanup(func() { cs.stop(t) })
	return cs
}

// stop cancels Consume and returns its error; stopping twice is harmless.
func (cs *consumer) stop(t testing.TB) error {
	t.Helper()
	cs.cancel()
	select {
	case err, ok := <-cs.done:
		if ok {
			close(cs.done)
		}
		return err
	case <-time.After(testTimeout):
		t.Fatal("Consume did not return after cancel")
		return nil
	}
}

// recorder collects events until it has want of them.
type recorder struct {
	mu   sync.Mutex
	got  []gotEvent
	want int
	full chan struct{}
}

func newRecorder(want int) *recorder {
	return &recorder{want: want, full: make(chan struct{})}
}

func (r *recorder) handle(_ context.Context, ev *Event) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, copyEvent(ev))
	if len(r.got) == r.want {
		close(r.full)
	}
	return nil
}

// wait waits for want events and returns what was recorded.
func (r *recorder) wait(t *testing.T) []gotEvent {
	t.Helper()
	select {
	case <-r.full:
	case <-time.After(testTimeout):
		r.mu.Lock()
		n := len(r.got)
		r.mu.Unlock()
		t.Fatalf("received %d events, want %d", n, r.want)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]gotEvent(nil), r.got...)
}

func (r *recorder) snapshot() []gotEvent {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]gotEvent(nil), r.got...)
}

// waitFor polls cond until it holds: for server state that has no event to
// wait on.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(testTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// consumerInfo returns the server's view of a durable consumer.
func (e *env) consumerInfo(t *testing.T, name string) *jetstream.ConsumerInfo {
	t.Helper()
	cons, err := e.stream.Consumer(t.Context(), name)
	if err != nil {
		t.Fatal(err)
	}
	info, err := cons.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return info
}
