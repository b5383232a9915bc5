package sim_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/gatehouse-dev/gatehouse/internal/discord"
	"github.com/gatehouse-dev/gatehouse/internal/discord/codec"
	"github.com/gatehouse-dev/gatehouse/internal/discord/sim"
)

// This file holds the suite's raw gateway client: a bare WebSocket reader
// that decodes transport compression, parses every payload and keeps the
// wire bytes, so the tests can check the simulator byte for byte.

const (
	testToken = "test-token"
	// waitTimeout bounds every wait for something that must happen. It is
	// generous on purpose: the suite asserts order and counts, not speed.
	waitTimeout = 10 * time.Second
	// quietPeriod is how long a test watches for something that must not
	// happen.
	quietPeriod = 500 * time.Millisecond
)

// zlibSuffix ends every zlib-stream payload (Z_SYNC_FLUSH).
var zlibSuffix = []byte{0x00, 0x00, 0xff, 0xff}

// baseConfig is the configuration most tests start from: a few guilds, a
// short identify window, no generated events and a heartbeat interval long
// enough that tests which do not care need not heartbeat.
func baseConfig() sim.Config {
	return sim.Config{
		Token:               testToken,
		Guilds:              20,
		IdentifyInterval:    50 * time.Millisecond,
		IdentifyRejectDelay: 50 * time.Millisecond,
		HeartbeatInterval:   30 * time.Second,
		Seed:                1,
	}
}

// simServer is a simulator serving on 127.0.0.1:0 for one test.
type simServer struct {
	t    *testing.T
	srv  *sim.Server
	cfg  sim.Config
	addr string // host:port
	hc   *http.Client

	shutOnce sync.Once
	served   chan error

	paceMu sync.Mutex
	paces  map[int]*bucketPace
}

// bucketPace is the client-side identify queue of one bucket: the next
// IDENTIFY waits for one interval after the previous READY.
type bucketPace struct {
	mu        sync.Mutex
	lastReady time.Time
}

// startSim starts a simulator and shuts it down when the test ends, checking
// that Shutdown succeeds and Serve returns nil.
func startSim(t *testing.T, cfg sim.Config) *simServer {
	t.Helper()
	srv, err := sim.New(cfg)
	if err != nil {
		t.Fatalf("sim.New(%+v) = %v", cfg, err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &simServer{
		t: t, srv: srv, cfg: cfg, addr: ln.Addr().String(),
		hc:     &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: waitTimeout},
		served: make(chan error, 1),
		paces:  map[int]*bucketPace{},
	}
	go func() { s.served <- srv.Serve(ln) }()
	t.Cleanup(func() { s.shutdown(t) })
	return s
}

// shutdown stops the simulator once and checks Shutdown and Serve.
func (s *simServer) shutdown(t *testing.T) {
	t.Helper()
	s.shutOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		defer cancel()
		if err := s.srv.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown = %v, want nil", err)
		}
		select {
		case err := <-s.served:
			if err != nil {
				t.Errorf("Serve after Shutdown = %v, want nil", err)
			}
		case <-time.After(waitTimeout):
			t.Errorf("Serve did not return within %v of Shutdown", waitTimeout)
		}
		s.hc.CloseIdleConnections()
	})
}

func (s *simServer) token() string {
	if s.cfg.Token == "" {
		return "sim-token"
	}
	return s.cfg.Token
}

func (s *simServer) maxConcurrency() int {
	if s.cfg.MaxConcurrency < 1 {
		return 1
	}
	return s.cfg.MaxConcurrency
}

func (s *simServer) identifyInterval() time.Duration {
	if s.cfg.IdentifyInterval <= 0 {
		return discord.IdentifyIntervalMillis * time.Millisecond
	}
	return s.cfg.IdentifyInterval
}

// baseURL is the gateway URL without a path, as /gateway/bot announces it.
func (s *simServer) baseURL() string { return "ws://" + s.addr }

// do sends one HTTP request. auth is the whole Authorization header value
// ("" for none).
func (s *simServer) do(t *testing.T, method, path, auth string, body []byte) (int, http.Header, []byte) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(t.Context(), method, "http://"+s.addr+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := s.hc.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading body: %v", method, path, err)
	}
	return resp.StatusCode, resp.Header, b
}

