package sim

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/discord"
)

// These tests run the connection shell over net.Pipe inside a synctest
// bubble, so timers (heartbeat deadline, identify reject delay, heartbeat
// requests, session TTL, fault delays) run on the fake clock and can be
// checked exactly.

// pipeClient is a bare gateway client on one end of a net.Pipe.
type pipeClient struct {
	t  *testing.T
	nc net.Conn

	mu        sync.Mutex
	frames    []pipeFrame
	closeCode int // -1 until a close frame arrives
	ended     bool
	paused    bool // stop reading (a slow client)
	resume    chan struct{}
}

type pipeFrame struct {
	op   discord.Opcode
	t    string
	s    int64
	d    json.RawMessage
	raw  []byte
	time time.Time
}

// dialPipe connects a client to s through net.Pipe at path with query q.
func dialPipe(t *testing.T, s *Server, path, q string) *pipeClient {
	t.Helper()
	cli, srv := net.Pipe()
	vals, _ := url.ParseQuery(q)
	go s.serveConn(srv, bufio.NewReader(srv), "sim.test", path, vals)
	c := &pipeClient{t: t, nc: cli, closeCode: -1, resume: make(chan struct{})}
	go c.readLoop()
	return c
}

func (c *pipeClient) readLoop() {
	br := bufio.NewReader(c.nc)
	defer func() {
		c.mu.Lock()
		c.ended = true
		c.mu.Unlock()
		c.nc.Close()
	}()
	var hdr [8]byte
	for {
		c.mu.Lock()
		paused := c.paused
		c.mu.Unlock()
		if paused {
			<-c.resume
		}
		if _, err := io.ReadFull(br, hdr[:2]); err != nil {
			return
		}
		op, n := hdr[0]&0xf, uint64(hdr[1]&0x7f)
		switch n {
		case 126:
			io.ReadFull(br, hdr[:2])
			n = uint64(binary.BigEndian.Uint16(hdr[:2]))
		case 127:
			io.ReadFull(br, hdr[:8])
			n = binary.BigEndian.Uint64(hdr[:8])
		}
		p := make([]byte, n)
		if _, err := io.ReadFull(br, p); err != nil {
			return
		}
		if op == wsClose {
			code, _ := parseClose(p)
			c.mu.Lock()
			c.closeCode = code
			c.mu.Unlock()
			c.write(wsClose, p)
			return
		}
		var env struct {
			Op discord.Opcode  `json:"op"`
			T  *string         `json:"t"`
			S  *int64          `json:"s"`
			D  json.RawMessage `json:"d"`
		}
		if err := json.Unmarshal(p, &env); err != nil {
			c.t.Errorf("server frame %q: %v", p, err)
			return
		}
		f := pipeFrame{op: env.Op, d: env.D, raw: p, time: time.Now()}
		if env.T != nil {
			f.t = *env.T
		}
		if env.S != nil {
			f.s = *env.S
		}
		c.mu.Lock()
		c.frames = append(c.frames, f)
		c.mu.Unlock()
	}
}

// write sends one masked frame.
func (c *pipeClient) write(op byte, p []byte) {
	c.nc.Write(clientFrame(true, op, p, [4]byte{7, 7, 7, 7}))
}

func (c *pipeClient) send(s string) { c.write(wsText, []byte(s)) }

// got returns the frames received so far.
func (c *pipeClient) got() []pipeFrame {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]pipeFrame(nil), c.frames...)
}

func (c *pipeClient) count(match func(pipeFrame) bool) int {
	n := 0
	for _, f := range c.got() {
		if match(f) {
			n++
		}
	}
	return n
}

func (c *pipeClient) closed() (bool, int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ended, c.closeCode
}

func isOp(op discord.Opcode) func(pipeFrame) bool {
	return func(f pipeFrame) bool { return f.op == op }
}
func isT(t string) func(pipeFrame) bool { return func(f pipeFrame) bool { return f.t == t } }
func isEvent(f pipeFrame) bool          { return bytes.Contains(f.d, []byte(`"sim_event_id"`)) }

func identifyJSON(token string, shard, n int, intents discord.Intents) string {
	return fmt.Sprintf(`{"op":2,"d":{"token":%q,"properties":{"os":"l","browser":"b","device":"d"},"shard":[%d,%d],"intents":%d}}`,
		token, shard, n, intents)
}

// newTestServer creates a server inside the bubble and shuts it down at the
// end of the bubble's function.
func newTestServer(t *testing.T, cfg Config) *Server {
	t.Helper()
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Shutdown(context.Background()); err != nil {
			t.Errorf("Shutdown = %v", err)
		}
	})
	return s
}

