package natsbroker

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/gatehouse-dev/gatehouse/internal/broker"
)

func TestSessions(t *testing.T) {
	b := openTest(t, Config{})
	ctx := testCtx(t)

	if _, err := b.LoadSession(ctx, 3, 8); !errors.Is(err, broker.ErrNotFound) {
		t.Fatalf("LoadSession(3, 8) before save = %v, want ErrNotFound", err)
	}
	st := broker.SessionState{
		Shard: 3, NumShards: 8, SessionID: "abc", Seq: 42,
		ResumeGatewayURL: "wss://gateway-us-east1-b.discord.gg", Node: "node-1",
		Updated: time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC),
	}
	if err := b.SaveSession(ctx, st); err != nil {
		t.Fatal(err)
	}
	got, err := b.LoadSession(ctx, 3, 8)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(st, got); diff != "" {
		t.Errorf("LoadSession (-want +got):\n%s", diff)
	}

	// Same shard, other shard count: another key.
	if _, err := b.LoadSession(ctx, 3, 16); !errors.Is(err, broker.ErrNotFound) {
		t.Errorf("LoadSession(3, 16) = %v, want ErrNotFound", err)
	}
	entry, err := b.kv.Get(ctx, "8.3")
	if err != nil {
		t.Errorf(`session key "8.3": %v`, err)
	} else if entry.Revision() == 0 {
		t.Error(`session key "8.3" has revision 0`)
	}

	st.Seq = 99
	if err := b.SaveSession(ctx, st); err != nil {
		t.Fatal(err)
	}
	if got, err := b.LoadSession(ctx, 3, 8); err != nil || got.Seq != 99 {
		t.Errorf("LoadSession after overwrite = %+v, %v; want seq 99", got, err)
	}

	if err := b.DeleteSession(ctx, 3, 8, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := b.LoadSession(ctx, 3, 8); !errors.Is(err, broker.ErrNotFound) {
		t.Errorf("LoadSession after delete = %v, want ErrNotFound", err)
	}
	if err := b.DeleteSession(ctx, 3, 8, 0); err != nil {
		t.Errorf("DeleteSession of a deleted key = %v, want nil", err)
	}
	if err := b.DeleteSession(ctx, 0, 1, 0); err != nil {
		t.Errorf("DeleteSession of a missing key = %v, want nil", err)
	}
	if err := b.SaveSession(ctx, st); err != nil {
		t.Fatal(err)
	}
	if _, err := b.LoadSession(ctx, 3, 8); err != nil {
		t.Errorf("LoadSession after delete and save = %v", err)
	}
}

func TestSessionBadShard(t *testing.T) {
	b := openTest(t, Config{})
	ctx := testCtx(t)
	for _, tt := range []struct{ shard, num int }{{-1, 4}, {4, 4}, {0, 0}, {0, -2}} {
		if err := b.SaveSession(ctx, broker.SessionState{Shard: tt.shard, NumShards: tt.num}); !errors.Is(err, ErrBadShard) {
			t.Errorf("SaveSession(%d/%d) = %v, want ErrBadShard", tt.shard, tt.num, err)
		}
		if _, err := b.LoadSession(ctx, tt.shard, tt.num); !errors.Is(err, ErrBadShard) {
			t.Errorf("LoadSession(%d, %d) = %v, want ErrBadShard", tt.shard, tt.num, err)
		}
		if err := b.DeleteSession(ctx, tt.shard, tt.num, 0); !errors.Is(err, ErrBadShard) {
			t.Errorf("DeleteSession(%d, %d) = %v, want ErrBadShard", tt.shard, tt.num, err)
		}
	}
	if _, err := b.LastBatch(ctx, -1); !errors.Is(err, ErrBadShard) {
		t.Errorf("LastBatch(-1) = %v, want ErrBadShard", err)
	}
}