// gatewayBot calls GET /api/v10/gateway/bot with the right token and decodes it.
func (s *simServer) gatewayBot(t *testing.T) discord.GatewayBot {
	t.Helper()
	status, _, body := s.do(t, "GET", "/api/v10/gateway/bot", "Bot "+s.token(), nil)
	if status != http.StatusOK {
		t.Fatalf("GET /api/v10/gateway/bot = %d %s, want 200", status, body)
	}
	var gb discord.GatewayBot
	if err := json.Unmarshal(body, &gb); err != nil {
		t.Fatalf("GET /api/v10/gateway/bot body %s: %v", body, err)
	}
	return gb
}

// statsJSON mirrors GET /sim/stats as documented.
type statsJSON struct {
	Connections            int64            `json:"connections"`
	ConnectionsTotal       int64            `json:"connections_total"`
	Identifies             int64            `json:"identifies"`
	IdentifyViolations     int64            `json:"identify_violations"`
	Readies                int64            `json:"readies"`
	Resumes                int64            `json:"resumes"`
	ResumeFailures         int64            `json:"resume_failures"`
	Events                 int64            `json:"events"`
	Heartbeats             int64            `json:"heartbeats"`
	Closes                 int64            `json:"closes"`
	SessionStartsRemaining int              `json:"session_starts_remaining"`
	SessionStartsTotal     int              `json:"session_starts_total"`
	TokenReset             bool             `json:"token_reset"`
	Sessions               int              `json:"sessions"`
	Violations             map[string]int64 `json:"violations"`
	Shards                 []shardStatsJSON `json:"shards"`
}

type shardStatsJSON struct {
	Shard       int   `json:"shard"`
	NumShards   int   `json:"num_shards"`
	Guilds      int   `json:"guilds"`
	Connections int64 `json:"connections"`
	Identifies  int64 `json:"identifies"`
	Resumes     int64 `json:"resumes"`
	Events      int64 `json:"events"`
}

// stats reads GET /sim/stats.
func (s *simServer) stats(t *testing.T) statsJSON {
	t.Helper()
	status, _, body := s.do(t, "GET", "/sim/stats", "", nil)
	if status != http.StatusOK {
		t.Fatalf("GET /sim/stats = %d %s, want 200", status, body)
	}
	var st statsJSON
	if err := json.Unmarshal(body, &st); err != nil {
		t.Fatalf("GET /sim/stats body %s: %v", body, err)
	}
	return st
}

// waitStats polls /sim/stats until cond holds, for counters that are updated
// just after the frame a test reacts to.
func (s *simServer) waitStats(t *testing.T, what string, cond func(statsJSON) bool) statsJSON {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		st := s.stats(t)
		if cond(st) {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("stats never showed %s; last: %+v", what, st)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// postFault posts a raw JSON body to /sim/faults.
func (s *simServer) postFault(t *testing.T, body string) (int, []byte) {
	t.Helper()
	status, _, b := s.do(t, "POST", "/sim/faults", "", []byte(body))
	return status, b
}

// fault posts body to /sim/faults, requires 200 and returns "applied".
func (s *simServer) fault(t *testing.T, body string) int {
	t.Helper()
	status, b := s.postFault(t, body)
	if status != http.StatusOK {
		t.Fatalf("POST /sim/faults %s = %d %s, want 200", body, status, b)
	}
	var res struct {
		Applied *int `json:"applied"`
	}
	if err := json.Unmarshal(b, &res); err != nil || res.Applied == nil {
		t.Fatalf("POST /sim/faults %s: body %s has no integer applied (err %v)", body, b, err)
	}
	return *res.Applied
}

// applyFault calls ApplyFault and fails the test on error.
func (s *simServer) applyFault(t *testing.T, f sim.Fault) int {
	t.Helper()
	res, err := s.srv.ApplyFault(f)
	if err != nil {
		t.Fatalf("ApplyFault(%+v) = %v", f, err)
	}
	return res.Applied
}

// frame is one decoded server payload.
type frame struct {
	Op   discord.Opcode
	S    int64 // 0 when null
	T    string
	D    json.RawMessage
	Raw  []byte                // the decoded payload
	Wire [][]byte              // the WebSocket messages it arrived in
	Type websocket.MessageType // of the last of them
}

func (f *frame) String() string {
	d := string(f.D)
	if len(d) > 200 {
		d = d[:200] + "…"
	}
	return fmt.Sprintf("{t:%q s:%d op:%d d:%s}", f.T, f.S, f.Op, d)
}

func (f *frame) is(op discord.Opcode, t string) bool { return f.Op == op && f.T == t }

// parseFrame decodes the envelope of a server payload.
func parseFrame(b []byte) (*frame, error) {
	var env map[string]json.RawMessage
	if err := json.Unmarshal(b, &env); err != nil {
		return nil, fmt.Errorf("payload %.200q: %w", b, err)
	}
	var f frame
	d, hasD := env["d"]
	if err := json.Unmarshal(env["op"], &f.Op); err != nil || !hasD {
		return nil, fmt.Errorf("payload %.200q lacks an integer op or d", b)
	}
	f.D, f.Raw = d, b
	if s := env["s"]; s != nil && string(s) != "null" {
		if err := json.Unmarshal(s, &f.S); err != nil {
			return nil, fmt.Errorf("payload %.200q: s: %w", b, err)
		}
	}
	if t := env["t"]; t != nil && string(t) != "null" {
		if err := json.Unmarshal(t, &f.T); err != nil {
			return nil, fmt.Errorf("payload %.200q: t: %w", b, err)
		}
	}
	return &f, nil
}

// topKeys returns the keys of the JSON object b in order.
func topKeys(b []byte) ([]string, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	if tok != json.Delim('{') {
		return nil, fmt.Errorf("not an object: %.80q", b)
	}
	var keys []string
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		keys = append(keys, tok.(string))
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return nil, err
		}
	}
	return keys, nil
}