func TestShellHelloIdentifyReady(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newTestServer(t, Config{Token: "tok", Guilds: 30, HeartbeatInterval: 10 * time.Second})
		c := dialPipe(t, s, "/", "v=10&encoding=json")
		synctest.Wait()
		if f := c.got(); len(f) != 1 || !strings.HasPrefix(string(f[0].raw), `{"t":null,"s":null,"op":10,"d":{"heartbeat_interval":10000,`) {
			t.Fatalf("first frames = %v, want HELLO", f)
		}
		c.send(identifyJSON("tok", 1, 3, discord.IntentsNonPrivileged))
		synctest.Wait()
		frames := c.got()
		var ready discord.Ready
		if len(frames) < 2 || frames[1].t != "READY" || frames[1].s != 1 || json.Unmarshal(frames[1].d, &ready) != nil {
			t.Fatalf("after IDENTIFY: %d frames, want READY s 1", len(frames))
		}
		creates := frames[2:]
		if len(creates) != len(ready.Guilds) || len(creates) == 0 {
			t.Errorf("%d GUILD_CREATEs for %d READY guilds", len(creates), len(ready.Guilds))
		}
		for i, f := range creates {
			if f.t != "GUILD_CREATE" || f.s != int64(i+2) {
				t.Errorf("frame %d after READY = %s s %d, want GUILD_CREATE s %d", i, f.t, f.s, i+2)
			}
		}
		c.send(`{"op":1,"d":` + fmt.Sprint(len(creates)+1) + `}`)
		synctest.Wait()
		if got := c.got(); string(got[len(got)-1].raw) != `{"t":null,"s":null,"op":11,"d":null}` {
			t.Errorf("answer to a heartbeat = %s, want the ACK", got[len(got)-1].raw)
		}
		if st := s.Stats(); st.Readies != 1 || st.Heartbeats != 1 || st.Connections != 1 || st.Sessions != 1 {
			t.Errorf("stats = %+v", st)
		}
	})
}

func TestShellHeartbeatTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newTestServer(t, Config{Token: "tok", Guilds: 5, HeartbeatInterval: 10 * time.Second, SessionTTL: time.Minute})
		c := dialPipe(t, s, "/", "v=10")
		c.send(identifyJSON("tok", 0, 1, discord.IntentGuilds))
		time.Sleep(5 * time.Second)
		c.send(`{"op":1,"d":null}`) // deadline now 5s + 15s
		time.Sleep(15*time.Second - time.Millisecond)
		synctest.Wait()
		if ended, _ := c.closed(); ended {
			t.Fatalf("closed before 1.5 intervals without a heartbeat")
		}
		time.Sleep(time.Millisecond)
		synctest.Wait()
		if ended, code := c.closed(); !ended || code != 4009 {
			t.Fatalf("after 1.5 intervals: ended %v code %d, want closed with 4009", ended, code)
		}
		if st := s.Stats(); st.Sessions != 1 || st.Violations["heartbeat_timeout"] != 1 {
			t.Errorf("after the timeout: sessions %d, violations %v; want the session kept", st.Sessions, st.Violations)
		}
		time.Sleep(time.Minute)
		synctest.Wait()
		if st := s.Stats(); st.Sessions != 0 {
			t.Errorf("after SessionTTL: %d sessions, want 0", st.Sessions)
		}
	})
}

func TestShellIdentifyRejectDelay(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newTestServer(t, Config{Token: "tok", Guilds: 5, MaxConcurrency: 2, IdentifyInterval: 5 * time.Second,
			IdentifyRejectDelay: 2 * time.Second, HeartbeatInterval: time.Hour})
		a, b, other := dialPipe(t, s, "/", ""), dialPipe(t, s, "/", ""), dialPipe(t, s, "/", "")
		a.send(identifyJSON("tok", 0, 4, discord.IntentGuilds))
		synctest.Wait()
		other.send(identifyJSON("tok", 1, 4, discord.IntentGuilds)) // bucket 1: allowed at once
		b.send(identifyJSON("tok", 2, 4, discord.IntentGuilds))     // bucket 0: too fast
		start := time.Now()
		synctest.Wait()
		if a.count(isT("READY")) != 1 || other.count(isT("READY")) != 1 {
			t.Fatalf("IDENTIFYs in two buckets: READY %d and %d, want 1 each", a.count(isT("READY")), other.count(isT("READY")))
		}
		time.Sleep(2*time.Second - time.Millisecond)
		synctest.Wait()
		if b.count(isOp(discord.OpInvalidSession)) != 0 {
			t.Fatalf("op 9 before IdentifyRejectDelay")
		}
		time.Sleep(time.Millisecond)
		synctest.Wait()
		got := b.got()
		if last := got[len(got)-1]; last.op != discord.OpInvalidSession || string(last.d) != "false" || last.time.Sub(start) != 2*time.Second {
			t.Fatalf("too-fast IDENTIFY: last frame %s at +%v, want op 9 false at +2s", last.raw, last.time.Sub(start))
		}
		time.Sleep(3 * time.Second) // the bucket's window (from a's IDENTIFY) is over
		b.send(identifyJSON("tok", 2, 4, discord.IntentGuilds))
		synctest.Wait()
		if b.count(isT("READY")) != 1 {
			t.Errorf("IDENTIFY again on the same connection after the window: no READY")
		}
		if st := s.Stats(); st.IdentifyViolations != 1 || st.SessionStartsRemaining != 997 || st.Identifies != 4 {
			t.Errorf("stats identify_violations %d remaining %d identifies %d; want 1, 997, 4", st.IdentifyViolations, st.SessionStartsRemaining, st.Identifies)
		}
	})
}

