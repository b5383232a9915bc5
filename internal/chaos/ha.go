package chaos

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// The control plane's faults: the leader of three coordinator replicas
// killed, every coordinator gone for a while, a flood of wrong tokens.
// None may touch a shard (options.steady).

// leaderKill: kill -9 the leading replica of three. Another takes over
// within the lease TTL; the nodes keep their shards meanwhile.
func leaderKill(ctx context.Context, c *cluster) (time.Duration, string, error) {
	var l int
	if err := waitFor(ctx, 20*time.Second, "a leader", func() bool { l = c.leader(ctx); return l >= 0 }); err != nil {
		return 0, "", err
	}
	c.coords[l].Kill()
	killed := time.Now()
	var n int
	if err := waitFor(ctx, 3*c.cfg.LeaseTTL, "a new leader", func() bool { n = c.leader(ctx); return n >= 0 && n != l }); err != nil {
		return 0, "", err
	}
	rec := time.Since(killed)
	// Writes go through any replica, a follower forwarding them.
	if err := c.coordPost(ctx, "/v1/commands", map[string]string{"target": "*", "type": "undrain"}); err != nil {
		return rec, "", fmt.Errorf("a write after the failover: %w", err)
	}
	if err := c.startCoordinator(ctx, l); err != nil { // back as a follower
		return rec, "", err
	}
	note := fmt.Sprintf("recovery is kill -9 of the leader (replica c%d of 3) to replica c%d leading (lease TTL %v; target: within the TTL), with no shard touched", l, n, c.cfg.LeaseTTL)
	if rec > c.cfg.LeaseTTL+time.Second {
		return rec, note, fmt.Errorf("the failover took %v, want within the lease TTL", rec.Round(time.Millisecond))
	}
	return rec, note, nil
}

// coordinatorOutage: every coordinator replica killed for Config.Outage,
// then started again. Nodes hold their leases by their liveness records
// in the broker, so every shard keeps running and publishing.
func coordinatorOutage(ctx context.Context, c *cluster) (time.Duration, string, error) {
	for _, p := range c.coords {
		p.Kill()
	}
	sleep(ctx, c.cfg.Outage)
	restart := time.Now()
	for i := range c.coords {
		if err := c.startCoordinator(ctx, i); err != nil {
			return 0, "", err
		}
	}
	if err := waitFor(ctx, 3*c.cfg.LeaseTTL, "a leader after the outage", func() bool { return c.leader(ctx) >= 0 }); err != nil {
		return 0, "", err
	}
	rec := time.Since(restart)
	return rec, fmt.Sprintf("every coordinator (3 replicas) down for %v, then started again; recovery is their start to one leading; no shard was touched", c.cfg.Outage), nil
}

// authFlood: 2,000 requests with a wrong token from the nodes' own
// address during the run. The coordinator refuses them (401, then 429 as
// the limits trip) and never refuses a valid credential: operators'
// requests and the nodes' heartbeats go on.
func authFlood(ctx context.Context, c *cluster) (time.Duration, string, error) {
	const total, workers = 2000, 8
	var sent, refused, wrong atomic.Int64
	start := time.Now()
	stop := make(chan struct{})
	var validOK, validBad atomic.Int64
	var wg sync.WaitGroup
	wg.Go(func() { // an operator's valid requests all along
		for {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			if c.coordGet(ctx, "/v1/status", &struct{}{}) == nil {
				validOK.Add(1)
			} else {
				validBad.Add(1)
			}
		}
	})
	var fwg sync.WaitGroup
	for w := range workers {
		fwg.Go(func() {
			for i := w; i < total; i += workers {
				addr := c.coordAddrs[i%len(c.coordAddrs)]
				req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+addr+"/v1/status", nil)
				req.Header.Set("Authorization", "Bearer wrong-token")
				resp, err := c.hc.Do(req)
				sent.Add(1)
				if err != nil {
					continue
				}
				resp.Body.Close()
				switch resp.StatusCode {
				case http.StatusUnauthorized, http.StatusTooManyRequests:
					refused.Add(1)
				default:
					wrong.Add(1)
				}
				time.Sleep(time.Millisecond)
			}
		})
	}
	fwg.Wait()
	rec := time.Since(start)
	sleep(ctx, c.cfg.LeaseTTL) // a full lease TTL of heartbeats after the flood
	close(stop)
	wg.Wait()
	note := fmt.Sprintf("%d wrong-token requests from 127.0.0.1 in %v, %d refused (401/429); an operator's %d valid requests meanwhile: %d refused; recovery is the flood's length",
		sent.Load(), rec.Round(10*time.Millisecond), refused.Load(), validOK.Load()+validBad.Load(), validBad.Load())
	switch {
	case wrong.Load() > 0:
		return rec, note, fmt.Errorf("%d wrong-token requests were not refused", wrong.Load())
	case validBad.Load() > 0:
		return rec, note, fmt.Errorf("%d valid requests were refused during the flood", validBad.Load())
	}
	return rec, note, nil
}