// payloadDecoder is the part of the codec decoder the client uses.
type payloadDecoder interface {
	Decode(dst, msg []byte) (out []byte, ok bool, err error)
}

// conn is a raw gateway connection with a reader goroutine that queues every
// decoded payload.
type conn struct {
	t      *testing.T
	url    string
	ws     *websocket.Conn
	comp   codec.Compression
	ctx    context.Context
	cancel context.CancelFunc

	frames  chan *frame
	backlog []*frame // frames read ahead but not consumed
	done    chan struct{}
	readErr error // set before done is closed

	lastSeq atomic.Int64
	hbSent  atomic.Int64 // heartbeats sent by heartbeatEvery

	hbStop chan struct{}
	hbWG   sync.WaitGroup
	hbOnce sync.Once
}

// dialOpts chooses how to connect.
type dialOpts struct {
	url   string            // full URL; default the base URL with query
	query string            // default "v=10&encoding=json" (+ compress)
	comp  codec.Compression // decoder to use; adds compress= to the default query
	// noCompressParam leaves compress= out of the URL even with comp set (to
	// test CompressDefault).
	noCompressParam bool
}

// dial opens a gateway connection to the simulator's base URL.
func (s *simServer) dial(t *testing.T, o dialOpts) *conn {
	t.Helper()
	u := o.url
	if u == "" {
		q := o.query
		if q == "" {
			q = "v=10&encoding=json"
			if o.comp != codec.None && !o.noCompressParam {
				q += "&compress=" + string(o.comp)
			}
		}
		u = s.baseURL() + "/?" + q
	}
	return dialURL(t, u, o.comp)
}