func TestLastBatch(t *testing.T) {
	b := openTest(t, Config{})
	ctx := testCtx(t)
	for _, shard := range []int{0, 1, 10} {
		if _, err := b.LastBatch(ctx, shard); !errors.Is(err, broker.ErrNotFound) {
			t.Errorf("LastBatch(%d) on an empty stream = %v, want ErrNotFound", shard, err)
		}
	}

	publishWait(t, b, newBatch(b, 1, "READY", "one", 1, "a"))
	publishWait(t, b, newBatch(b, 10, "MESSAGE_CREATE", "ten", 100, "a", "b", "c"))
	publishWait(t, b, newBatch(b, 1, "MESSAGE_CREATE", "one", 2, "a", "b"))
	// Shard 1, another partition and type: still shard 1's newest.
	other := newBatch(b, 1, "TYPING_START", "one", 4, "a", "b", "c", "d")
	other.Subject = string(b.Subjects().AppendEvent(nil, 1, 3, []byte("TYPING_START")))
	publishWait(t, b, other)
	publishWait(t, b, newBatch(b, 10, "MESSAGE_CREATE", "ten", 103, "a"))

	tests := []struct {
		shard int
		want  broker.LastBatch
	}{
		{1, broker.LastBatch{Session: "one", LastSeq: 7, NumShards: 16}},
		{10, broker.LastBatch{Session: "ten", LastSeq: 103, NumShards: 16}},
	}
	for _, tt := range tests {
		got, err := b.LastBatch(ctx, tt.shard)
		if err != nil {
			t.Errorf("LastBatch(%d): %v", tt.shard, err)
			continue
		}
		if got != tt.want {
			t.Errorf("LastBatch(%d) = %+v, want %+v", tt.shard, got, tt.want)
		}
	}
	for _, shard := range []int{0, 2, 100} {
		if _, err := b.LastBatch(ctx, shard); !errors.Is(err, broker.ErrNotFound) {
			t.Errorf("LastBatch(%d) = %v, want ErrNotFound", shard, err)
		}
	}
}

func TestParseSeq(t *testing.T) {
	tests := map[string]int64{"1-1": 1, "41-42": 42, "0-9223372036854775807": 1<<63 - 1}
	for in, want := range tests {
		if got, err := parseSeq(in); err != nil || got != want {
			t.Errorf("parseSeq(%q) = %d, %v; want %d, nil", in, got, err, want)
		}
	}
	for _, in := range []string{"", "5", "-", "a-b", "1-", "-2", "1-2-3"} {
		if _, err := parseSeq(in); !errors.Is(err, broker.ErrBadBatch) {
			t.Errorf("parseSeq(%q) error = %v, want ErrBadBatch", in, err)
		}
	}
}

func TestCoordinatorState(t *testing.T) {
	b := openTest(t, Config{})
	ctx := testCtx(t)
	if got, err := b.LoadCoordinator(ctx); got != nil || err != nil {
		t.Fatalf("before save: %q, %v; want nil, nil", got, err)
	}
	// What an older coordinator saved in the session bucket.
	if _, err := b.kv.Put(ctx, "coordinator", []byte(`{"next_token":7}`)); err != nil {
		t.Fatal(err)
	}
	if got, err := b.LoadCoordinator(ctx); string(got) != `{"next_token":7}` || err != nil {
		t.Errorf("after save: %q, %v", got, err)
	}
	// It does not disturb the sessions.
	if _, err := b.LoadSession(ctx, 0, 1); !errors.Is(err, broker.ErrNotFound) {
		t.Errorf("LoadSession(0, 1) = %v, want ErrNotFound", err)
	}
}