// sampleShardsDown records in *most the most shards of the bot's count
// with no connection at one sample, every 20ms, until stop is called.
func (c *cluster) sampleShardsDown(ctx context.Context, most *int) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			count := int(c.count.Load())
			conns := map[int]int64{}
			for _, s := range c.sim.Stats().Shards {
				if s.NumShards == count {
					conns[s.Shard] += s.Connections
				}
			}
			down := 0
			for s := range count {
				if conns[s] == 0 {
					down++
				}
			}
			*most = max(*most, down)
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	})
	return func() { close(done); wg.Wait() }
}

// brokerNodeKill: kill -9 one node of a three-node NATS cluster with every
// stream and bucket at three replicas. Clients reconnect to the others, the
// streams elect new leaders, and nothing is lost or touched: publishing
// waits (TCP pushes back to Discord) and goes on.
func brokerNodeKill(ctx context.Context, c *cluster) (time.Duration, string, error) {
	// The worst one to lose: the event stream's leader, whose loss stops
	// publishing until the others elect a new one.
	leader, err := c.streamLeader(ctx)
	if err != nil {
		return 0, "", err
	}
	victim := c.brokers[len(c.brokers)-1]
	if i := slices.Index(c.brokerNames, leader); i >= 0 && i < len(c.brokers) {
		victim = c.brokers[i]
	}
	victim.Kill()
	killed := time.Now()
	if err := waitFor(ctx, 3*c.cfg.LeaseTTL, "new events after the kill", func() bool { return c.col.newSince(killed) }); err != nil {
		return 0, "", err
	}
	rec := time.Since(killed)
	// The control plane writes again through the two that are left.
	if err := waitFor(ctx, 3*c.cfg.LeaseTTL, "a write to the coordinators", func() bool {
		return c.coordPost(ctx, "/v1/commands", map[string]string{"target": "*", "type": "undrain"}) == nil
	}); err != nil {
		return rec, "", err
	}
	note := fmt.Sprintf("kill -9 of one NATS node of three (R3), the event stream's leader (%s); recovery is the kill to the consumer's first new event; the longest stall is the max gap (lease TTL %v)", leader, c.cfg.LeaseTTL)
	return rec, note, nil
}

// streamLeader is the server name of the event stream's leader in a NATS
// cluster, asked with the read-only tool's credentials.
func (c *cluster) streamLeader(ctx context.Context) (string, error) {
	seed, err := nats.NkeyOptionFromSeed(c.seed("tail"))
	if err != nil {
		return "", err
	}
	nc, err := nats.Connect(c.natsURL, seed, nats.Name("chaos-observer"))
	if err != nil {
		return "", fmt.Errorf("chaos: connecting to NATS: %w", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return "", err
	}
	ictx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	st, err := js.Stream(ictx, "GATEHOUSE_EVENTS")
	if err != nil {
		return "", fmt.Errorf("chaos: the event stream: %w", err)
	}
	info := st.CachedInfo()
	if info.Cluster == nil || info.Cluster.Leader == "" {
		return "", errors.New("chaos: the event stream has no cluster leader")
	}
	return info.Cluster.Leader, nil
}