// dialURL opens a gateway connection to u, decoding with comp.
func dialURL(t *testing.T, u string, comp codec.Compression) *conn {
	t.Helper()
	dctx, dcancel := context.WithTimeout(t.Context(), waitTimeout)
	defer dcancel()
	ws, resp, err := websocket.Dial(dctx, u, &websocket.DialOptions{
		HTTPClient: &http.Client{Transport: &http.Transport{DisableKeepAlives: true}},
	})
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		t.Fatalf("dial %s: %v (HTTP status %d)", u, err, status)
	}
	ws.SetReadLimit(-1)
	var dec payloadDecoder
	var closer func()
	if comp != codec.None {
		d, err := codec.NewDecoder(comp, codec.DecoderConfig{})
		if err != nil {
			ws.CloseNow()
			t.Fatalf("codec.NewDecoder(%q): %v", comp, err)
		}
		dec = d
		if cl, ok := any(d).(interface{ Close() }); ok {
			closer = cl.Close
		} else if cl, ok := any(d).(interface{ Close() error }); ok {
			closer = func() { cl.Close() }
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	c := &conn{
		t: t, url: u, ws: ws, comp: comp, ctx: ctx, cancel: cancel,
		frames: make(chan *frame, 1<<16),
		done:   make(chan struct{}),
		hbStop: make(chan struct{}),
	}
	go c.readLoop(dec, closer)
	t.Cleanup(c.shutdown)
	return c
}

func (c *conn) readLoop(dec payloadDecoder, closer func()) {
	defer close(c.done)
	if closer != nil {
		defer closer()
	}
	var pending [][]byte
	var buf []byte
	for {
		typ, msg, err := c.ws.Read(c.ctx)
		if err != nil {
			c.readErr = err
			return
		}
		pending = append(pending, msg)
		payload := msg
		if dec != nil {
			out, ok, err := dec.Decode(buf[:0], msg)
			if err != nil {
				c.readErr = fmt.Errorf("decoding message %d of a payload: %w", len(pending), err)
				c.ws.CloseNow()
				return
			}
			buf = out
			if !ok {
				continue
			}
			payload = bytes.Clone(out)
		}
		f, err := parseFrame(payload)
		if err != nil {
			c.readErr = err
			c.ws.CloseNow()
			return
		}
		f.Wire, f.Type = pending, typ
		pending = nil
		if f.S > c.lastSeq.Load() {
			c.lastSeq.Store(f.S)
		}
		select {
		case c.frames <- f:
		case <-c.ctx.Done():
			c.readErr = c.ctx.Err()
			return
		}
	}
}

// shutdown stops the heartbeat and reader goroutines and cuts the connection.
func (c *conn) shutdown() {
	c.stopHeartbeat()
	c.ws.CloseNow()
	c.cancel()
	<-c.done
}

// errTimeout is returned by nextErr when nothing arrived in time.
var errTimeout = errors.New("timed out")

// closedError reports how the connection ended.
type closedError struct {
	code websocket.StatusCode // -1 when no close frame arrived
	err  error
}

func (e *closedError) Error() string {
	return fmt.Sprintf("connection closed (code %d): %v", e.code, e.err)
}

// nextErr returns the next frame, or a *closedError once the connection has
// ended and every frame has been consumed, or errTimeout.
func (c *conn) nextErr(timeout time.Duration) (*frame, error) {
	if len(c.backlog) > 0 {
		f := c.backlog[0]
		c.backlog = c.backlog[1:]
		return f, nil
	}
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case f := <-c.frames:
		return f, nil
	case <-c.done:
		select {
		case f := <-c.frames:
			return f, nil
		default:
		}
		return nil, &closedError{code: websocket.CloseStatus(c.readErr), err: c.readErr}
	case <-timer.C:
		return nil, errTimeout
	}
}

// next returns the next frame or fails the test.
func (c *conn) next() *frame {
	c.t.Helper()
	f, err := c.nextErr(waitTimeout)
	if err != nil {
		c.t.Fatalf("%s: waiting for a frame: %v", c.url, err)
	}
	return f
}

// unread puts frames back in front of the queue.
func (c *conn) unread(fs ...*frame) { c.backlog = append(append([]*frame{}, fs...), c.backlog...) }

// waitFor reads until a frame satisfies match and returns it with the frames
// skipped on the way. It fails the test on timeout or close.
func (c *conn) waitFor(what string, match func(*frame) bool) (*frame, []*frame) {
	c.t.Helper()
	var skipped []*frame
	deadline := time.Now().Add(waitTimeout)
	for {
		f, err := c.nextErr(time.Until(deadline))
		if err != nil {
			c.t.Fatalf("%s: waiting for %s: %v (after %d other frames)", c.url, what, err, len(skipped))
		}
		if match(f) {
			return f, skipped
		}
		skipped = append(skipped, f)
	}
}

// waitOp waits for a non-dispatch frame with op.
func (c *conn) waitOp(op discord.Opcode) (*frame, []*frame) {
	c.t.Helper()
	return c.waitFor(op.String(), func(f *frame) bool { return f.Op == op })
}

