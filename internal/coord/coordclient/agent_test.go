package coordclient

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/coord"
	"github.com/gatehouse-dev/gatehouse/internal/coord/coordapi"
)

// fakeNode records the shards it runs.
type fakeNode struct {
	mu     sync.Mutex
	shards map[int]bool
	adds   int
	fail   int // Add of this shard fails (-1: none)
}

func newFakeNode() *fakeNode { return &fakeNode{shards: map[int]bool{}, fail: -1} }

func (f *fakeNode) Start(ctx context.Context, _, shard int) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if shard == f.fail {
		return errors.New("cannot start")
	}
	if f.shards[shard] {
		return errors.New("already running")
	}
	f.shards[shard] = true
	f.adds++
	return nil
}

func (f *fakeNode) Stop(ctx context.Context, _, shard int) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.shards[shard] {
		return errors.New("not running")
	}
	delete(f.shards, shard)
	return nil
}

func (f *fakeNode) addCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.adds
}

func (f *fakeNode) running() []int {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []int
	for s := range f.shards {
		out = append(out, s)
	}
	slices.Sort(out)
	return out
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestAgents: two node agents share four shards through the coordinator,
// never running one shard twice; when the coordinator goes away, both stop
// their shards before the leases could move.
func TestAgents(t *testing.T) {
	srv := startCoord(t, func(c *coord.Config) { c.ShardCount = 4; c.LeaseTTL = 600 * time.Millisecond }, nil)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	a, b := newFakeNode(), newFakeNode()
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	run := func(id string, n *fakeNode) {
		c := newClient(t, srv.URL, "n")
		wg.Go(func() {
			if err := c.RunAgent(ctx, n, AgentConfig{NodeID: id, FirstInterval: 50 * time.Millisecond}); err != nil {
				t.Errorf("agent %s: %v", id, err)
			}
		})
	}
	// Never two nodes on one shard.
	stopWatch := make(chan struct{})
	var watch sync.WaitGroup
	watch.Go(func() {
		for {
			select {
			case <-stopWatch:
				return
			default:
			}
			for _, s := range a.running() {
				if slices.Contains(b.running(), s) {
					t.Errorf("shard %d runs on both nodes", s)
					return
				}
			}
			time.Sleep(time.Millisecond)
		}
	})
	run("a", a)
	waitUntil(t, "a runs all four", func() bool { return len(a.running()) == 4 })
	run("b", b)
	waitUntil(t, "two each", func() bool { return len(a.running()) == 2 && len(b.running()) == 2 })
	close(stopWatch)
	watch.Wait()

	// The coordinator goes away: both nodes stop everything within two
	// thirds of the TTL (plus a heartbeat).
	srv.Close()
	waitUntil(t, "both fenced", func() bool { return len(a.running()) == 0 && len(b.running()) == 0 })
	cancel()
}

// TestAgentGivesBackAFailedShard: a shard the node cannot start goes back
// to the coordinator, which leases it to another node.
func TestAgentGivesBackAFailedShard(t *testing.T) {
	srv := startCoord(t, func(c *coord.Config) { c.ShardCount = 2; c.LeaseTTL = 600 * time.Millisecond }, nil)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	a := newFakeNode()
	a.fail = 1
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	c := newClient(t, srv.URL, "n")
	wg.Go(func() { c.RunAgent(ctx, a, AgentConfig{NodeID: "a", FirstInterval: 50 * time.Millisecond}) })
	waitUntil(t, "a runs shard 0", func() bool { return slices.Equal(a.running(), []int{0}) })
	b := newFakeNode()
	c2 := newClient(t, srv.URL, "n")
	wg.Go(func() { c2.RunAgent(ctx, b, AgentConfig{NodeID: "b", FirstInterval: 50 * time.Millisecond}) })
	waitUntil(t, "b runs shard 1", func() bool { return slices.Contains(b.running(), 1) })
	cancel()
}

func TestAgentRefused(t *testing.T) {
	srv := startCoord(t, nil, nil)
	c := newClient(t, srv.URL, "wrong")
	if err := c.RunAgent(t.Context(), newFakeNode(), AgentConfig{NodeID: "a"}); !errors.Is(err, ErrRefused) {
		t.Errorf("bad token: %v, want ErrRefused", err)
	}
	if err := c.RunAgent(t.Context(), newFakeNode(), AgentConfig{}); !errors.Is(err, ErrRefused) {
		t.Errorf("no node ID: %v, want ErrRefused", err)
	}
}

// TestAgentCommands: commands from the push channel reach the node:
// restart_shard closes and restarts one shard (same lease), drain moves
// every shard to another node, undrain rebalances.
func TestAgentCommands(t *testing.T) {
	srv := startCoord(t, func(c *coord.Config) { c.ShardCount = 2; c.LeaseTTL = 600 * time.Millisecond }, nil)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	n := newFakeNode()
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	c := newClient(t, srv.URL, "n")
	wg.Go(func() { c.RunAgent(ctx, n, AgentConfig{NodeID: "a", FirstInterval: 50 * time.Millisecond}) })
	waitUntil(t, "a runs both shards", func() bool { return len(n.running()) == 2 })
	command := func(body string) string {
		t.Helper()
		req, _ := http.NewRequestWithContext(ctx, "POST", srv.URL+"/v1/commands", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer a")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			t.Fatalf("POST /v1/commands %s: %d %s", body, resp.StatusCode, b)
		}
		return string(b)
	}
	// The push channel may not be open yet: retry until delivered.
	waitUntil(t, "restart delivered", func() bool {
		return strings.Contains(command(`{"target":"a","type":"restart_shard","shard":1}`), `"delivered":["a"]`)
	})
	waitUntil(t, "shard 1 restarted", func() bool {
		n.mu.Lock()
		defer n.mu.Unlock()
		return n.adds == 3 && n.shards[1]
	})
	// A draining node keeps its shards until another node can take them.
	b := newFakeNode()
	cb := newClient(t, srv.URL, "n")
	command(`{"target":"a","type":"drain"}`)
	wg.Go(func() { cb.RunAgent(ctx, b, AgentConfig{NodeID: "b", FirstInterval: 50 * time.Millisecond}) })
	waitUntil(t, "a drained into b", func() bool { return len(n.running()) == 0 && len(b.running()) == 2 })
	command(`{"target":"*","type":"undrain"}`)
	waitUntil(t, "a takes its share again", func() bool { return len(n.running()) == 1 && len(b.running()) == 1 })
	cancel()
}

// TestAgentLease: the agent answers gateway.Leases with the coordinator's
// tokens. When the coordinator hangs (it accepts heartbeats and never
// answers), the node stops its shards and the leases turn invalid before
// the coordinator's own leases expire.
func TestAgentLease(t *testing.T) {
	const ttl = 900 * time.Millisecond
	var hanging atomic.Bool // heartbeats hang until the client gives up
	var hangs atomic.Int32
	var lastServed atomic.Int64 // when the coordinator last answered a heartbeat (the leases renew then)
	release := make(chan struct{})
	srv := startCoord(t, func(c *coord.Config) { c.ShardCount = 2; c.LeaseTTL = ttl }, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if strings.HasSuffix(r.URL.Path, "/heartbeat") && hanging.Load() {
				hangs.Add(1)
				select {
				case <-r.Context().Done():
				case <-release:
				}
				return
			}
			h.ServeHTTP(w, r)
			if strings.HasSuffix(r.URL.Path, "/heartbeat") {
				lastServed.Store(time.Now().UnixNano())
			}
		})
	})
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	c := newClient(t, srv.URL, "n")
	ag, err := c.NewAgent(AgentConfig{NodeID: "a", FirstInterval: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := ag.Lease(ag.ShardCount(), 0); ok {
		t.Error("a lease before the first heartbeat")
	}
	n := newFakeNode()
	wg.Go(func() {
		if err := ag.Run(ctx, n); err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	waitUntil(t, "both shards", func() bool { return len(n.running()) == 2 })

	// The tokens are the coordinator's.
	req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/v1/leases", nil)
	req.Header.Set("Authorization", "Bearer a")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var leases []coordapi.ShardLease
	err = json.NewDecoder(resp.Body).Decode(&leases)
	resp.Body.Close()
	if err != nil || len(leases) != 2 {
		t.Fatalf("leases %+v, %v", leases, err)
	}
	for _, l := range leases {
		if tok, ok := ag.Lease(ag.ShardCount(), l.Shard); !ok || tok != l.Token {
			t.Errorf("Lease(%d) = %d, %v; the coordinator says %d", l.Shard, tok, ok, l.Token)
		}
	}
	if _, ok := ag.Lease(ag.ShardCount(), 7); ok {
		t.Error("Lease(7) valid: not leased here")
	}

	hanging.Store(true)
	waitUntil(t, "leases invalid", func() bool {
		_, ok0 := ag.Lease(ag.ShardCount(), 0)
		_, ok1 := ag.Lease(ag.ShardCount(), 1)
		return !ok0 && !ok1
	})
	waitUntil(t, "shards stopped", func() bool { return len(n.running()) == 0 })
	// The node's leases end before the coordinator's: it renewed them when
	// it last answered, for a whole TTL.
	ag.mu.Lock()
	valid := ag.valid
	ag.mu.Unlock()
	if expires := time.Unix(0, lastServed.Load()).Add(ttl); !valid.Before(expires) {
		t.Errorf("the node's leases were valid until %v, after the coordinator's expire (%v)", valid, expires)
	}
	if hangs.Load() == 0 {
		t.Error("no heartbeat hung")
	}
	hanging.Store(false)
	close(release)
	// The coordinator answers again: the shards come back under new leases.
	waitUntil(t, "shards back", func() bool { return len(n.running()) == 2 })
	waitUntil(t, "valid again", func() bool { _, ok := ag.Lease(ag.ShardCount(), 0); return ok })
	// The node says it stopped shard 0 (its lease ran out): the agent
	// removes it, reports it, and gets it back under a new token.
	tok0, _ := ag.Lease(ag.ShardCount(), 0)
	addsBefore := n.addCount()
	ag.Lost(ag.ShardCount(), 0)
	waitUntil(t, "shard 0 re-added", func() bool { return n.addCount() > addsBefore && slices.Contains(n.running(), 0) })
	waitUntil(t, "shard 0 under a new token", func() bool { tok, ok := ag.Lease(ag.ShardCount(), 0); return ok && tok > tok0 })
	if err := ag.Run(ctx, n); err == nil {
		t.Error("a second Run succeeded")
	}
}