func TestShellRequestHeartbeats(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newTestServer(t, Config{Token: "tok", Guilds: 5, HeartbeatInterval: time.Hour, RequestHeartbeats: 3 * time.Second})
		c := dialPipe(t, s, "/", "")
		time.Sleep(3*time.Second - time.Millisecond)
		synctest.Wait()
		if n := c.count(isOp(discord.OpHeartbeat)); n != 0 {
			t.Fatalf("%d heartbeat requests before the first interval", n)
		}
		time.Sleep(6*time.Second + time.Millisecond)
		synctest.Wait()
		if n := c.count(isOp(discord.OpHeartbeat)); n != 3 {
			t.Errorf("%d heartbeat requests in 9s every 3s, want 3", n)
		}
	})
}

func TestShellEventRate(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newTestServer(t, Config{Token: "tok", Guilds: 40, HeartbeatInterval: time.Hour, EventRate: 50})
		a := dialPipe(t, s, "/", "")
		a.send(identifyJSON("tok", 0, 2, discord.IntentsAll))
		time.Sleep(6 * time.Second)
		b := dialPipe(t, s, "/", "")
		b.send(identifyJSON("tok", 1, 2, discord.IntentsAll))
		synctest.Wait()
		before := a.count(isEvent)
		time.Sleep(10 * time.Second)
		synctest.Wait()
		for name, c := range map[string]*pipeClient{"shard 0": a, "shard 1": b} {
			n := c.count(isEvent)
			if c == a {
				n -= before
			}
			if n < 495 || n > 505 {
				t.Errorf("%s: %d events in 10s at 50/s per shard, want 500 ± 5", name, n)
			}
		}
		ids := map[string]bool{}
		for _, f := range append(a.got(), b.got()...) {
			if isEvent(f) {
				var d struct {
					ID json.Number `json:"sim_event_id"`
				}
				json.Unmarshal(f.d, &d)
				if ids[d.ID.String()] {
					t.Fatalf("sim_event_id %s delivered twice across shards", d.ID)
				}
				ids[d.ID.String()] = true
			}
		}
	})
}

func TestShellResumeReplay(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newTestServer(t, Config{Token: "tok", Guilds: 10, HeartbeatInterval: time.Hour, EventRate: 100})
		c := dialPipe(t, s, "/", "")
		c.send(identifyJSON("tok", 0, 1, discord.IntentsNonPrivileged))
		time.Sleep(time.Second)
		synctest.Wait()
		got := c.got()
		var readyD struct {
			SessionID string `json:"session_id"`
		}
		json.Unmarshal(got[1].d, &readyD)
		last := got[len(got)-1].s
		keep := last - 10 // claim to have seen less: the last 10 are replayed too
		c.nc.Close()      // a drop without a close frame
		time.Sleep(time.Second)
		r := dialPipe(t, s, "/resume", "")
		r.send(fmt.Sprintf(`{"op":6,"d":{"token":"tok","session_id":%q,"seq":%d}}`, readyD.SessionID, keep))
		synctest.Wait()
		want := keep + 1
		resumed := false
		for _, f := range r.got() {
			if f.op != discord.OpDispatch {
				continue
			}
			if f.s != want {
				t.Fatalf("replayed s %d, want %d", f.s, want)
			}
			want++
			if f.t == "RESUMED" {
				resumed = true
				break
			}
			if f.s <= last && !bytes.Equal(f.raw, got[f.s].raw) {
				t.Errorf("replayed s %d differs from the original:\n%s\n%s", f.s, f.raw, got[f.s].raw)
			}
		}
		if !resumed || want-keep < 100 {
			t.Errorf("resumed %v after %d replayed dispatches, want RESUMED after about 110", resumed, want-keep-1)
		}
		if st := s.Stats(); st.Resumes != 1 || st.Violations["resume_on_base_url"] != 0 {
			t.Errorf("stats resumes %d violations %v", st.Resumes, st.Violations)
		}
	})
}