// waitDispatch waits for a dispatch named t.
func (c *conn) waitDispatch(t string) (*frame, []*frame) {
	c.t.Helper()
	return c.waitFor(t, func(f *frame) bool { return f.is(discord.OpDispatch, t) })
}

// expectClose reads until the connection ends and returns its close code
// (-1 when it ended without a close frame) and the frames read meanwhile.
func (c *conn) expectClose() (websocket.StatusCode, []*frame) {
	c.t.Helper()
	var skipped []*frame
	deadline := time.Now().Add(waitTimeout)
	for {
		f, err := c.nextErr(time.Until(deadline))
		var ce *closedError
		switch {
		case errors.As(err, &ce):
			return ce.code, skipped
		case err != nil:
			c.t.Fatalf("%s: waiting for the connection to close: %v (after frames %v)", c.url, err, skipped)
		}
		skipped = append(skipped, f)
	}
}

// expectNothing checks that no frame matching bad arrives and the connection
// stays open during d; it returns the frames read.
func (c *conn) expectNothing(d time.Duration, what string, bad func(*frame) bool) []*frame {
	c.t.Helper()
	var got []*frame
	deadline := time.Now().Add(d)
	for {
		left := time.Until(deadline)
		if left <= 0 {
			return got
		}
		f, err := c.nextErr(left)
		if errors.Is(err, errTimeout) {
			return got
		}
		if err != nil {
			c.t.Fatalf("%s: connection ended while checking for no %s: %v", c.url, what, err)
		}
		if bad(f) {
			c.t.Fatalf("%s: got %s, want none: %v", c.url, what, f)
		}
		got = append(got, f)
	}
}

// sendRaw writes one text message.
func (c *conn) sendRaw(b []byte) error {
	ctx, cancel := context.WithTimeout(c.ctx, waitTimeout)
	defer cancel()
	return c.ws.Write(ctx, websocket.MessageText, b)
}

// send writes one JSON payload or fails the test.
func (c *conn) send(v any) {
	c.t.Helper()
	b, ok := v.([]byte)
	if !ok {
		if s, isString := v.(string); isString {
			b = []byte(s)
		} else {
			var err error
			if b, err = json.Marshal(v); err != nil {
				c.t.Fatal(err)
			}
		}
	}
	if err := c.sendRaw(b); err != nil {
		c.t.Fatalf("%s: sending %.100s: %v", c.url, b, err)
	}
}

// heartbeat sends op 1 with the last sequence number seen.
func (c *conn) heartbeat() {
	c.t.Helper()
	c.send(heartbeatPayload(c.lastSeq.Load()))
}

func heartbeatPayload(seq int64) []byte {
	if seq == 0 {
		return []byte(`{"op":1,"d":null}`)
	}
	return []byte(`{"op":1,"d":` + strconv.FormatInt(seq, 10) + `}`)
}

// heartbeatEvery sends a heartbeat every d until the connection is shut down.
func (c *conn) heartbeatEvery(d time.Duration) {
	c.hbWG.Go(func() {
		tick := time.NewTicker(d)
		defer tick.Stop()
		for {
			select {
			case <-tick.C:
				if err := c.sendRaw(heartbeatPayload(c.lastSeq.Load())); err != nil {
					return
				}
				c.hbSent.Add(1)
			case <-c.hbStop:
				return
			case <-c.done:
				return
			}
		}
	})
}

func (c *conn) stopHeartbeat() {
	c.hbOnce.Do(func() { close(c.hbStop) })
	c.hbWG.Wait()
}

// roundTrip sends a heartbeat and returns the frames that arrived before its
// ACK: a barrier that proves the server processed everything sent before.
func (c *conn) roundTrip() []*frame {
	c.t.Helper()
	c.heartbeat()
	_, skipped := c.waitOp(discord.OpHeartbeatACK)
	return skipped
}

// hello reads the first frame and requires HELLO.
func (c *conn) hello() discord.Hello {
	c.t.Helper()
	f := c.next()
	if f.Op != discord.OpHello {
		c.t.Fatalf("%s: first frame = %v, want HELLO (op 10)", c.url, f)
	}
	var h discord.Hello
	if err := json.Unmarshal(f.D, &h); err != nil {
		c.t.Fatalf("HELLO d %s: %v", f.D, err)
	}
	return h
}

