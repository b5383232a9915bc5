package client

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go"
)

const presence = `{"op":3,"d":{"since":null,"activities":[],"status":"online","afk":false}}`

// responder plays the gateway nodes: it answers commands per shard.
type responder struct {
	mu   sync.Mutex
	got  []string // subject + " " + payload
	sub  *nats.Subscription
	nc   *nats.Conn
	resp map[string]string // by subject; "" = do not answer
}

func (e *env) responder(t *testing.T, resp map[string]string) *responder {
	t.Helper()
	nc, err := nats.Connect(e.url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	r := &responder{nc: nc, resp: resp}
	r.sub, err = nc.Subscribe("gatehouse.cmd.*", func(m *nats.Msg) {
		r.mu.Lock()
		r.got = append(r.got, m.Subject+" "+string(m.Data))
		r.mu.Unlock()
		if answer := resp[m.Subject]; answer != "" {
			m.Respond([]byte(answer))
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return r
}

func (r *responder) requests() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.got...)
}

func TestSendShard(t *testing.T) {
	e := newEnv(t)
	r := e.responder(t, map[string]string{
		"gatehouse.cmd.1": `{"ok":true}`,
		"gatehouse.cmd.2": `{"ok":false,"error":"shard 2 is not connected"}`,
		"gatehouse.cmd.3": `not json`,
		"gatehouse.cmd.5": `{"error":"no ok field"}`,
	})
	c := e.connect(t, Config{})

	if err := c.SendShard(t.Context(), 1, []byte(presence)); err != nil {
		t.Errorf("SendShard(1) = %v, want nil", err)
	}
	err := c.SendShard(t.Context(), 2, []byte(presence))
	var ce *CommandError
	if !errors.As(err, &ce) || ce.Shard != 2 || ce.Message != "shard 2 is not connected" {
		t.Errorf("SendShard(2) = %#v, want CommandError from shard 2", err)
	}
	for _, shard := range []int{3, 5} {
		if err := c.SendShard(t.Context(), shard, []byte(presence)); !errors.Is(err, ErrBadReply) {
			t.Errorf("SendShard(%d) = %v, want ErrBadReply", shard, err)
		}
	}
	// Shard 4 is subscribed but nobody answers: the wait ends with ctx.
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	if err := c.SendShard(ctx, 4, []byte(presence)); !errors.Is(err, ErrNoGateway) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("SendShard(4) = %v, want ErrNoGateway and DeadlineExceeded", err)
	}
	want := []string{
		"gatehouse.cmd.1 " + presence,
		"gatehouse.cmd.2 " + presence,
		"gatehouse.cmd.3 " + presence,
		"gatehouse.cmd.5 " + presence,
		"gatehouse.cmd.4 " + presence,
	}
	if diff := cmp.Diff(want, r.requests()); diff != "" {
		t.Errorf("requests (-want +got):\n%s", diff)
	}

	// Nobody subscribed at all: the server says so at once.
	other := e.connect(t, Config{Prefix: "elsewhere"})
	start := time.Now()
	if err := other.SendShard(t.Context(), 1, []byte(presence)); !errors.Is(err, ErrNoGateway) {
		t.Errorf("SendShard without gateways = %v, want ErrNoGateway", err)
	}
	if d := time.Since(start); d > DefaultSendTimeout/2 {
		t.Errorf("SendShard without gateways took %v", d)
	}
}

func TestSendShardBadCommand(t *testing.T) {
	e := newEnv(t)
	r := e.responder(t, map[string]string{"gatehouse.cmd.0": `{"ok":true}`})
	c := e.connect(t, Config{})
	bad := []string{
		``,
		`not json`,
		`{"d":{}}`,
		`{"op":2,"d":{"token":"x"}}`, // IDENTIFY belongs to the gateway node
		`{"op":1,"d":null}`,
		`{"op":6,"d":{}}`,
		`{"op":0,"t":"MESSAGE_CREATE","s":1,"d":{}}`,
		`{"op":8,"d":{"guild_id":"1","query":"` + strings.Repeat("a", MaxCommandSize) + `"}}`,
	}
	for _, p := range bad {
		if err := c.SendShard(t.Context(), 0, []byte(p)); !errors.Is(err, ErrBadCommand) {
			t.Errorf("SendShard(%.40q) = %v, want ErrBadCommand", p, err)
		}
	}
	if err := c.SendShard(t.Context(), -1, []byte(presence)); !errors.Is(err, ErrBadCommand) {
		t.Errorf("SendShard(-1) = %v, want ErrBadCommand", err)
	}
	for _, p := range []string{
		`{"op":4,"d":{"guild_id":"41771983423143937","channel_id":null,"self_mute":false,"self_deaf":false}}`,
		`{"op":8,"d":{"guild_id":"41771983423143937","query":"","limit":0}}`,
	} {
		if err := c.SendShard(t.Context(), 0, []byte(p)); err != nil {
			t.Errorf("SendShard(%.40q) = %v", p, err)
		}
	}
	if got := len(r.requests()); got != 2 {
		t.Errorf("gateway received %d requests, want only the 2 valid ones", got)
	}
	c.Close()
	if err := c.SendShard(t.Context(), 0, []byte(presence)); !errors.Is(err, ErrClosed) {
		t.Errorf("SendShard after Close = %v, want ErrClosed", err)
	}
}

func TestSendRoutesByGuild(t *testing.T) {
	e := newEnv(t)
	answers := map[string]string{}
	for i := range 8 {
		answers["gatehouse.cmd."+string(rune('0'+i))] = `{"ok":true}`
	}
	r := e.responder(t, answers)
	guild := guildOn(3, 4, 17) // g>>22 = 71: shard 3 of 4, 1 of 2, 7 of 8

	// Configured count.
	c := e.connect(t, Config{NumShards: 4})
	if err := c.Send(t.Context(), guild, []byte(presence)); err != nil {
		t.Fatalf("Send = %v", err)
	}

	// Unknown count and an empty stream.
	c2 := e.connect(t, Config{})
	if err := c2.Send(t.Context(), guild, []byte(presence)); !errors.Is(err, ErrUnknownShardCount) {
		t.Errorf("Send on an empty stream = %v, want ErrUnknownShardCount", err)
	}
	// Learnt from the newest batch in the stream: 2 shards, so shard 1.
	e.publish(t, testBatch{shard: 1, numShards: 2, session: "s", events: []testEvent{newTestEvent("MESSAGE_CREATE", 1, 0)}})
	if err := c2.Send(t.Context(), guild, []byte(presence)); err != nil {
		t.Fatalf("Send = %v", err)
	}
	// Learnt from Consume: the newest batch says 8 shards, so shard 7.
	e.publish(t, testBatch{shard: 0, numShards: 8, session: "t", events: []testEvent{newTestEvent("MESSAGE_CREATE", 1, 0)}})
	c3 := e.connect(t, Config{Consumer: "learn"})
	rec := newRecorder(2)
	cs := startConsume(t, c3, rec.handle)
	rec.wait(t)
	cs.stop(t)
	if err := c3.Send(t.Context(), guild, []byte(presence)); err != nil {
		t.Fatalf("Send = %v", err)
	}
	want := []string{"gatehouse.cmd.3 " + presence, "gatehouse.cmd.1 " + presence, "gatehouse.cmd.7 " + presence}
	if diff := cmp.Diff(want, r.requests()); diff != "" {
		t.Errorf("requests (-want +got):\n%s", diff)
	}
}
