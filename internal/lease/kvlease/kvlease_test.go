package kvlease_test

import (
	"context"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/gatehouse-dev/gatehouse/internal/broker/natsbroker"
	"github.com/gatehouse-dev/gatehouse/internal/lease/kvlease"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// open starts an embedded server with a live bucket of ttl, or connects
// to url.
func open(t *testing.T, url string, ttl time.Duration) *natsbroker.Broker {
	t.Helper()
	cfg := natsbroker.Config{URL: url, LiveTTL: ttl}
	if url == "" {
		cfg.DataDir, cfg.Listen = t.TempDir(), "127.0.0.1:0"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b, err := natsbroker.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

func run(t *testing.T, k *kvlease.Keeper) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); k.Run(ctx) }()
	return func() { cancel(); <-done }
}

func waitHeld(t *testing.T, k *kvlease.Keeper, want bool, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		if _, ok := k.Held(); ok == want {
			return time.Since(start)
		}
		if time.Since(start) > within {
			t.Fatalf("held = %v after %v, want %v", !want, within, want)
		}
		select {
		case <-k.Changed():
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// TestKeeperHandover: of two keepers one holds the key; when it gives it
// up (a graceful stop) the other takes it at once, and when it dies (its
// connection cut, no goodbye) the other takes it once the key expires,
// never before the first has stopped holding it.
func TestKeeperHandover(t *testing.T) {
	const ttl = 3 * time.Second
	srv := open(t, "", ttl)
	ka, err := kvlease.New(kvlease.Config{Store: srv.Live(), Key: "leader", Owner: "a", TTL: ttl, Info: []byte(`{"url":"http://a"}`)})
	if err != nil {
		t.Fatal(err)
	}
	stopA := run(t, ka)
	waitHeld(t, ka, true, 2*time.Second)

	cb := open(t, srv.ClientURL(), 0)
	kb, _ := kvlease.New(kvlease.Config{Store: cb.Live(), Key: "leader", Owner: "b", TTL: ttl})
	stopB := run(t, kb)
	defer stopB()
	deadline := time.Now().Add(time.Second)
	for time.Now().Before(deadline) {
		if h, ok := kb.Holder(); ok && h.Owner == "a" && string(h.Info) == `{"url":"http://a"}` {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if h, ok := kb.Holder(); !ok || h.Owner != "a" {
		t.Fatalf("b sees holder %+v %v, want a with its info", h, ok)
	}
	if _, ok := kb.Held(); ok {
		t.Fatal("b holds the key while a does")
	}
	stopA() // gives the key up
	if d := waitHeld(t, kb, true, 2*ttl); d >= ttl/2 {
		t.Errorf("b took a released key after %v, want at once, not after its expiry", d)
	}

	// a again, as a contender; then b dies without a goodbye.
	ca := open(t, srv.ClientURL(), 0)
	ka2, _ := kvlease.New(kvlease.Config{Store: ca.Live(), Key: "leader", Owner: "a", TTL: ttl})
	stopA2 := run(t, ka2)
	defer stopA2()
	cb.Close() // b's store is gone: it can renew no more
	waitHeld(t, kb, false, 2*ttl)
	waitHeld(t, ka2, true, 2*ttl)
	if _, ok := kb.Held(); ok {
		t.Error("a took the key while b still held it")
	}
}
