package chaos

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/discord/sim"
	"github.com/gatehouse-dev/gatehouse/internal/loadtest"
)

// Tokens the cluster's coordinator is started with.
const (
	adminToken = "chaos-admin"
	nodeToken  = "chaos-node"
)

// cluster is one scenario's deployment: the simulator in this process, and
// a broker, a coordinator, gateway nodes and a consumer as child
// processes of the gatehouse binary, all on loopback.
type cluster struct {
	cfg       Config
	dir       string
	sim       *sim.Server
	api       string // the simulator's REST base
	broker    *loadtest.Child
	natsURL   string
	coord     *loadtest.Child
	coordAddr string
	nodes     map[string]*loadtest.Child
	consumer  *loadtest.Child
	col       *collector
	hc        *http.Client
}

func (c *cluster) env() []string {
	return []string{"GATEHOUSE_ADMIN_TOKEN=" + adminToken, "GATEHOUSE_NODE_TOKEN=" + nodeToken}
}

// up starts everything and waits until every shard is connected, the
// startup rebalance has settled and the consumer handles events.
func up(ctx context.Context, cfg Config, dir string) (*cluster, error) {
	c := &cluster{cfg: cfg, dir: dir, nodes: map[string]*loadtest.Child{}, col: newCollector(), hc: &http.Client{Timeout: 10 * time.Second}}
	srv, err := sim.New(sim.Config{
		Guilds: cfg.Shards * 100, Shards: cfg.Shards, MaxConcurrency: cfg.MaxConcurrency,
		IdentifyInterval: 300 * time.Millisecond, HeartbeatInterval: 2 * time.Second,
		EventRate: cfg.Rate, RecordDeliveries: true, Logger: cfg.Logger,
	})
	if err != nil {
		return nil, err
	}
	c.sim = srv
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return c, err
	}
	go func() { _ = srv.Serve(ln) }()
	c.api = "http://" + ln.Addr().String() + "/api/v10"

	_, line, err := c.start(ctx, "broker", "gatehouse broker: NATS at ", nil,
		"broker", "-listen", "127.0.0.1:0", "-data-dir", filepath.Join(dir, "nats"), "-log-level", "warn")
	if err != nil {
		return c, err
	}
	c.natsURL, _, _ = strings.Cut(line, ",")
	l2, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return c, err
	}
	c.coordAddr = l2.Addr().String() // a fixed port, so a restarted coordinator is found again
	l2.Close()
	if err := c.startCoordinator(ctx); err != nil {
		return c, err
	}
	for _, id := range []string{"a", "b"} {
		if err := c.startNode(ctx, id); err != nil {
			return c, err
		}
	}
	if err := c.waitSim(ctx, 30*time.Second, "every shard connected", func(st sim.Stats) bool {
		return st.Readies >= int64(cfg.Shards) && st.Connections == int64(cfg.Shards)
	}); err != nil {
		return c, err
	}
	// The startup rebalance moves shards from the first node to the second.
	time.Sleep(cfg.LeaseTTL)
	if err := c.waitSim(ctx, 30*time.Second, "every shard connected after the rebalance", func(st sim.Stats) bool {
		return st.Connections == int64(cfg.Shards)
	}); err != nil {
		return c, err
	}
	c.col.mark()
	if err := c.startConsumer(ctx); err != nil {
		return c, err
	}
	if err := waitFor(ctx, 20*time.Second, "the consumer's first event", func() bool { return c.col.sinceMark() > 0 }); err != nil {
		return c, err
	}
	return c, nil
}

// start runs a gatehouse child and returns the rest of its ready line.
func (c *cluster) start(ctx context.Context, name, ready string, onLine func(string), args ...string) (*loadtest.Child, string, error) {
	cfg := loadtest.ChildConfig{Exe: c.cfg.Exe, Args: args, Env: c.env(), OnLine: onLine}
	if ready != "" {
		cfg.Ready = []string{ready}
	}
	p, err := loadtest.StartChild(ctx, cfg)
	if err != nil {
		return nil, "", fmt.Errorf("chaos: %s: %w", name, err)
	}
	line := ""
	if ready != "" {
		line = p.Line(0)
	}
	switch {
	case name == "broker":
		c.broker = p
	case name == "coordinator":
		c.coord = p
	case name == "consumer":
		c.consumer = p
	default:
		c.nodes[strings.TrimPrefix(name, "node ")] = p
	}
	return p, line, nil
}

