package loadtest

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// BeatConfig describes a Shardman beat benchmark: Workers simulated bot
// processes each take a shard with GET /connect and then POST /beat every
// Interval, against a `gatehouse coordinator` child process.
type BeatConfig struct {
	Exe      string        // the gatehouse binary; required
	Workers  int           // default 10,000
	Interval time.Duration // between one worker's beats; default 1s
	Warmup   time.Duration // after every worker connected; default 3s
	Measure  time.Duration // default 15s
	Logs     io.Writer     // the coordinator's stderr; nil discards
	// ViaFollower runs two coordinator replicas on a gatehouse broker and
	// sends every request to the one that does not lead, which forwards
	// it: the cost of a hop through a follower.
	ViaFollower bool
}

// BeatResult is one run.
type BeatResult struct {
	Workers int
	Window  time.Duration
	Beats   int64 // answered 204 in the window
	Errors  int64 // any other answer or a transport error
	// Latency percentiles of the window's beats, request written to answer
	// read, as the worker sees them.
	P50, P90, P99, Max time.Duration
	FirstError         string  // the first error in the window, if any
	CoordCPUSeconds    float64 // the coordinator processes' CPU in the window (both replicas with ViaFollower)
	LoadCPUSeconds     float64 // this process (the workers) in the window
}

// latencyHist counts latencies in 10 µs buckets up to 2 s; the last
// bucket takes everything slower.
type latencyHist struct {
	buckets [200_001]atomic.Int64
	max     atomic.Int64
	on      atomic.Bool
}

const histStep = 10 * time.Microsecond

func (h *latencyHist) add(d time.Duration) {
	if !h.on.Load() {
		return
	}
	i := min(int(d/histStep), len(h.buckets)-1)
	h.buckets[i].Add(1)
	for {
		m := h.max.Load()
		if int64(d) <= m || h.max.CompareAndSwap(m, int64(d)) {
			return
		}
	}
}

// quantile returns the q-quantile (0 < q ≤ 1), as the upper edge of its
// bucket.
func (h *latencyHist) quantile(q float64) time.Duration {
	var total int64
	for i := range h.buckets {
		total += h.buckets[i].Load()
	}
	if total == 0 {
		return 0
	}
	rank := int64(q*float64(total) + 0.5)
	var seen int64
	for i := range h.buckets {
		if seen += h.buckets[i].Load(); seen >= max(rank, 1) {
			return time.Duration(i+1) * histStep
		}
	}
	return time.Duration(h.max.Load())
}

// RunBeats runs one beat benchmark.
func RunBeats(ctx context.Context, cfg BeatConfig) (BeatResult, error) {
	if cfg.Exe == "" {
		return BeatResult{}, errors.New("loadtest: Exe is required")
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 10_000
	}
	def(&cfg.Interval, time.Second)
	def(&cfg.Warmup, 3*time.Second)
	def(&cfg.Measure, 15*time.Second)
	logs := cfg.Logs
	if logs == nil {
		logs = io.Discard
	}
	const secret = "bench-worker-secret"
	env := []string{"GATEHOUSE_ADMIN_TOKEN=bench-admin-secret", "GATEHOUSE_WORKER_TOKEN=" + secret}
	coArgs := []string{"coordinator", "-listen", "127.0.0.1:0", "-shard-count", strconv.Itoa(cfg.Workers),
		"-connects-per-minute", strconv.Itoa(10 * cfg.Workers), "-beat-timeout", (10 * cfg.Interval).String(), "-log-level", "warn"}
	var coords []*Child
	defer func() {
		for _, c := range coords {
			c.stop()
		}
	}()
	base := ""
	if cfg.ViaFollower {
		rs, err := StartReplicas(ctx, cfg.Exe, 2, env, coArgs[1:], logs)
		if err != nil {
			return BeatResult{}, err
		}
		defer rs.Stop()
		leader, err := rs.WaitLeader(ctx, 30*time.Second)
		if err != nil {
			return BeatResult{}, err
		}
		base = rs.URLs[1-leader]
		coords = append(coords, rs.Coords...) // rs.Stop stops them, then the broker
	} else {
		co, err := StartChild(ctx, ChildConfig{Exe: cfg.Exe, Args: coArgs, Env: env, Logs: logs, Ready: []string{"gatehouse coordinator: API on "}})
		if err != nil {
			return BeatResult{}, err
		}
		coords = append(coords, co)
		base, _, _ = strings.Cut(co.lines[0], " ")
	}

	// Connecting is not measured: one shared client does it.
	tr := &http.Transport{MaxIdleConnsPerHost: 64, DialContext: (&net.Dialer{Timeout: 10 * time.Second}).DialContext}
	hc := &http.Client{Transport: tr, Timeout: 30 * time.Second}

	// Connect every worker, a few at a time.
	sessions := make([]string, cfg.Workers)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 64)
	var connectErr atomic.Pointer[error]
	for i := range sessions {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			id, err := shardmanConnect(ctx, hc, base, secret)
			if err != nil {
				connectErr.CompareAndSwap(nil, &err)
				return
			}
			sessions[i] = id
		})
	}
	wg.Wait()
	tr.CloseIdleConnections()
	if p := connectErr.Load(); p != nil {
		return BeatResult{}, fmt.Errorf("loadtest: connecting workers: %w", *p)
	}

	var hist latencyHist
	var beats, errs atomic.Int64
	var firstErr atomic.Pointer[error]
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	addr := strings.TrimPrefix(base, "http://")
	for _, id := range sessions {
		body := `{"session_id":"` + id + `","guild_count":1000,"latency":0.05,"extra":null}`
		req := []byte("POST /beat HTTP/1.1\r\nHost: " + addr + "\r\nAuthorization: " + secret +
			"\r\nContent-Type: application/json\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body)
		wg.Go(func() {
			w := beatWorker{addr: addr, req: req}
			defer w.close()
			// A random phase, so beats spread over the interval.
			t := time.NewTimer(rand.N(cfg.Interval))
			defer t.Stop()
			for {
				select {
				case <-runCtx.Done():
					return
				case <-t.C:
				}
				t.Reset(cfg.Interval)
				start := time.Now()
				err := w.beat()
				if runCtx.Err() != nil {
					return
				}
				if err != nil {
					if hist.on.Load() {
						errs.Add(1)
						firstErr.CompareAndSwap(nil, &err)
					}
					continue
				}
				hist.add(time.Since(start))
				if hist.on.Load() {
					beats.Add(1)
				}
			}
		})
	}
	select {
	case <-time.After(cfg.Warmup):
	case <-ctx.Done():
		cancel()
		wg.Wait()
		return BeatResult{}, ctx.Err()
	}
	cpu := func() (time.Duration, error) {
		var sum time.Duration
		for _, c := range coords {
			d, err := ProcessCPU(c.PID())
			if err != nil {
				return 0, err
			}
			sum += d
		}
		return sum, nil
	}
	c0, err := cpu()
	if err != nil {
		return BeatResult{}, err
	}
	l0, t0 := SelfCPU(), time.Now()
	hist.on.Store(true)
	select {
	case <-time.After(cfg.Measure):
	case <-ctx.Done():
	}
	hist.on.Store(false)
	c1, _ := cpu()
	l1, t1 := SelfCPU(), time.Now()
	cancel()
	wg.Wait()
	if ctx.Err() != nil {
		return BeatResult{}, ctx.Err()
	}
	var first string
	if p := firstErr.Load(); p != nil {
		first = (*p).Error()
	}
	return BeatResult{
		FirstError: first, Workers: cfg.Workers, Window: t1.Sub(t0), Beats: beats.Load(), Errors: errs.Load(),
		P50: hist.quantile(0.50), P90: hist.quantile(0.90), P99: hist.quantile(0.99), Max: time.Duration(hist.max.Load()),
		CoordCPUSeconds: (c1 - c0).Seconds(), LoadCPUSeconds: (l1 - l0).Seconds(),
	}, nil
}

