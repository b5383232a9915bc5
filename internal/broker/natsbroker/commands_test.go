package natsbroker

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go"

	"github.com/gatehouse-dev/gatehouse/internal/broker"
)

// serveCommands runs ServeCommands until the test ends and returns once
// it is subscribed.
func serveCommands(t *testing.T, b *Broker, shards func(int) bool, handle func(int, []byte) error) (stop func() error) {
	t.Helper()
	subscribed := make(chan struct{})
	b.onCommandsSubscribed = func() { close(subscribed) }
	ctx, cancel := context.WithCancel(t.Context())
	errc := make(chan error, 1)
	go func() { errc <- b.ServeCommands(ctx, shards, handle) }()
	select {
	case <-subscribed:
	case err := <-errc:
		cancel()
		t.Fatalf("ServeCommands returned early: %v", err)
	}
	var stopped bool
	var stopErr error
	stop = func() error {
		if !stopped {
			stopped = true
			cancel()
			stopErr = <-errc
		}
		return stopErr
	}
	t.Cleanup(func() { stop() })
	return stop
}

func TestServeCommands(t *testing.T) {
	b := openTest(t, Config{Listen: "127.0.0.1:0"})
	type call struct {
		Shard   int
		Payload string
	}
	var mu sync.Mutex
	var calls []call // written by ServeCommands' goroutine
	owned := map[int]bool{3: true, 4: true}
	stop := serveCommands(t, b,
		func(shard int) bool { return owned[shard] },
		func(shard int, payload []byte) error {
			mu.Lock()
			calls = append(calls, call{shard, string(payload)})
			mu.Unlock()
			if shard == 4 {
				return errors.New(`presence "invalid"`)
			}
			return nil
		})

	// Request from another connection, as a control client would.
	client, err := nats.Connect(b.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	subj := b.Subjects()

	reply := func(shard int, payload string) commandReply {
		t.Helper()
		m, err := client.Request(subj.Command(shard), []byte(payload), 5*time.Second)
		if err != nil {
			t.Fatalf("request to shard %d: %v", shard, err)
		}
		var r commandReply
		if err := json.Unmarshal(m.Data, &r); err != nil {
			t.Fatalf("reply %q: %v", m.Data, err)
		}
		return r
	}
	if got := reply(3, `{"op":3}`); got != (commandReply{OK: true}) {
		t.Errorf("shard 3 reply = %+v, want ok", got)
	}
	if got, want := reply(4, `{"op":8}`), (commandReply{Error: `presence "invalid"`}); got != want {
		t.Errorf("shard 4 reply = %+v, want %+v", got, want)
	}
	mu.Lock()
	if diff := cmp.Diff([]call{{3, `{"op":3}`}, {4, `{"op":8}`}}, calls); diff != "" {
		t.Errorf("handled calls (-want +got):\n%s", diff)
	}
	mu.Unlock()

	// A shard this node does not own gets no answer from it.
	if _, err := client.Request(subj.Command(5), []byte("{}"), 100*time.Millisecond); !errors.Is(err, nats.ErrTimeout) {
		t.Errorf("request to unowned shard 5 = %v, want timeout", err)
	}
	// Neither does a subject that is not a shard number.
	if _, err := client.Request(b.cfg.Prefix+".cmd.x", []byte("{}"), 100*time.Millisecond); !errors.Is(err, nats.ErrTimeout) {
		t.Errorf("request to cmd.x = %v, want timeout", err)
	}

	if err := stop(); err != nil {
		t.Errorf("ServeCommands after cancel = %v, want nil", err)
	}
	if _, err := client.Request(subj.Command(3), []byte("{}"), 2*time.Second); !errors.Is(err, nats.ErrNoResponders) {
		t.Errorf("request after ServeCommands returned = %v, want no responders (unsubscribed)", err)
	}
}

func TestServeCommandsClose(t *testing.T) {
	b := openTest(t, Config{})
	subscribed := make(chan struct{})
	b.onCommandsSubscribed = func() { close(subscribed) }
	done := make(chan error, 1)
	go func() {
		done <- b.ServeCommands(t.Context(), func(int) bool { return true }, func(int, []byte) error { return nil })
	}()
	select {
	case <-subscribed:
	case err := <-done:
		t.Fatalf("ServeCommands returned early: %v", err)
	}
	b.Close()
	if err := <-done; !errors.Is(err, broker.ErrClosed) {
		t.Errorf("ServeCommands after Close = %v, want ErrClosed", err)
	}
}