func TestShellDelayAcksAndZombie(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newTestServer(t, Config{Token: "tok", Guilds: 5, HeartbeatInterval: time.Hour})
		c := dialPipe(t, s, "/", "")
		c.send(identifyJSON("tok", 0, 1, discord.IntentGuilds))
		synctest.Wait()
		if _, err := s.ApplyFault(Fault{Kind: FaultDelayAcks, Delay: Duration(400 * time.Millisecond), Duration: Duration(time.Second)}); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		c.send(`{"op":1,"d":null}`)
		synctest.Wait()
		time.Sleep(time.Second)
		synctest.Wait()
		acks := c.got()
		if last := acks[len(acks)-1]; last.op != discord.OpHeartbeatACK || last.time.Sub(start) != 400*time.Millisecond {
			t.Errorf("delayed ACK at +%v, want +400ms", last.time.Sub(start))
		}
		res, _ := s.ApplyFault(Fault{Kind: FaultZombie, Duration: Duration(2 * time.Second)})
		if res.Applied != 1 {
			t.Errorf("zombie applied = %d, want 1", res.Applied)
		}
		c.send(`{"op":1,"d":null}`)
		time.Sleep(time.Second)
		synctest.Wait()
		if n := c.count(isOp(discord.OpHeartbeatACK)); n != 1 {
			t.Errorf("zombie: %d ACKs, want still 1", n)
		}
		time.Sleep(time.Second)
		c.send(`{"op":1,"d":null}`)
		synctest.Wait()
		if n := c.count(isOp(discord.OpHeartbeatACK)); n != 2 {
			t.Errorf("after the zombie fault: %d ACKs, want 2", n)
		}
	})
}

func TestShellSlowConsumer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newTestServer(t, Config{Token: "tok", Guilds: 10, HeartbeatInterval: time.Hour, EventRate: 200, WriteTimeout: 5 * time.Second})
		c := dialPipe(t, s, "/", "")
		c.send(identifyJSON("tok", 0, 1, discord.IntentsNonPrivileged))
		synctest.Wait()
		c.mu.Lock()
		c.paused = true
		c.mu.Unlock()
		time.Sleep(10 * time.Second)
		synctest.Wait()
		st := s.Stats()
		close(c.resume)
		if st.Violations["slow_consumer"] != 1 || st.Connections != 0 || st.Sessions != 1 {
			t.Errorf("client not reading for 10s: slow_consumer %d, connections %d, sessions %d; want 1, 0, 1",
				st.Violations["slow_consumer"], st.Connections, st.Sessions)
		}
	})
}

func TestRESTHandler(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newTestServer(t, Config{Token: "tok", Guilds: 2500, MaxConcurrency: 16})
		do := func(path, auth string) (int, string) {
			r := httptest.NewRequest("GET", path, nil)
			r.Host = "sim.test:8787"
			if auth != "" {
				r.Header.Set("Authorization", auth)
			}
			w := httptest.NewRecorder()
			s.Handler().ServeHTTP(w, r)
			return w.Code, w.Body.String()
		}
		tests := []struct {
			path, auth string
			status     int
			body       string
		}{
			{"/api/v10/gateway", "", 200, `{"url": "ws://sim.test:8787"}`},
			{"/api/v10/gateway/bot", "", 401, `{"message": "401: Unauthorized", "code": 0}`},
			{"/api/v10/gateway/bot", "tok", 401, `{"message": "401: Unauthorized", "code": 0}`},
			{"/api/v10/gateway/bot", "Bot tok", 200, `{"url": "ws://sim.test:8787", "shards": 3, "session_start_limit": {"total": 1000, "remaining": 1000, "reset_after": 86400000, "max_concurrency": 16}}`},
			{"/api/v8/gateway", "", 400, `{"message": "400: Bad Request", "code": 0}`},
			{"/api/v10/nothing", "Bot tok", 404, `{"message": "404: Not Found", "code": 0}`},
		}
		for _, tt := range tests {
			if status, body := do(tt.path, tt.auth); status != tt.status || body != tt.body {
				t.Errorf("GET %s (%q) = %d %s, want %d %s", tt.path, tt.auth, status, body, tt.status, tt.body)
			}
		}
		limited := 0
		for range 60 {
			if status, _ := do("/api/v10/users/@me", "Bot tok"); status == http.StatusTooManyRequests {
				limited++
			}
		}
		if limited != 60+1-restLimit {
			t.Errorf("61 requests in one second: %d limited, want %d", limited, 61-restLimit)
		}
		time.Sleep(time.Second)
		if status, _ := do("/api/v10/users/@me", "Bot tok"); status != 200 {
			t.Errorf("after the window: %d, want 200", status)
		}
	})
}