func (c *cluster) startCoordinator(ctx context.Context) error {
	_, _, err := c.start(ctx, "coordinator", "gatehouse coordinator: API on ", nil, "coordinator",
		"-listen", c.coordAddr, "-nats", c.natsURL, "-api", c.api, "-token", "sim-token",
		"-identify-interval", "300ms", "-lease-ttl", c.cfg.LeaseTTL.String(), "-log-level", "warn")
	return err
}

func (c *cluster) startNode(ctx context.Context, id string) error {
	_, _, err := c.start(ctx, "node "+id, "gatehouse gateway: ", nil, "gateway",
		"-api", c.api, "-token", "sim-token", "-shards", "assigned", "-shard-count", fmt.Sprint(c.cfg.Shards),
		"-coordinator", "http://"+c.coordAddr, "-nats", c.natsURL, "-node-id", id,
		"-identify-interval", "300ms", "-compress", "none", "-log-level", "warn",
		"-silence-after", "2s", "-silence-events", "20")
	return err
}

// startConsumer runs the bot worker: gatehouse tail through the durable,
// exclusive consumer "chaos", every line to the collector.
func (c *cluster) startConsumer(ctx context.Context) error {
	_, _, err := c.start(ctx, "consumer", "", c.col.process(), "tail",
		"-nats", c.natsURL, "-durable", "chaos", "-exclusive", "-from", "all")
	return err
}

// down stops every child and the simulator.
func (c *cluster) down() {
	stopAll := func(ps ...*loadtest.Child) {
		for _, p := range ps {
			if p != nil && p.Running() {
				_ = p.Stop(15 * time.Second)
			}
		}
	}
	stopAll(c.consumer)
	for _, p := range c.nodes {
		stopAll(p)
	}
	stopAll(c.coord, c.broker)
	if c.sim != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = c.sim.Shutdown(ctx)
	}
}

// waitSim polls the simulator's stats until cond holds.
func (c *cluster) waitSim(ctx context.Context, d time.Duration, what string, cond func(sim.Stats) bool) error {
	return waitFor(ctx, d, what, func() bool { return cond(c.sim.Stats()) })
}

// waitFor polls cond every 20ms for up to d.
func waitFor(ctx context.Context, d time.Duration, what string, cond func() bool) error {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("chaos: timed out after %v waiting for %s", d, what)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	return nil
}

// coordPost posts a JSON body to the coordinator with the admin token.
func (c *cluster) coordPost(ctx context.Context, path string, body any) error {
	b, _ := json.Marshal(body)
	req, err := http.NewRequestWithContext(ctx, "POST", "http://"+c.coordAddr+path, bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+adminToken)
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("chaos: POST %s: %s", path, resp.Status)
	}
	return nil
}

// coordGet gets a JSON answer from the coordinator with the admin token.
func (c *cluster) coordGet(ctx context.Context, path string, out any) error {
	req, err := http.NewRequestWithContext(ctx, "GET", "http://"+c.coordAddr+path, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+adminToken)
	resp, err := c.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("chaos: GET %s: %s", path, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

// coordUp reports whether the coordinator answers.
func (c *cluster) coordUp(ctx context.Context) bool {
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+c.coordAddr+"/v1/shards", nil)
	req.Header.Set("Authorization", "Bearer "+adminToken)
	resp, err := c.hc.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == 200
}

// shardConns returns the connections attached to each shard's sessions of
// the cluster's shard count.
func (c *cluster) shardConns() map[int]int64 {
	out := map[int]int64{}
	for _, s := range c.sim.Stats().Shards {
		if s.NumShards == c.cfg.Shards {
			out[s.Shard] += s.Connections
		}
	}
	return out
}

// shardResumes returns the RESUMEs of one shard.
func (c *cluster) shardResumes(shard int) int64 {
	for _, s := range c.sim.Stats().Shards {
		if s.NumShards == c.cfg.Shards && s.Shard == shard {
			return s.Resumes
		}
	}
	return 0
}
