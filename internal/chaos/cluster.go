package chaos

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
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
	cfg     Config
	dir     string
	logs    []*os.File // the children's stderr, closed by down
	sim     *sim.Server
	api     string            // the simulator's REST base
	brokers []*loadtest.Child // one, or the three nodes of a NATS cluster
	// brokerNames are a cluster's server names, as brokers (the default
	// -server-name: gatehouse-<route port>).
	brokerNames []string
	natsURL     string
	count       atomic.Int64      // the bot's shard count in force (a reshard moves it)
	coords      []*loadtest.Child // the coordinator replicas, by index
	coordAddrs  []string          // their fixed addresses, so a restarted one is found again
	nodes       map[string]*loadtest.Child
	consumer    *loadtest.Child
	col         *collector
	hc          *http.Client
}

func (c *cluster) env() []string {
	return []string{"GATEHOUSE_ADMIN_TOKEN=" + adminToken, "GATEHOUSE_NODE_TOKEN=" + nodeToken}
}

// up starts everything and waits until every shard is connected, the
// startup rebalance has settled and the consumer handles events.
func up(ctx context.Context, cfg Config, dir string, opts options) (*cluster, error) {
	c := &cluster{cfg: cfg, dir: dir, nodes: map[string]*loadtest.Child{}, col: newCollector(), hc: &http.Client{Timeout: 10 * time.Second}}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("chaos: %w", err)
	}
	c.count.Store(int64(cfg.Shards))
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

	if opts.leaseTTL > 0 {
		c.cfg.LeaseTTL = opts.leaseTTL
	}
	if err := c.startBrokers(ctx, opts.natsCluster); err != nil {
		return c, err
	}
	for i := range max(opts.coordinators, 1) {
		l2, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return c, err
		}
		c.coordAddrs = append(c.coordAddrs, l2.Addr().String())
		l2.Close()
		c.coords = append(c.coords, nil)
		_ = i
	}
	for i := range c.coordAddrs {
		if err := c.startCoordinator(ctx, i); err != nil {
			return c, err
		}
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
	time.Sleep(c.cfg.LeaseTTL)
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

// logFile is where a child's stderr goes: DIR/<name>.log, appended to
// across restarts, so a failed scenario can be read afterwards. Nil when
// it cannot be opened (the logs are then discarded).
func (c *cluster) logFile(name string) io.Writer {
	f, err := os.OpenFile(filepath.Join(c.dir, strings.ReplaceAll(name, " ", "-")+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil
	}
	c.logs = append(c.logs, f)
	return f
}

// start runs a gatehouse child and returns the rest of its ready line.
func (c *cluster) start(ctx context.Context, name, ready string, onLine func(string), args ...string) (*loadtest.Child, string, error) {
	cfg := loadtest.ChildConfig{Exe: c.cfg.Exe, Args: args, Env: c.env(), OnLine: onLine, Logs: c.logFile(name)}
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
	case strings.HasPrefix(name, "broker"):
		c.brokers = append(c.brokers, p)
	case strings.HasPrefix(name, "coordinator "):
		i, _ := strconv.Atoi(strings.TrimPrefix(name, "coordinator "))
		c.coords[i] = p
	case name == "consumer":
		c.consumer = p
	default:
		c.nodes[strings.TrimPrefix(name, "node ")] = p
	}
	return p, line, nil
}

func (c *cluster) startCoordinator(ctx context.Context, i int) error {
	_, _, err := c.start(ctx, fmt.Sprintf("coordinator %d", i), "gatehouse coordinator: API on ", nil, "coordinator",
		"-listen", c.coordAddrs[i], "-nats", c.natsURL, "-nats-nkey", c.seed("coordinator"), "-api", c.api, "-token", "sim-token", "-replica-id", fmt.Sprintf("c%d", i),
		"-identify-interval", "300ms", "-lease-ttl", c.cfg.LeaseTTL.String(), "-log-level", "warn")
	return err
}

// seed is the broker's credential of an identity (gatehouse broker makes
// them in its data directory).
func (c *cluster) seed(name string) string {
	return filepath.Join(c.dir, "nats", "credentials", name+".nk")
}

// startBrokers runs gatehouse broker, or three of them as a NATS cluster
// with every stream and bucket at three replicas, sharing one set of
// credentials.
func (c *cluster) startBrokers(ctx context.Context, cluster bool) error {
	if !cluster {
		_, line, err := c.start(ctx, "broker", "gatehouse broker: NATS at ", nil,
			"broker", "-listen", "127.0.0.1:0", "-data-dir", filepath.Join(c.dir, "nats"), "-log-level", "warn")
		c.natsURL, _, _ = strings.Cut(line, ",")
		return err
	}
	creds := filepath.Join(c.dir, "nats", "credentials")
	mk, err := loadtest.StartChild(ctx, loadtest.ChildConfig{Exe: c.cfg.Exe, Args: []string{"credentials", "-dir", creds}})
	if err != nil {
		return err
	}
	<-mk.Done()
	var ports []int
	for range 3 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
		l.Close()
	}
	urls := make([]string, 3)
	errs := make([]error, 3)
	logs := []io.Writer{c.logFile("broker-0"), c.logFile("broker-1"), c.logFile("broker-2")}
	started := make([]*loadtest.Child, 3)
	var wg sync.WaitGroup
	for i := range 3 {
		wg.Go(func() {
			var routes []string
			for j, p := range ports {
				if j != i {
					routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", p))
				}
			}
			p, err := loadtest.StartChild(ctx, loadtest.ChildConfig{Exe: c.cfg.Exe, Env: c.env(), Ready: []string{"gatehouse broker: NATS at "}, Logs: logs[i],
				Args: []string{"broker", "-listen", "127.0.0.1:0", "-data-dir", filepath.Join(c.dir, fmt.Sprintf("nats%d", i)), "-log-level", "warn",
					"-nats-users", filepath.Join(creds, "users.json"), "-cluster", fmt.Sprintf("127.0.0.1:%d", ports[i]),
					"-routes", strings.Join(routes, ","), "-replicas", "3"}})
			errs[i] = err
			if err == nil {
				urls[i], _, _ = strings.Cut(p.Line(0), ",")
				started[i] = p
			}
		})
	}
	wg.Wait()
	for _, p := range started {
		if p != nil {
			c.brokers = append(c.brokers, p)
		}
	}
	for _, port := range ports {
		c.brokerNames = append(c.brokerNames, fmt.Sprintf("gatehouse-%d", port))
	}
	for _, err := range errs {
		if err != nil {
			return fmt.Errorf("chaos: NATS cluster: %w", err)
		}
	}
	c.natsURL = strings.Join(urls, ",")
	return nil
}

