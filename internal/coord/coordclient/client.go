// Package coordclient is the coordinator's Go client: for gateway nodes,
// an identify gate that asks the coordinator's global queue before every
// IDENTIFY (so shards started on many nodes at once still keep Discord's
// identify limit) and the Agent that runs the shards the coordinator
// leases to the node; for operators' tools, the read and command calls
// the CLI makes. The types it exchanges come from coordapi, which the
// coordinator serves too.
package coordclient

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/coord/coordapi"
	"github.com/gatehouse-dev/gatehouse/internal/identify"
)

// ErrRefused means the coordinator refused a request for good (a bad token,
// a shard out of range); retrying would not help. Budget refusals wrap
// identify.ErrBudgetExhausted instead.
var ErrRefused = errors.New("coordclient: refused by the coordinator")

// ErrDrained is what Agent.Run returns, with AgentConfig.ExitWhenDrained,
// once the node was drained and holds no shard: it may exit.
var ErrDrained = errors.New("coordclient: node drained")

// Config configures a Client.
type Config struct {
	// URL is the coordinator's base URL, e.g. http://127.0.0.1:8080, or
	// the URLs of several replicas separated by commas: any of them
	// answers (a follower forwards writes to the leader), and a request
	// that cannot reach one, or finds no leader there, goes to the next.
	URL string
	// Token is a node (or worker) token of the coordinator.
	Token string
	// HTTP is the client used for requests; it must not have a timeout
	// shorter than a fleet start, since identify requests wait in the
	// queue. Default: a client without a timeout.
	HTTP *http.Client
	// RetryMin and RetryMax bound the backoff while the coordinator cannot
	// be reached. Defaults 250ms and 10s.
	RetryMin, RetryMax time.Duration
	// Logger receives retries. Default slog.Default().
	Logger *slog.Logger
}

// Client talks to a coordinator. Its Wait and Identified methods make it a
// gateway identify gate. Close stops its background reporter.
type Client struct {
	cfg   Config
	bases []*url.URL
	cur   atomic.Int64 // the index of the replica in use
	log   *slog.Logger

	ready chan int        // shards whose READY is to be reported
	ctx   context.Context // ends with Close
	stop  context.CancelFunc
	wg    sync.WaitGroup

	mu        sync.Mutex
	reporting bool // the reporter runs
	closed    bool
}

// New checks cfg and starts the client's reporter goroutine.
func New(cfg Config) (*Client, error) {
	var bases []*url.URL
	for part := range strings.SplitSeq(cfg.URL, ",") {
		u, err := url.Parse(strings.TrimRight(strings.TrimSpace(part), "/"))
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("coordclient: URL %q: want http(s)://host:port, or several separated by commas", part)
		}
		bases = append(bases, u)
	}
	if cfg.Token == "" {
		return nil, errors.New("coordclient: a coordinator token is required")
	}
	if cfg.HTTP == nil {
		cfg.HTTP = &http.Client{}
	}
	if cfg.RetryMin <= 0 {
		cfg.RetryMin = 250 * time.Millisecond
	}
	if cfg.RetryMax < cfg.RetryMin {
		cfg.RetryMax = max(10*time.Second, cfg.RetryMin)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Client{cfg: cfg, bases: bases, log: cfg.Logger, ready: make(chan int, 4096), ctx: ctx, stop: cancel}, nil
}

// URL is the base URL of the replica in use.
func (c *Client) URL() string { return c.base().String() }

// base is the replica in use.
func (c *Client) base() *url.URL { return c.bases[int(c.cur.Load())%len(c.bases)] }

// failover moves to the next replica after from failed.
func (c *Client) failover(from int64) {
	if len(c.bases) > 1 && c.cur.CompareAndSwap(from, from+1) {
		c.log.Info("coordinator unreachable or without a leader; trying the next replica", "url", c.base().String())
	}
}

// Close stops the READY reporter (started by the first Identified) and
// waits for it. READY reports not yet sent are dropped: they only move a
// bucket's next slot later.
func (c *Client) Close() error {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	c.stop()
	c.wg.Wait()
	return nil
}