// identifyPayload builds an op 2. shard nil leaves "shard" out; intents nil
// leaves "intents" out.
func identifyPayload(token string, shard []int, intents any) map[string]any {
	d := map[string]any{
		"token":           token,
		"properties":      map[string]string{"os": "linux", "browser": "conformance", "device": "conformance"},
		"large_threshold": 250,
	}
	if shard != nil {
		d["shard"] = shard
	}
	if intents != nil {
		d["intents"] = intents
	}
	return map[string]any{"op": 2, "d": d}
}

func resumePayload(token, sessionID string, seq int64) map[string]any {
	return map[string]any{"op": 6, "d": map[string]any{"token": token, "session_id": sessionID, "seq": seq}}
}

// startOpts describes a session to start.
type startOpts struct {
	dial    dialOpts
	shard   []int           // nil: no shard field
	intents discord.Intents // 0: every non-privileged intent
	// noStream returns right after READY without reading the GUILD_CREATEs.
	noStream bool
}

// session is an identified connection.
type session struct {
	*conn
	s        *simServer
	shard    int
	n        int
	intents  discord.Intents
	ready    discord.Ready
	readyF   *frame
	guilds   map[discord.Snowflake]bool // from READY
	creates  []*frame                   // the GUILD_CREATE stream after READY
	botID    discord.Snowflake
	resumeAt string // resume_gateway_url
}

// start dials, identifies within the identify limit and waits for READY and
// (unless noStream) one GUILD_CREATE per READY guild. Other frames that
// arrive meanwhile stay queued.
func (s *simServer) start(t *testing.T, o startOpts) *session {
	t.Helper()
	c := s.dial(t, o.dial)
	c.hello()
	return s.identifyOn(t, c, o)
}

// identifyOn sends IDENTIFY on an open connection (HELLO already read).
func (s *simServer) identifyOn(t *testing.T, c *conn, o startOpts) *session {
	t.Helper()
	if o.intents == 0 {
		o.intents = discord.IntentsNonPrivileged
	}
	shard, n := 0, 1
	if o.shard != nil {
		shard, n = o.shard[0], o.shard[1]
	}
	bucket := discord.ShardBucket(shard, s.maxConcurrency())
	s.paceMu.Lock()
	p := s.paces[bucket]
	if p == nil {
		p = &bucketPace{}
		s.paces[bucket] = p
	}
	s.paceMu.Unlock()

	p.mu.Lock()
	if !p.lastReady.IsZero() {
		time.Sleep(time.Until(p.lastReady.Add(s.identifyInterval() + 10*time.Millisecond)))
	}
	c.send(identifyPayload(s.token(), o.shard, uint64(o.intents)))
	f, skipped := c.waitFor("READY", func(f *frame) bool {
		if f.Op == discord.OpInvalidSession {
			p.mu.Unlock()
			t.Fatalf("IDENTIFY %v got INVALID_SESSION %s, want READY", o.shard, f.D)
		}
		return f.is(discord.OpDispatch, "READY")
	})
	p.lastReady = time.Now()
	p.mu.Unlock()

	ss := &session{conn: c, s: s, shard: shard, n: n, intents: o.intents, readyF: f, guilds: map[discord.Snowflake]bool{}}
	if err := json.Unmarshal(f.D, &ss.ready); err != nil {
		t.Fatalf("READY d: %v", err)
	}
	for _, g := range ss.ready.Guilds {
		ss.guilds[g.ID] = true
	}
	ss.botID = ss.ready.User.ID
	ss.resumeAt = ss.ready.ResumeGatewayURL
	var others []*frame
	for _, sk := range skipped {
		if sk.Op == discord.OpDispatch {
			t.Fatalf("dispatch %v arrived before READY", sk)
		}
	}
	if !o.noStream {
		seen := map[discord.Snowflake]bool{}
		for len(seen) < len(ss.guilds) {
			g, sk := c.waitDispatch("GUILD_CREATE")
			others = append(others, sk...)
			id := guildCreateID(t, g)
			if !ss.guilds[id] {
				// A guild joined after READY: its GUILD_CREATE may come
				// before the last of the initial ones. Leave it to the test.
				others = append(others, g)
				continue
			}
			if seen[id] {
				t.Fatalf("second GUILD_CREATE for guild %v in the stream after READY", id)
			}
			seen[id] = true
			ss.creates = append(ss.creates, g)
		}
	}
	c.unread(others...)
	return ss
}