// shardmanConnect takes a session. A 503 (a follower that has not yet
// seen the leader's record) is tried again, as a worker would, for up to
// 10 s.
func shardmanConnect(ctx context.Context, hc *http.Client, base, secret string) (string, error) {
	deadline := time.Now().Add(10 * time.Second)
	for {
		id, err := shardmanConnectOnce(ctx, hc, base, secret)
		if !errors.Is(err, errUnavailable) || time.Now().After(deadline) {
			return id, err
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

var errUnavailable = errors.New("503")

func shardmanConnectOnce(ctx context.Context, hc *http.Client, base, secret string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/connect", nil)
	if err != nil {
		return "", err
	}
	req.Header.Set("Authorization", secret)
	resp, err := hc.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode == http.StatusServiceUnavailable {
		return "", fmt.Errorf("GET /connect: %w: %s", errUnavailable, body)
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET /connect: %s: %s", resp.Status, body)
	}
	var a struct {
		SessionID string `json:"session_id"`
	}
	if err := json.Unmarshal(body, &a); err != nil || a.SessionID == "" {
		return "", fmt.Errorf("GET /connect: unexpected answer %q", body)
	}
	return a.SessionID, nil
}

// beatWorker is one worker's keep-alive connection, speaking just enough
// HTTP/1.1 to beat, so that the load generator costs little next to the
// coordinator it measures.
type beatWorker struct {
	addr string
	req  []byte
	conn net.Conn
	rd   *bufio.Reader
}

// beat sends one beat and reads the answer, which must be 204.
func (w *beatWorker) beat() error {
	if w.conn == nil {
		c, err := net.DialTimeout("tcp", w.addr, 10*time.Second)
		if err != nil {
			return err
		}
		w.conn, w.rd = c, bufio.NewReaderSize(c, 512)
	}
	w.conn.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := w.conn.Write(w.req); err != nil {
		w.close()
		return err
	}
	status, err := w.rd.ReadString('\n')
	if err != nil {
		w.close()
		return err
	}
	length := 0
	for {
		line, err := w.rd.ReadString('\n')
		if err != nil {
			w.close()
			return err
		}
		if line == "\r\n" {
			break
		}
		if k, v, ok := strings.Cut(line, ":"); ok && strings.EqualFold(k, "Content-Length") {
			length, _ = strconv.Atoi(strings.TrimSpace(v))
		}
	}
	if length > 0 {
		if _, err := w.rd.Discard(length); err != nil {
			w.close()
			return err
		}
	}
	if !strings.HasPrefix(status, "HTTP/1.1 204") {
		return fmt.Errorf("POST /beat: %s", strings.TrimSpace(status))
	}
	return nil
}

func (w *beatWorker) close() {
	if w.conn != nil {
		w.conn.Close()
		w.conn = nil
	}
}
