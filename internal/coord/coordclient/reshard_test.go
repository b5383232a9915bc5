package coordclient

import (
	"bytes"
	"context"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/coord"
	"github.com/gatehouse-dev/gatehouse/internal/coord/coordapi"
)

// genNode is a fake node that runs shards of several counts and takes
// part in reshards.
type genNode struct {
	mu       sync.Mutex
	running  map[[2]int]bool // {count, shard}
	modes    map[int]string
	promoted int
	retired  []int
}

func (g *genNode) Start(ctx context.Context, n, shard int) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.running[[2]int{n, shard}] = true
	return nil
}

func (g *genNode) Stop(ctx context.Context, n, shard int) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	delete(g.running, [2]int{n, shard})
	return nil
}

func (g *genNode) SetMode(n int, mode string, newCount int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.modes[n] = mode
}

func (g *genNode) Promote(n int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.promoted = n
}

func (g *genNode) Retire(ctx context.Context, n int) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	for k := range g.running {
		if k[0] == n {
			delete(g.running, k)
		}
	}
	g.retired = append(g.retired, n)
	return nil
}

// reports says every running shard is ready with its guilds, in its
// generation's mode, and handed over once in handover.
func (g *genNode) reports() []coordapi.ShardReport {
	g.mu.Lock()
	defer g.mu.Unlock()
	one := 1
	var out []coordapi.ShardReport
	for k := range g.running {
		m := g.modes[k[0]]
		out = append(out, coordapi.ShardReport{Shard: k[1], NumShards: k[0], State: "ready", Mode: m, Guilds: &one, HandedOver: m == "handover"})
	}
	return out
}

// TestAgentReshard: an agent runs a reshard 2 → 4 through its orders: the
// new generation starts in hold, the modes follow the phases, and once the
// coordinator switches the agent promotes 4 and retires 2.
func TestAgentReshard(t *testing.T) {
	srv := startCoord(t, func(c *coord.Config) {
		c.ShardCount, c.LeaseTTL, c.ReshardSettle = 2, 600*time.Millisecond, 50*time.Millisecond
	}, nil)
	g := &genNode{running: map[[2]int]bool{}, modes: map[int]string{}}
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	c := newClient(t, srv.URL, "n")
	wg.Go(func() {
		if err := c.RunAgent(ctx, g, AgentConfig{NodeID: "a", FirstInterval: 50 * time.Millisecond, Report: g.reports}); err != nil {
			t.Errorf("agent: %v", err)
		}
	})
	count := func(n int) int {
		g.mu.Lock()
		defer g.mu.Unlock()
		c := 0
		for k := range g.running {
			if k[0] == n {
				c++
			}
		}
		return c
	}
	waitUntil(t, "two shards", func() bool { return count(2) == 2 })
	req, _ := http.NewRequest("POST", srv.URL+"/v1/reshard", bytes.NewReader([]byte(`{"to":4}`)))
	req.Header.Set("Authorization", "Bearer a")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("POST /v1/reshard: %s", resp.Status)
	}
	var sawHold, sawHandover bool
	waitUntil(t, "the switch to 4 shards", func() bool {
		g.mu.Lock()
		defer g.mu.Unlock()
		sawHold = sawHold || g.modes[4] == "hold"
		sawHandover = sawHandover || g.modes[2] == "handover"
		return g.promoted == 4 && len(g.retired) > 0
	})
	waitUntil(t, "only the new generation running", func() bool { return count(4) == 4 && count(2) == 0 })
	g.mu.Lock()
	defer g.mu.Unlock()
	if !sawHold || !sawHandover || g.modes[4] != "publish" || g.retired[0] != 2 {
		t.Errorf("hold seen %v, handover seen %v, final mode %q, retired %v", sawHold, sawHandover, g.modes[4], g.retired)
	}
}
