package natsbroker

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/broker"
)

// TestKVCompareAndSet: every write is a compare-and-set, and the errors
// are broker's.
func TestKVCompareAndSet(t *testing.T) {
	b := openTest(t, Config{})
	ctx := testCtx(t)
	kv := b.Control()
	rev, err := kv.Create(ctx, "lease.4.1", []byte("a"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Create(ctx, "lease.4.1", []byte("b")); !errors.Is(err, broker.ErrConflict) {
		t.Errorf("second create: %v, want ErrConflict", err)
	}
	if _, err := kv.Update(ctx, "lease.4.1", []byte("b"), rev+10); !errors.Is(err, broker.ErrConflict) {
		t.Errorf("update at a wrong revision: %v, want ErrConflict", err)
	}
	rev2, err := kv.Update(ctx, "lease.4.1", []byte("b"), rev)
	if err != nil || rev2 <= rev {
		t.Fatalf("update: %d %v", rev2, err)
	}
	if err := kv.Delete(ctx, "lease.4.1", rev); !errors.Is(err, broker.ErrConflict) {
		t.Errorf("delete at a stale revision: %v, want ErrConflict", err)
	}
	val, got, err := kv.Get(ctx, "lease.4.1")
	if err != nil || string(val) != "b" || got != rev2 {
		t.Errorf("get: %q %d %v", val, got, err)
	}
	if err := kv.Delete(ctx, "lease.4.1", rev2); err != nil {
		t.Fatal(err)
	}
	if _, _, err := kv.Get(ctx, "lease.4.1"); !errors.Is(err, broker.ErrNotFound) {
		t.Errorf("get after delete: %v, want ErrNotFound", err)
	}
	if _, err := kv.Create(ctx, "lease.4.1", []byte("c")); err != nil {
		t.Errorf("create over a deleted key: %v", err)
	}
	kv.Create(ctx, "lease.4.2", []byte("d"))
	kv.Create(ctx, "coordinator", []byte("e"))
	list, err := kv.List(ctx, "lease")
	if err != nil || len(list) != 2 || list[0].Key != "lease.4.1" || string(list[1].Value) != "d" {
		t.Errorf("list lease: %+v %v", list, err)
	}
}

// TestLiveBucketExpires: a record of the live bucket expires TTL after
// its last write, and a watch sees it go; a rewrite keeps it.
func TestLiveBucketExpires(t *testing.T) {
	b := openTest(t, Config{LiveTTL: time.Second})
	ctx := testCtx(t)
	live := b.Live()
	if ttl, err := live.TTL(ctx); err != nil || ttl != time.Second {
		t.Fatalf("TTL %v %v", ttl, err)
	}
	events, err := live.Watch(ctx, "node.>")
	if err != nil {
		t.Fatal(err)
	}
	if e := <-events; e.Key != "" {
		t.Fatalf("first event %+v, want the end of the (empty) initial values", e)
	}
	rev, err := live.Create(ctx, "node.a", []byte("1"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := live.Create(ctx, "node.b", []byte("1")); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	// node.a is rewritten every 300ms for 2s; node.b is left to expire.
	deadline := time.After(2 * time.Second)
	tick := time.NewTicker(300 * time.Millisecond)
	defer tick.Stop()
	var bGone time.Duration
loop:
	for {
		select {
		case <-tick.C:
			if rev, err = live.Update(ctx, "node.a", []byte("1"), rev); err != nil {
				t.Fatalf("renewal: %v", err)
			}
		case e := <-events:
			if e.Key == "node.a" && e.Deleted {
				t.Fatalf("node.a expired although renewed")
			}
			if e.Key == "node.b" && e.Deleted && bGone == 0 {
				bGone = time.Since(start)
			}
		case <-deadline:
			break loop
		}
	}
	if bGone < 900*time.Millisecond || bGone > 1900*time.Millisecond {
		t.Errorf("node.b expired after %v, want about the TTL (1s)", bGone)
	}
	if _, err := live.Update(ctx, "node.b", []byte("1"), 2); !errors.Is(err, broker.ErrConflict) {
		t.Errorf("renewing an expired record: %v, want ErrConflict", err)
	}
}

// TestBindWithoutManage: a broker that does not manage binds to what
// exists and says clearly what is missing.
func TestBindWithoutManage(t *testing.T) {
	srv := openTest(t, Config{Listen: "127.0.0.1:0"})
	openTest(t, Config{URL: srv.ClientURL(), Stream: "OTHER", Prefix: "other", Manage: true}) // a manager creates it
	ctx := testCtx(t)
	_, err := Open(ctx, Config{URL: srv.ClientURL(), Stream: "MISSING", Prefix: "missing"})
	if err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("open without the stream: %v, want a clear 'does not exist'", err)
	}
	b, err := Open(ctx, Config{URL: srv.ClientURL()})
	if err != nil {
		t.Fatalf("bind to the server's stream and buckets: %v", err)
	}
	defer b.Close()
	if b.Control() == nil || b.Live() == nil {
		t.Error("control buckets not bound")
	}
}

func TestReplicasFor(t *testing.T) {
	for _, tc := range []struct {
		want, have, got int
		err             bool
	}{
		{0, 0, 1, false}, {0, 3, 3, false}, {3, 0, 3, false}, {3, 1, 3, false}, {3, 3, 3, false}, {1, 3, 0, true},
	} {
		b := &Broker{cfg: Config{Replicas: tc.want}}
		got, err := b.replicasFor("stream", "S", tc.have)
		if got != tc.got || (err != nil) != tc.err {
			t.Errorf("replicasFor(want %d, have %d) = %d, %v; want %d (error %v)", tc.want, tc.have, got, err, tc.got, tc.err)
		}
		if err != nil && (!errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "refusing to lower")) {
			t.Errorf("error %v: want ErrConfig saying it refuses to lower", err)
		}
	}
}