// TestSessionFencing: two nodes share the bucket. Once the node with the
// newer lease saved the shard's state, the old holder can neither overwrite
// nor delete it, whatever its cached revision says; unleased and newer
// writes go through.
func TestSessionFencing(t *testing.T) {
	old := openTest(t, Config{Listen: "127.0.0.1:0"})
	cur := openTest(t, Config{URL: old.ClientURL(), Name: "new"})
	ctx := testCtx(t)
	st := func(seq int64, lease uint64) broker.SessionState {
		return broker.SessionState{Shard: 2, NumShards: 4, SessionID: "s", Seq: seq, Lease: lease}
	}
	load := func() broker.SessionState {
		t.Helper()
		got, err := cur.LoadSession(ctx, 2, 4)
		if err != nil {
			t.Fatal(err)
		}
		return got
	}

	// The old holder saves twice (the second from its cached revision).
	for _, seq := range []int64{10, 11} {
		if err := old.SaveSession(ctx, st(seq, 7)); err != nil {
			t.Fatalf("save under the current lease: %v", err)
		}
	}
	// The new holder loads it and saves under its newer lease.
	if got := load(); got.Seq != 11 || got.Lease != 7 {
		t.Fatalf("loaded %+v, want seq 11 lease 7", got)
	}
	if err := cur.SaveSession(ctx, st(12, 9)); err != nil {
		t.Fatalf("save under a newer lease: %v", err)
	}
	// The old holder's cached revision is stale, its lease older: refused.
	if err := old.SaveSession(ctx, st(50, 7)); !errors.Is(err, broker.ErrFenced) {
		t.Errorf("stale save = %v, want ErrFenced", err)
	}
	if err := old.DeleteSession(ctx, 2, 4, 7); !errors.Is(err, broker.ErrFenced) {
		t.Errorf("stale delete = %v, want ErrFenced", err)
	}
	if got := load(); got.Seq != 12 || got.Lease != 9 {
		t.Errorf("after the stale writes: %+v, want seq 12 lease 9 kept", got)
	}
	// The new holder keeps saving; a third, newer one takes over from it.
	if err := cur.SaveSession(ctx, st(13, 9)); err != nil {
		t.Errorf("save by the holder: %v", err)
	}
	if err := old.SaveSession(ctx, st(14, 10)); err != nil {
		t.Errorf("save under the newest lease: %v", err)
	}
	if err := cur.SaveSession(ctx, st(15, 9)); !errors.Is(err, broker.ErrFenced) {
		t.Errorf("save by the superseded holder = %v, want ErrFenced", err)
	}
	// Delete under the newest lease, then anyone may create it again.
	if err := old.DeleteSession(ctx, 2, 4, 10); err != nil {
		t.Errorf("delete by the holder: %v", err)
	}
	if _, err := cur.LoadSession(ctx, 2, 4); !errors.Is(err, broker.ErrNotFound) {
		t.Errorf("after delete: %v, want ErrNotFound", err)
	}
	if err := cur.DeleteSession(ctx, 2, 4, 9); err != nil {
		t.Errorf("delete of a deleted key: %v", err)
	}
	if err := cur.SaveSession(ctx, st(1, 3)); err != nil {
		t.Errorf("save over a delete marker: %v", err)
	}
	// Without a lease, a save is a plain overwrite (no coordinator).
	if err := old.SaveSession(ctx, st(2, 0)); err != nil {
		t.Errorf("unleased save: %v", err)
	}
	if got := load(); got.Seq != 2 || got.Lease != 0 {
		t.Errorf("after the unleased save: %+v", got)
	}
}

func TestBlobsAndConsumers(t *testing.T) {
	b := openTest(t, Config{})
	ctx := testCtx(t)
	if got, err := b.LoadBlob(ctx, "history"); err != nil || got != nil {
		t.Errorf("LoadBlob before save = %q, %v; want nil, nil", got, err)
	}
	if err := b.SaveBlob(ctx, "history", []byte("h1")); err != nil {
		t.Fatal(err)
	}
	if got, err := b.LoadBlob(ctx, "history"); err != nil || string(got) != "h1" {
		t.Errorf("LoadBlob = %q, %v", got, err)
	}
	for _, bad := range []string{"", "8.3", "3", "a.b", "a b", strings.Repeat("x", 65)} {
		if err := b.SaveBlob(ctx, bad, nil); !errors.Is(err, ErrBadKey) {
			t.Errorf("SaveBlob(%q) = %v, want ErrBadKey", bad, err)
		}
	}
	publishWait(t, b, newBatch(b, 1, "MESSAGE_CREATE", "s", 1, "x"))
	publishWait(t, b, newBatch(b, 1, "MESSAGE_CREATE", "s", 2, "y"))
	if _, err := b.stream.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{Durable: "bot", AckPolicy: jetstream.AckExplicitPolicy}); err != nil {
		t.Fatal(err)
	}
	lag, err := b.Consumers(ctx)
	if err != nil || len(lag) != 1 || lag[0].Name != "bot" || lag[0].Pending != 2 {
		t.Errorf("Consumers = %+v, %v; want bot with 2 pending", lag, err)
	}
}
