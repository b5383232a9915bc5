package gateway

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/broker"
	"github.com/gatehouse-dev/gatehouse/internal/discord"
	"github.com/gatehouse-dev/gatehouse/internal/discord/codec"
)

// nopBroker acknowledges every batch at once, in the caller's goroutine:
// the benchmark measures the gateway's own path, not a broker's.
type nopBroker struct{ batches, events int }

func (b *nopBroker) MaxBody() int { return 1 << 20 }
func (b *nopBroker) Publish(ctx context.Context, c *broker.Batch, done func(*broker.Batch, error)) error {
	b.batches++
	b.events += c.Count
	done(c, nil)
	return nil
}
func (b *nopBroker) LoadSession(context.Context, int, int) (broker.SessionState, error) {
	return broker.SessionState{}, broker.ErrNotFound
}
func (b *nopBroker) SaveSession(context.Context, broker.SessionState) error { return nil }
func (b *nopBroker) DeleteSession(context.Context, int, int, uint64) error  { return nil }
func (b *nopBroker) LastBatch(context.Context, int) (broker.LastBatch, error) {
	return broker.LastBatch{}, broker.ErrNotFound
}

// messageCreate is a ~1 KB guild MESSAGE_CREATE in Discord's key order.
func messageCreate(seq int64) []byte {
	d := fmt.Sprintf(`{"type":0,"tts":false,"timestamp":"2026-11-22T20:00:00.000000+00:00","pinned":false,"nonce":"13%08d","mentions":[],"mention_roles":[],"mention_everyone":false,"member":{"roles":["1184612345678901234"],"premium_since":null,"pending":false,"nick":null,"mute":false,"joined_at":"2021-03-04T05:06:07.000000+00:00","flags":0,"deaf":false,"communication_disabled_until":null,"banner":null,"avatar":null},"id":"13101%014d","flags":0,"embeds":[],"edited_timestamp":null,"content":"%s","components":[],"channel_id":"1184612345678905678","author":{"username":"someone","public_flags":0,"id":"1184612345678909999","global_name":"Someone","discriminator":"0","clan":null,"avatar_decoration_data":null,"avatar":"0123456789abcdef0123456789abcdef"},"attachments":[],"guild_id":"1184612345678900000"}`,
		seq, seq, "the quick brown fox jumps over the lazy dog, again and again, until this message is long enough to look like a real one with a few mentions and a link https://example.com/some/path?query=1 and then some more words to pad it out to a kilobyte")
	return discord.AppendFrame(nil, "MESSAGE_CREATE", seq, discord.OpDispatch, []byte(d))
}

// benchRunner returns a shard runner in the ready state, publishing into b.
func benchRunner(tb testing.TB, b *nopBroker, comp codec.Compression) *shardRunner {
	n, err := New(Config{Token: "t", Publisher: b, Store: b, Compression: comp, NoCompression: comp == codec.None})
	if err != nil {
		tb.Fatal(err)
	}
	n.runCtx, n.pubCtx = context.Background(), context.Background()
	n.bot.URL = "wss://gw"
	r := newShardRunner(n, 0, 1, Session{ID: "S", ResumeURL: "wss://gw"}, 0, nil)
	if comp != codec.None {
		r.dec, _ = codec.NewDecoder(comp, codec.DecoderConfig{})
	}
	now := time.Now()
	r.m.Start(now, nil)
	r.m.Connected(now)
	h, _ := discord.ScanHeader([]byte(`{"t":null,"s":null,"op":10,"d":{"heartbeat_interval":41250}}`))
	r.m.Receive(now, h, nil, nil)
	h, _ = discord.ScanHeader([]byte(`{"t":"RESUMED","s":1,"op":0,"d":{}}`))
	r.m.Receive(now, h, nil, nil)
	if r.m.State() != StateReady {
		tb.Fatalf("state %s", r.m.State())
	}
	tb.Cleanup(func() { r.timer.Stop(); r.batch.timer.Stop() })
	return r
}

// BenchmarkHotPath measures the gateway's per-event path after the socket
// read: inflate, scan, state machine, batching (the broker acknowledges at
// once). Allocations per event are the target: zero.
func BenchmarkHotPath(b *testing.B) {
	for _, comp := range []codec.Compression{codec.None, codec.ZlibStream} {
		name := string(comp)
		if name == "" {
			name = "none"
		}
		b.Run(name, func(b *testing.B) {
			const frames = 4096
			enc, err := codec.NewEncoder(comp, codec.EncoderConfig{Level: 1})
			if err != nil {
				b.Fatal(err)
			}
			msgs := make([][]byte, frames)
			var bytes int
			for i := range msgs {
				p := messageCreate(int64(i + 2))
				bytes += len(p)
				msgs[i], err = enc.Encode(nil, p)
				if err != nil {
					b.Fatal(err)
				}
			}
			typ := comp != codec.None
			nb := &nopBroker{}
			r := benchRunner(b, nb, comp)
			b.SetBytes(int64(bytes / frames))
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if i%frames == 0 && i > 0 {
					// A fresh stream: new connection, same session.
					b.StopTimer()
					r = benchRunner(b, nb, comp)
					b.StartTimer()
				}
				if err := r.handle(typ, msgs[i%frames]); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			if nb.batches > 0 {
				b.ReportMetric(float64(nb.events)/float64(nb.batches), "events/batch")
			}
		})
	}
}

func TestHotPathNoAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	nb := &nopBroker{}
	r := benchRunner(t, nb, codec.None)
	msgs := make([][]byte, 600)
	for i := range msgs {
		msgs[i] = messageCreate(int64(i + 2))
	}
	i := 0
	// Warm the pools first.
	for ; i < 100; i++ {
		if err := r.handle(false, msgs[i]); err != nil {
			t.Fatal(err)
		}
	}
	allocs := testing.AllocsPerRun(400, func() {
		if err := r.handle(false, msgs[i]); err != nil {
			t.Fatal(err)
		}
		i++
	})
	if allocs > 0.05 {
		t.Errorf("%.3f allocations per event on the hot path, want 0", allocs)
	}
}

// smallBroker has a small message limit, to exercise large payloads.
type smallBroker struct {
	nopBroker
	bodies [][]byte
}

func (b *smallBroker) MaxBody() int { return 8192 }
func (b *smallBroker) Publish(ctx context.Context, c *broker.Batch, done func(*broker.Batch, error)) error {
	b.bodies = append(b.bodies, append([]byte(nil), c.Body...))
	return b.nopBroker.Publish(ctx, c, done)
}

func TestLargePayloadIsCompressedNotLost(t *testing.T) {
	sb := &smallBroker{}
	n, err := New(Config{Token: "t", Publisher: sb, Store: sb, NoCompression: true, BatchCompression: BatchNone})
	if err != nil {
		t.Fatal(err)
	}
	n.runCtx, n.pubCtx = context.Background(), context.Background()
	n.bot.URL = "wss://gw"
	r := newShardRunner(n, 0, 1, Session{ID: "S", ResumeURL: "wss://gw"}, 0, nil)
	t.Cleanup(func() { r.timer.Stop(); r.batch.timer.Stop() })
	now := time.Now()
	r.m.Start(now, nil)
	r.m.Connected(now)
	h, _ := discord.ScanHeader([]byte(`{"t":null,"s":null,"op":10,"d":{"heartbeat_interval":41250}}`))
	r.m.Receive(now, h, nil, nil)
	h, _ = discord.ScanHeader([]byte(`{"t":"RESUMED","s":1,"op":0,"d":{}}`))
	r.m.Receive(now, h, nil, nil)

	// A 40 KB GUILD_CREATE does not fit in an 8 KiB message plain.
	big := discord.AppendFrame(nil, "GUILD_CREATE", 2, discord.OpDispatch,
		[]byte(`{"id":"1184612345678900000","members":[`+strings.Repeat(`{"user":{"id":"1","username":"someone"},"roles":[]},`, 800)+`{}]}`))
	if err := r.handle(false, big); err != nil {
		t.Fatal(err)
	}
	if err := r.handle(false, messageCreate(3)); err != nil {
		t.Fatal(err)
	}
	if err := r.batch.flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	var got [][]byte
	for _, body := range sb.bodies {
		if len(body) > sb.MaxBody() {
			t.Errorf("a %d-byte body was published; the limit is %d", len(body), sb.MaxBody())
		}
		if err := broker.Records(body, func(p []byte) error { got = append(got, append([]byte(nil), p...)); return nil }); err != nil {
			t.Fatal(err)
		}
	}
	if len(got) != 2 || !bytes.Equal(got[0], big) || !bytes.Equal(got[1], messageCreate(3)) {
		t.Errorf("published %d payloads; want the large one whole, then the next", len(got))
	}
	if sb.bodies[0][0] != broker.FormatZstd {
		t.Errorf("the large payload's body has format %d, want zstd", sb.bodies[0][0])
	}
}

// TestBatchTrickleAndBurst checks when a batch is published: an event of a
// trickling shard (nothing more read, the previous event longer than the
// linger ago) at once; events arriving together, or while more is already
// read, only when the linger passes.
func TestBatchTrickleAndBurst(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		nb := &lockedBroker{}
		r := benchRunner(t, &nb.nopBroker, codec.None)
		r.n.pub = nb
		seq := int64(2)
		event := func(more bool) {
			t.Helper()
			r.more = more
			if err := r.handle(false, messageCreate(seq)); err != nil {
				t.Fatal(err)
			}
			seq++
		}
		linger := r.n.cfg.BatchLinger
		time.Sleep(time.Second)
		event(false)
		if got := nb.count(); got != 1 {
			t.Fatalf("a trickling event: %d batches published at once, want 1", got)
		}
		time.Sleep(linger / 5)
		event(true)  // more is read: wait
		event(false) // drained, but the previous event was just now: wait
		if got := nb.count(); got != 1 {
			t.Fatalf("a burst: %d batches published before the linger, want still 1", got)
		}
		time.Sleep(linger + time.Millisecond)
		synctest.Wait()
		if got, ev := nb.count(), nb.eventCount(); got != 2 || ev != 3 {
			t.Fatalf("after the linger: %d batches, %d events; want 2 and 3", got, ev)
		}
		time.Sleep(time.Second)
		event(false)
		if got := nb.count(); got != 3 {
			t.Fatalf("trickling again: %d batches, want 3", got)
		}
	})
}

// lockedBroker is a nopBroker safe to publish into from the linger timer.
type lockedBroker struct {
	mu sync.Mutex
	nopBroker
}

func (b *lockedBroker) Publish(ctx context.Context, c *broker.Batch, done func(*broker.Batch, error)) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.nopBroker.Publish(ctx, c, done)
}

func (b *lockedBroker) count() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.batches
}

func (b *lockedBroker) eventCount() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.events
}