// Wait blocks until the coordinator grants shard an IDENTIFY, or ctx ends.
// While the coordinator cannot be reached it retries with backoff: a shard
// never identifies without a grant. It returns an error wrapping
// identify.ErrBudgetExhausted or ErrRefused when the coordinator says no.
func (c *Client) Wait(ctx context.Context, shard int) error {
	backoff := c.cfg.RetryMin
	for {
		err := c.post(ctx, "/v1/identify/"+strconv.Itoa(shard), nil)
		if err == nil || ctx.Err() != nil || errors.Is(err, ErrRefused) || errors.Is(err, identify.ErrBudgetExhausted) {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return err
		}
		wait := backoff/2 + rand.N(backoff/2+1)
		c.log.Warn("identify queue unreachable; retrying", "shard", shard, "in", wait.Round(time.Millisecond), "err", err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
		backoff = min(2*backoff, c.cfg.RetryMax)
	}
}

// Identified reports shard's READY without blocking; the reporter sends it.
func (c *Client) Identified(shard int, at time.Time) {
	c.mu.Lock()
	if !c.reporting && !c.closed {
		c.reporting = true
		c.wg.Go(func() { c.report(c.ctx) })
	}
	c.mu.Unlock()
	select {
	case c.ready <- shard:
	default:
		c.log.Warn("READY report dropped: the coordinator is not keeping up", "shard", shard)
	}
}

// report sends READY reports until ctx ends.
func (c *Client) report(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case shard := <-c.ready:
			rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			err := c.post(rctx, "/v1/identify/"+strconv.Itoa(shard)+"/ready", nil)
			cancel()
			if err != nil && ctx.Err() == nil {
				c.log.Warn("reporting a READY to the coordinator failed", "shard", shard, "err", err)
			}
		}
	}
}

// post sends a POST without a body and decodes a JSON answer into out
// (when not nil).
func (c *Client) post(ctx context.Context, path string, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://replica"+path, nil)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrRefused, err)
	}
	return c.do(req, out)
}

// do sends req with the token to the replica in use; when that replica
// cannot be reached or has no leader it tries the next, each once.
// Transient failures (network, 5xx, 429 other than the budget) come back
// as plain errors; definitive ones wrap ErrRefused or
// identify.ErrBudgetExhausted.
func (c *Client) do(req *http.Request, out any) error {
	req.Header.Set("Authorization", "Bearer "+c.cfg.Token)
	var err error
	for range len(c.bases) {
		cur := c.cur.Load()
		u := c.bases[int(cur)%len(c.bases)]
		r := req.Clone(req.Context())
		r.URL.Scheme, r.URL.Host, r.Host = u.Scheme, u.Host, u.Host
		r.URL.Path = u.Path + req.URL.Path
		if req.GetBody != nil {
			if r.Body, err = req.GetBody(); err != nil {
				return err
			}
		}
		var again bool
		again, err = c.once(r, out)
		if !again || req.Context().Err() != nil {
			return err
		}
		c.failover(cur)
	}
	return err
}

// once sends one request; again says another replica may do better.
func (c *Client) once(req *http.Request, out any) (again bool, err error) {
	resp, err := c.cfg.HTTP.Do(req)
	if err != nil {
		return true, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20)) // GET /v1/shards of a large fleet is megabytes
	if err != nil {
		return true, err
	}
	if resp.StatusCode/100 == 2 {
		if out != nil {
			return false, json.Unmarshal(body, out)
		}
		return false, nil
	}
	var e coordapi.ErrorBody
	json.Unmarshal(body, &e)
	if e.Error == "" {
		e.Error = strings.TrimSpace(string(body))
	}
	switch {
	case e.Code == coordapi.CodeBudgetExhausted:
		return false, fmt.Errorf("%w (coordinator: %s)", identify.ErrBudgetExhausted, e.Error)
	case resp.StatusCode == http.StatusBadGateway, resp.StatusCode == http.StatusServiceUnavailable, resp.StatusCode == http.StatusGatewayTimeout:
		return true, fmt.Errorf("coordinator: %s: %s", resp.Status, e.Error)
	case resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests:
		return false, fmt.Errorf("coordinator: %s: %s", resp.Status, e.Error)
	}
	return false, fmt.Errorf("%w: %s: %s", ErrRefused, resp.Status, e.Error)
}
