package chaos

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// forgedPublish: a process with a bot worker's credentials tries to
// publish an event, write the control plane's KV (a lease record, a
// session, the leadership, a node's liveness) and send the broker's API
// a stream deletion. The broker refuses each, the consumer never sees the
// forged event, and nothing touches the shards.
func forgedPublish(ctx context.Context, c *cluster) (time.Duration, string, error) {
	var mu sync.Mutex
	var refused []string
	seed, err := nats.NkeyOptionFromSeed(c.seed("worker"))
	if err != nil {
		return 0, "", err
	}
	nc, err := nats.Connect(c.natsURL, seed, nats.Name("chaos-forger"), nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
		mu.Lock()
		refused = append(refused, err.Error())
		mu.Unlock()
	}))
	if err != nil {
		return 0, "", fmt.Errorf("the worker's credentials were refused: %w", err)
	}
	defer nc.Close()
	start := time.Now()
	payload := []byte(`{"op":0,"s":1,"t":"MESSAGE_CREATE","d":{"content":"` + forgedMark + `","guild_id":"1"}}`)
	attempts := []string{
		"gatehouse.ev.0.0.MESSAGE_CREATE",
		"$KV.gatehouse_ctl.lease." + fmt.Sprint(c.cfg.Shards) + ".0",
		"$KV.gatehouse_sessions." + fmt.Sprint(c.cfg.Shards) + ".0",
		"$KV.gatehouse_live.leader",
		"$KV.gatehouse_live.node.a",
		"$JS.API.STREAM.DELETE.GATEHOUSE_EVENTS",
	}
	for _, subj := range attempts {
		if err := nc.Publish(subj, payload); err != nil {
			return 0, "", err
		}
	}
	// Through JetStream too: no acknowledgement may come back.
	js, _ := jetstream.New(nc)
	pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	_, jsErr := js.Publish(pctx, "gatehouse.ev.0.0.MESSAGE_CREATE", payload)
	cancel()
	nc.Flush()
	sleep(ctx, 500*time.Millisecond)
	rec := time.Since(start)
	mu.Lock()
	got := strings.Join(refused, "\n")
	mu.Unlock()
	var missing []string
	for _, subj := range attempts {
		if !strings.Contains(got, `Permissions Violation for Publish to "`+subj+`"`) {
			missing = append(missing, subj)
		}
	}
	c.col.mu.Lock()
	forged := c.col.forged
	c.col.mu.Unlock()
	note := fmt.Sprintf("a worker's credentials tried %d forbidden publishes (an event, a lease record, a session, the leadership, a node's liveness, a stream deletion) and a JetStream publish: %d refused by the broker, the JetStream publish got %v, the consumer saw %d forged events",
		len(attempts), len(attempts)-len(missing), jsErr, forged)
	switch {
	case len(missing) > 0:
		return rec, note, fmt.Errorf("the broker did not refuse %s", strings.Join(missing, ", "))
	case jsErr == nil:
		return rec, note, fmt.Errorf("the forged JetStream publish was acknowledged")
	}
	return rec, note, nil
}
