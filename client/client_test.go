package client

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go"
)

func TestConnectInvalidConfig(t *testing.T) {
	tests := map[string]Config{
		"no URL or Conn":               {},
		"blank URL":                    {URL: "  "},
		"prefix with wildcard":         {URL: "nats://x", Prefix: "gh.*"},
		"prefix with empty tok":        {URL: "nats://x", Prefix: "gh..x"},
		"prefix with space":            {URL: "nats://x", Prefix: "g h"},
		"stream with dot":              {URL: "nats://x", Stream: "A.B"},
		"consumer with slash":          {URL: "nats://x", Consumer: "a/b"},
		"consumer with space":          {URL: "nats://x", Consumer: "my bot"},
		"lower-case type":              {URL: "nats://x", Types: []string{"message_create"}},
		"wildcard type":                {URL: "nats://x", Types: []string{">"}},
		"empty type":                   {URL: "nats://x", Types: []string{""}},
		"negative shard":               {URL: "nats://x", Shards: []int{-1}},
		"negative partitions":          {URL: "nats://x", Partitions: -2},
		"partition out of range":       {URL: "nats://x", Partitions: 4, Partition: 4},
		"partition without partitions": {URL: "nats://x", Partition: 1},
		"exclusive without consumer":   {URL: "nats://x", Exclusive: true},
		"negative gateway partitions":  {URL: "nats://x", Partitions: 2, GatewayPartitions: -1},
		"negative ack wait":            {URL: "nats://x", AckWait: -time.Second},
		"negative max ack pending":     {URL: "nats://x", MaxAckPending: -1},
		"negative retry delay":         {URL: "nats://x", RetryDelay: -1},
		"negative shard count":         {URL: "nats://x", NumShards: -1},
	}
	for name, cfg := range tests {
		t.Run(name, func(t *testing.T) {
			c, err := Connect(t.Context(), cfg)
			if !errors.Is(err, ErrInvalidConfig) {
				t.Errorf("Connect(%+v) = %v, want ErrInvalidConfig", cfg, err)
			}
			if c != nil {
				c.Close()
			}
		})
	}
}

func TestConfigDefaults(t *testing.T) {
	got, err := Config{URL: "nats://x", Types: []string{"B", "A", "B"}, Shards: []int{3, 1, 3}}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	got.Logger = nil
	want := Config{
		URL: "nats://x", Name: "gatehouse-client", Prefix: "gatehouse", Stream: "GATEHOUSE_EVENTS",
		Types: []string{"A", "B"}, Shards: []int{1, 3},
		AckWait: 30 * time.Second, MaxAckPending: 1000, RetryDelay: time.Second,
	}
	if diff := cmp.Diff(want, got, cmp.AllowUnexported(nats.Conn{})); diff != "" {
		t.Errorf("withDefaults (-want +got):\n%s", diff)
	}
}

func TestConnect(t *testing.T) {
	e := newEnv(t)
	// An unreachable server fails within the context's deadline.
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	if _, err := Connect(ctx, Config{URL: "nats://127.0.0.1:1"}); err == nil || errors.Is(err, ErrInvalidConfig) {
		t.Errorf("Connect(unreachable) = %v, want a connection error", err)
	}
	// A given connection is used and left open.
	c, err := Connect(t.Context(), Config{Conn: e.nc})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if e.nc.IsClosed() {
		t.Error("Close closed the connection it was given")
	}
	if err := c.Close(); err != nil {
		t.Errorf("second Close = %v", err)
	}
	// A closed connection is refused.
	nc, err := nats.Connect(e.url)
	if err != nil {
		t.Fatal(err)
	}
	nc.Close()
	if _, err := Connect(t.Context(), Config{Conn: nc}); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("Connect(closed Conn) = %v, want ErrInvalidConfig", err)
	}
	// A connection Connect opened is closed by Close.
	c2, err := Connect(t.Context(), Config{URL: e.url})
	if err != nil {
		t.Fatal(err)
	}
	c2.Close()
	if !c2.nc.IsClosed() {
		t.Error("Close left its own connection open")
	}
}

func TestEventKey(t *testing.T) {
	ev := Event{Shard: 12, Session: "abc", Seq: 99}
	if got, want := ev.Key(), "12:abc:99"; got != want {
		t.Errorf("Key() = %q, want %q", got, want)
	}
}