func guildCreateID(t *testing.T, f *frame) discord.Snowflake {
	t.Helper()
	var g struct {
		ID discord.Snowflake `json:"id"`
	}
	if err := json.Unmarshal(f.D, &g); err != nil || g.ID == 0 {
		t.Fatalf("%s d has no id: %v", f.T, err)
	}
	return g.ID
}

// resumeURL is the URL a client builds from resume_gateway_url.
func (ss *session) resumeURL() string {
	q := "v=10&encoding=json"
	if ss.comp != codec.None {
		q += "&compress=" + string(ss.comp)
	}
	return strings.TrimSuffix(ss.resumeAt, "/") + "/?" + q
}

// resume opens a new connection to url and sends RESUME for this session.
func (ss *session) resume(t *testing.T, url string, seq int64) *conn {
	t.Helper()
	c := dialURL(t, url, ss.comp)
	c.hello()
	c.send(resumePayload(ss.s.token(), ss.ready.SessionID, seq))
	return c
}

// event is what the suite reads from a generated event.
type event struct {
	f       *frame
	id      int64
	guild   discord.Snowflake // 0 for DM-like events
	idLast  bool              // sim_event_id is the last key of d
	content struct {
		Content     *string           `json:"content"`
		Embeds      []json.RawMessage `json:"embeds"`
		Attachments []json.RawMessage `json:"attachments"`
		Components  []json.RawMessage `json:"components"`
		Author      *struct {
			ID discord.Snowflake `json:"id"`
		} `json:"author"`
		Mentions []struct {
			ID discord.Snowflake `json:"id"`
		} `json:"mentions"`
		User *struct {
			ID discord.Snowflake `json:"id"`
		} `json:"user"`
	}
}

// eventOf returns the generated event in f, or false when d has no
// sim_event_id.
func eventOf(t *testing.T, f *frame) (event, bool) {
	t.Helper()
	if f.Op != discord.OpDispatch || !bytes.Contains(f.D, []byte(`"sim_event_id"`)) {
		return event{}, false
	}
	var d struct {
		ID      *int64             `json:"sim_event_id"`
		GuildID *discord.Snowflake `json:"guild_id"`
	}
	if err := json.Unmarshal(f.D, &d); err != nil {
		t.Fatalf("%v: %v", f, err)
	}
	if d.ID == nil {
		return event{}, false
	}
	ev := event{f: f, id: *d.ID}
	if d.GuildID != nil {
		ev.guild = *d.GuildID
	}
	keys, err := topKeys(f.D)
	if err != nil {
		t.Fatalf("%v: %v", f, err)
	}
	ev.idLast = keys[len(keys)-1] == "sim_event_id"
	if err := json.Unmarshal(f.D, &ev.content); err != nil {
		t.Fatalf("%v: %v", f, err)
	}
	return ev, true
}

// collectEvents reads until n generated events arrived and returns them; the
// other frames are returned too.
func (c *conn) collectEvents(n int) (events []event, others []*frame) {
	c.t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for len(events) < n {
		f, err := c.nextErr(time.Until(deadline))
		if err != nil {
			c.t.Fatalf("%s: waiting for %d events (have %d): %v", c.url, n, len(events), err)
		}
		if ev, ok := eventOf(c.t, f); ok {
			events = append(events, ev)
		} else {
			others = append(others, f)
		}
	}
	return events, others
}

// waitEventIDs reads until every id in want has arrived and returns all
// events read.
func (c *conn) waitEventIDs(want map[int64]bool) []event {
	c.t.Helper()
	missing := map[int64]bool{}
	for id := range want {
		missing[id] = true
	}
	var got []event
	deadline := time.Now().Add(waitTimeout)
	for len(missing) > 0 {
		f, err := c.nextErr(time.Until(deadline))
		if err != nil {
			c.t.Fatalf("%s: %d of %d events never arrived: %v", c.url, len(missing), len(want), err)
		}
		if ev, ok := eventOf(c.t, f); ok {
			got = append(got, ev)
			delete(missing, ev.id)
		}
	}
	return got
}

// simConfig shortens sim.Config in tables.
type simConfig = sim.Config