// coordinatorURLs is every replica's URL, as nodes take them.
func (c *cluster) coordinatorURLs() string {
	urls := make([]string, len(c.coordAddrs))
	for i, a := range c.coordAddrs {
		urls[i] = "http://" + a
	}
	return strings.Join(urls, ",")
}

func (c *cluster) startNode(ctx context.Context, id string) error {
	_, _, err := c.start(ctx, "node "+id, "gatehouse gateway: ", nil, "gateway",
		"-api", c.api, "-token", "sim-token", "-shards", "assigned", "-shard-count", fmt.Sprint(c.cfg.Shards),
		"-coordinator", c.coordinatorURLs(), "-nats", c.natsURL, "-nats-nkey", c.seed("node"), "-node-id", id,
		"-identify-interval", "300ms", "-compress", "none", "-log-level", "warn",
		"-silence-after", "2s", "-silence-events", "20")
	return err
}

// startConsumer runs the bot worker: gatehouse tail through the durable,
// exclusive consumer "chaos", every line to the collector.
func (c *cluster) startConsumer(ctx context.Context) error {
	_, _, err := c.start(ctx, "consumer", "", c.col.process(), "tail",
		"-nats", c.natsURL, "-nats-nkey", c.seed("tail"), "-durable", "chaos", "-exclusive", "-from", "all")
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
	stopAll(c.coords...)
	stopAll(c.brokers...)
	for _, f := range c.logs {
		_ = f.Close()
	}
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

// coordDo sends a request with the admin token to the first replica that
// answers (a follower forwards writes to the leader) and decodes a 2xx
// answer into out.
func (c *cluster) coordDo(ctx context.Context, method, path string, body, out any) error {
	var err error
	for _, addr := range c.coordAddrs {
		var rd io.Reader
		if body != nil {
			b, _ := json.Marshal(body)
			rd = bytes.NewReader(b)
		}
		req, rerr := http.NewRequestWithContext(ctx, method, "http://"+addr+path, rd)
		if rerr != nil {
			return rerr
		}
		req.Header.Set("Authorization", "Bearer "+adminToken)
		req.Header.Set("Content-Type", "application/json")
		resp, derr := c.hc.Do(req)
		if derr != nil {
			err = derr
			continue
		}
		data, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode/100 != 2 {
			err = fmt.Errorf("chaos: %s %s: %s: %s", method, path, resp.Status, bytes.TrimSpace(data))
			if resp.StatusCode == http.StatusServiceUnavailable || resp.StatusCode == http.StatusBadGateway {
				continue
			}
			return err
		}
		if out != nil {
			return json.Unmarshal(data, out)
		}
		return nil
	}
	return err
}

// coordPost posts a JSON body to the coordinators with the admin token.
func (c *cluster) coordPost(ctx context.Context, path string, body any) error {
	return c.coordDo(ctx, "POST", path, body, nil)
}

// coordGet gets a JSON answer from the coordinators with the admin token.
func (c *cluster) coordGet(ctx context.Context, path string, out any) error {
	return c.coordDo(ctx, "GET", path, nil, out)
}

// coordUp reports whether some coordinator leads and answers.
func (c *cluster) coordUp(ctx context.Context) bool {
	return c.leader(ctx) >= 0
}

// leader returns the index of the replica that leads, or -1.
func (c *cluster) leader(ctx context.Context) int {
	for i, addr := range c.coordAddrs {
		if c.coords[i] == nil || !c.coords[i].Running() {
			continue
		}
		if loadtest.ReplicaRole(ctx, c.hc, "http://"+addr, adminToken) == "leader" {
			return i
		}
	}
	return -1
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
