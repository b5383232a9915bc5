package sim_test

import (
	"bytes"
	"compress/zlib"
	"context"
	"encoding/json"
	"maps"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/gatehouse-dev/gatehouse/internal/discord"
	"github.com/gatehouse-dev/gatehouse/internal/discord/codec"
	"github.com/gatehouse-dev/gatehouse/internal/discord/sim"
)

// TestGuildJoinsAndLeaves: joins send GUILD_CREATE for a new guild and
// leaves GUILD_DELETE without unavailable, each to the shard that owns the
// guild; a left guild gets no more events there, and a later READY reflects
// both.
func TestGuildJoinsAndLeaves(t *testing.T) {
	t.Parallel()
	cfg := baseConfig()
	cfg.Guilds = 40
	cfg.EventRate = 100
	cfg.GuildJoinsPerMinute = 300
	cfg.GuildLeavesPerMinute = 300
	cfg.MaxConcurrency = 2
	s := startSim(t, cfg)
	a := s.start(t, startOpts{shard: []int{0, 2}})
	b := s.start(t, startOpts{shard: []int{1, 2}})
	for _, ss := range []*session{a, b} {
		joined, left := map[discord.Snowflake]bool{}, map[discord.Snowflake]bool{}
		// observe handles one frame of ss's stream.
		observe := func(f *frame) {
			if f.Op != discord.OpDispatch {
				return
			}
			var d struct {
				ID          discord.Snowflake `json:"id"`
				GuildID     discord.Snowflake `json:"guild_id"`
				Unavailable *bool             `json:"unavailable"`
			}
			json.Unmarshal(f.D, &d)
			switch f.T {
			case "GUILD_CREATE":
				if ss.guilds[d.ID] || joined[d.ID] {
					t.Errorf("shard %d: GUILD_CREATE for guild %v it already has", ss.shard, d.ID)
				}
				if got := discord.ShardForGuild(d.ID, 2); got != ss.shard {
					t.Errorf("shard %d: GUILD_CREATE for guild %v, which routes to shard %d", ss.shard, d.ID, got)
				}
				joined[d.ID] = true
			case "GUILD_DELETE":
				if d.Unavailable != nil && *d.Unavailable {
					t.Errorf("shard %d: a leave sent GUILD_DELETE %s, want no unavailable:true", ss.shard, f.D)
				}
				if !ss.guilds[d.ID] && !joined[d.ID] {
					t.Errorf("shard %d: GUILD_DELETE for guild %v it does not have", ss.shard, d.ID)
				}
				left[d.ID] = true
			default:
				if left[d.GuildID] {
					t.Errorf("shard %d: %s for guild %v after its GUILD_DELETE", ss.shard, f.T, d.GuildID)
				}
				if d.GuildID != 0 && !ss.guilds[d.GuildID] && !joined[d.GuildID] {
					t.Errorf("shard %d: %s for guild %v it does not have", ss.shard, f.T, d.GuildID)
				}
			}
		}
		deadline := time.Now().Add(waitTimeout)
		for len(joined) == 0 || len(left) == 0 {
			f, err := ss.nextErr(time.Until(deadline))
			if err != nil {
				t.Fatalf("shard %d: joins %d leaves %d so far: %v", ss.shard, len(joined), len(left), err)
			}
			observe(f)
		}
		joinedBefore, leftBefore := maps.Clone(joined), maps.Clone(left)
		// A new session's READY reflects what ss saw before it identified.
		// Changes between then and READY show up in ss's stream before the
		// ACK of a heartbeat sent after READY.
		fresh := s.start(t, startOpts{shard: []int{ss.shard, 2}, noStream: true})
		for _, f := range ss.roundTrip() {
			observe(f)
		}
		for id := range joinedBefore {
			if !fresh.guilds[id] && !left[id] {
				t.Errorf("shard %d: READY after guild %v joined does not list it", ss.shard, id)
			}
		}
		for id := range leftBefore {
			if fresh.guilds[id] {
				t.Errorf("shard %d: READY after guild %v left still lists it", ss.shard, id)
			}
		}
	}
}

// TestSessionStartWindowResets: remaining goes back to total when the
// window, started by the first IDENTIFY, ends.
func TestSessionStartWindowResets(t *testing.T) {
	t.Parallel()
	cfg := baseConfig()
	cfg.SessionStartTotal = 2
	cfg.SessionStartReset = 700 * time.Millisecond
	s := startSim(t, cfg)
	first := time.Now()
	s.start(t, startOpts{noStream: true})
	s.start(t, startOpts{noStream: true})
	sl := s.gatewayBot(t).SessionStartLimit
	if sl.Remaining != 0 && time.Since(first) < cfg.SessionStartReset {
		t.Fatalf("after 2 of 2 starts: %+v, want remaining 0", sl)
	}
	if sl.ResetAfter > cfg.SessionStartReset.Milliseconds() {
		t.Errorf("reset_after = %d ms, want at most the window %d ms", sl.ResetAfter, cfg.SessionStartReset.Milliseconds())
	}
	deadline := time.Now().Add(waitTimeout)
	for s.gatewayBot(t).SessionStartLimit.Remaining != 2 {
		if time.Now().After(deadline) {
			t.Fatalf("remaining never went back to 2 after the %v window", cfg.SessionStartReset)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if el := time.Since(first); el < cfg.SessionStartReset {
		t.Errorf("remaining refilled %v after the first IDENTIFY, before the %v window ended", el, cfg.SessionStartReset)
	}
	before := time.Now()
	s.start(t, startOpts{noStream: true})
	if got := s.gatewayBot(t).SessionStartLimit.Remaining; got != 1 && time.Since(before) < cfg.SessionStartReset {
		t.Errorf("first IDENTIFY of the new window: remaining = %d, want 1", got)
	}
}

// TestClientBinaryFrame: clients may not send compressed (binary) data;
// doing so closes 4002.
func TestClientBinaryFrame(t *testing.T) {
	t.Parallel()
	s := startSim(t, baseConfig())
	c := s.dial(t, dialOpts{})
	c.hello()
	var zb bytes.Buffer
	zw := zlib.NewWriter(&zb)
	zw.Write([]byte(`{"op":1,"d":null}`))
	zw.Close()
	ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
	defer cancel()
	if err := c.ws.Write(ctx, websocket.MessageBinary, zb.Bytes()); err != nil {
		t.Fatal(err)
	}
	if code, _ := c.expectClose(); code != 4002 {
		t.Errorf("compressed binary payload from the client: close %d, want 4002", code)
	}
}

// TestIdentifyAfterFailedResume: after op 9 d:false for a RESUME the client
// may IDENTIFY on the same connection (reference §11).
func TestIdentifyAfterFailedResume(t *testing.T) {
	t.Parallel()
	s := startSim(t, baseConfig())
	ss := s.start(t, startOpts{})
	ss.ws.Close(websocket.StatusNormalClosure, "") // ends the session
	c := dialURL(t, ss.resumeURL(), ss.comp)
	c.hello()
	c.send(resumePayload(s.token(), ss.ready.SessionID, ss.lastSeq.Load()))
	if d, _ := invalidSessionD(t, c); d != "false" {
		t.Fatalf("RESUME of an ended session: op 9 d = %s, want false", d)
	}
	s.identifyOn(t, c, startOpts{})
}

// TestDocumentedChoices pins the simulator's documented answers to questions
// Discord leaves open.
func TestDocumentedChoices(t *testing.T) {
	t.Parallel()
	t.Run("v 6 to 8 accepted", func(t *testing.T) {
		t.Parallel()
		s := startSim(t, baseConfig())
		for _, v := range []int{6, 7, 8} {
			ss := s.start(t, startOpts{dial: dialOpts{query: "encoding=json&v=" + strconv.Itoa(v)}, noStream: true})
			if ss.ready.V != v {
				t.Errorf("READY v = %d on a v=%d connection", ss.ready.V, v)
			}
		}
	})
	t.Run("encoding etf closes 4002", func(t *testing.T) {
		t.Parallel()
		s := startSim(t, baseConfig())
		c := s.dial(t, dialOpts{query: "v=10&encoding=etf"})
		c.hello()
		if code, _ := c.expectClose(); code != 4002 {
			t.Errorf("encoding=etf: close %d, want 4002 after HELLO", code)
		}
	})
	t.Run("unknown compress ignored and counted", func(t *testing.T) {
		t.Parallel()
		s := startSim(t, baseConfig())
		ss := s.start(t, startOpts{dial: dialOpts{query: "v=10&encoding=json&compress=brotli"}})
		if ss.readyF.Type != websocket.MessageText {
			t.Errorf("compress=brotli: READY in a %v message, want uncompressed text", ss.readyF.Type)
		}
		s.waitStats(t, "unknown_compress", func(st statsJSON) bool { return st.Violations["unknown_compress"] == 1 })
	})
	t.Run("heartbeat seq ahead counted not closed", func(t *testing.T) {
		t.Parallel()
		s := startSim(t, baseConfig())
		ss := s.start(t, startOpts{})
		ss.send(heartbeatPayload(ss.lastSeq.Load() + 100))
		ss.waitOp(discord.OpHeartbeatACK)
		s.waitStats(t, "heartbeat_seq", func(st statsJSON) bool { return st.Violations["heartbeat_seq"] == 1 })
	})
	t.Run("resume of an attached session moves it", func(t *testing.T) {
		t.Parallel()
		s := startSim(t, baseConfig())
		ss := s.start(t, startOpts{})
		rc := ss.resume(t, ss.resumeURL(), ss.lastSeq.Load())
		rc.waitDispatch("RESUMED")
		code, _ := ss.expectClose()
		if code == 1000 || code == 1001 {
			t.Errorf("old connection closed with %d, want a code that does not end the session", code)
		}
		rc.roundTrip()
	})
	t.Run("large_threshold clamped to 50", func(t *testing.T) {
		t.Parallel()
		cfg := baseConfig()
		cfg.Guilds = 30
		s := startSim(t, cfg)
		c := s.dial(t, dialOpts{})
		c.hello()
		p := identifyPayload(s.token(), nil, uint64(discord.IntentsNonPrivileged))
		p["d"].(map[string]any)["large_threshold"] = 10
		c.send(p)
		c.waitDispatch("READY")
		for range 30 {
			f, _ := c.waitDispatch("GUILD_CREATE")
			var g struct {
				MemberCount int  `json:"member_count"`
				Large       bool `json:"large"`
			}
			json.Unmarshal(f.D, &g)
			if g.Large != (g.MemberCount > 50) {
				t.Errorf("large_threshold 10 (clamped to 50): large %v with member_count %d", g.Large, g.MemberCount)
			}
		}
	})
}

// TestSendWindowSlides: the send limit counts payloads in a sliding window,
// not a fixed one. Batches of 5 at 0 s, 0.75 s and 1.8 s with a 1.5 s window
// and a limit of 10: at 1.8 s the first batch has left the window and the
// second has not, so the third batch fits and one more payload is over. The
// test checks its own timing and retries when the machine was too slow to
// keep those gaps.
func TestSendWindowSlides(t *testing.T) {
	t.Parallel()
	const window = 1500 * time.Millisecond
	cfg := baseConfig()
	cfg.SendLimit = 10
	cfg.SendWindow = window
	s := startSim(t, cfg)
	for attempt := range 3 {
		c := s.dial(t, dialOpts{})
		c.hello()
		// batch sends n heartbeats and returns when the first was sent and
		// when the last ACK arrived: the server received them in between.
		batch := func(n int) (sent, acked time.Time, err error) {
			sent = time.Now()
			for range n {
				c.heartbeat()
			}
			for range n {
				if _, err := c.nextOp(discord.OpHeartbeatACK); err != nil {
					return sent, time.Now(), err
				}
			}
			return sent, time.Now(), nil
		}
		start := time.Now()
		_, acked1, err := batch(5)
		if err != nil {
			t.Fatalf("first batch: %v", err)
		}
		time.Sleep(time.Until(start.Add(750 * time.Millisecond)))
		sent2, _, err := batch(5)
		if err != nil {
			t.Fatalf("second batch: %v", err)
		}
		time.Sleep(time.Until(start.Add(1800 * time.Millisecond)))
		sent3 := time.Now()
		_, _, err3 := batch(5)
		c.heartbeat()
		end := time.Now()
		if sent3.Sub(acked1) <= window || end.Sub(sent2) >= window {
			t.Logf("attempt %d: timing off (batch 1 acked %v before batch 3, batch 2 sent %v before the last payload); retrying",
				attempt, sent3.Sub(acked1), end.Sub(sent2))
			continue
		}
		if err3 != nil {
			t.Fatalf("third batch, with the first out of the %v window: %v (a fixed window?)", window, err3)
		}
		if code, _ := c.expectClose(); code != 4008 {
			t.Errorf("11th payload within a %v window: close %d, want 4008", window, code)
		}
		return
	}
	t.Skip("machine too slow to keep the timing this test needs")
}

// TestNoTrace: NoTrace removes _trace from READY and RESUMED too.
func TestNoTrace(t *testing.T) {
	t.Parallel()
	cfg := baseConfig()
	cfg.NoTrace = true
	s := startSim(t, cfg)
	ss := s.start(t, startOpts{})
	if bytes.Contains(ss.readyF.D, []byte(`"_trace"`)) {
		t.Errorf("NoTrace: READY has _trace")
	}
	ss.disconnect()
	rc := ss.resume(t, ss.resumeURL(), ss.lastSeq.Load())
	f, _ := rc.waitDispatch("RESUMED")
	if bytes.Contains(f.D, []byte(`"_trace"`)) {
		t.Errorf("NoTrace: RESUMED d = %s, want no _trace", f.D)
	}
}

// TestURLsFromHostHeader: /gateway, /gateway/bot and READY's
// resume_gateway_url use the request's Host header.
func TestURLsFromHostHeader(t *testing.T) {
	t.Parallel()
	s := startSim(t, baseConfig())
	_, port, _ := strings.Cut(s.addr, ":")
	host := "localhost:" + port
	for _, path := range []string{"/api/v10/gateway", "/api/v10/gateway/bot"} {
		req, _ := http.NewRequestWithContext(t.Context(), "GET", "http://"+s.addr+path, nil)
		req.Host = host
		req.Header.Set("Authorization", "Bot "+s.token())
		resp, err := s.hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var body struct {
			URL string `json:"url"`
		}
		json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		if body.URL != "ws://"+host {
			t.Errorf("GET %s with Host %s: url %q, want %q", path, host, body.URL, "ws://"+host)
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, "ws://"+s.addr+"/?v=10&encoding=json", &websocket.DialOptions{Host: host})
	if err != nil {
		t.Fatal(err)
	}
	defer ws.CloseNow()
	ws.SetReadLimit(-1)
	ws.Read(ctx) // HELLO
	p, _ := json.Marshal(identifyPayload(s.token(), nil, uint64(discord.IntentsNonPrivileged)))
	ws.Write(ctx, websocket.MessageText, p)
	_, msg, err := ws.Read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var ready struct {
		D discord.Ready `json:"d"`
	}
	json.Unmarshal(msg, &ready)
	if want := "ws://" + host + "/resume"; ready.D.ResumeGatewayURL != want {
		t.Errorf("READY resume_gateway_url with Host %s = %q, want %q", host, ready.D.ResumeGatewayURL, want)
	}
}

// TestHandlerMounted: Handler serves REST and the gateway under a caller's
// own http.Server.
func TestHandlerMounted(t *testing.T) {
	t.Parallel()
	cfg := baseConfig()
	srv, err := sim.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: srv.Handler()}
	served := make(chan error, 1)
	go func() { served <- hs.Serve(ln) }()
	s := &simServer{t: t, srv: srv, cfg: cfg, addr: ln.Addr().String(),
		hc: &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}, paces: map[int]*bucketPace{}}
	if gb := s.gatewayBot(t); gb.URL != "ws://"+s.addr {
		t.Errorf("/gateway/bot url = %q, want ws://%s", gb.URL, s.addr)
	}
	ss := s.start(t, startOpts{})
	ss.roundTrip()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Errorf("Shutdown = %v", err)
	}
	ss.expectClose()
	if err := hs.Shutdown(ctx); err != nil {
		t.Errorf("http.Server.Shutdown = %v", err)
	}
	<-served
}

// TestFaultZombieDuration: a zombie fault with a duration ends by itself:
// heartbeats during it go unanswered, heartbeats after it are ACKed.
func TestFaultZombieDuration(t *testing.T) {
	t.Parallel()
	s := startSim(t, baseConfig())
	ss := s.start(t, startOpts{})
	s.fault(t, `{"kind":"zombie","duration":"1s"}`)
	applied := time.Now()
	ss.heartbeat()
	if time.Since(applied) < 500*time.Millisecond {
		ss.expectNothing(300*time.Millisecond, "an ACK during the zombie period", func(f *frame) bool { return f.Op == discord.OpHeartbeatACK })
	}
	time.Sleep(time.Until(applied.Add(1200 * time.Millisecond)))
	ss.roundTrip()
}

// TestDMContentKept: without MESSAGE_CONTENT, DMs still carry their content
// (reference §15).
func TestDMContentKept(t *testing.T) {
	t.Parallel()
	cfg := baseConfig()
	cfg.EventRate = 1000
	s := startSim(t, cfg)
	ss := s.start(t, startOpts{intents: discord.IntentsNonPrivileged})
	events, _ := ss.collectEvents(400)
	dms, withContent := 0, 0
	for _, ev := range events {
		if ev.guild == 0 && ev.f.T == "MESSAGE_CREATE" {
			dms++
			if ev.content.Content != nil && *ev.content.Content != "" {
				withContent++
			}
		}
	}
	if dms == 0 {
		t.Fatalf("400 events with DIRECT_MESSAGES: no DM MESSAGE_CREATE, want some on shard 0")
	}
	if withContent == 0 {
		t.Errorf("%d DM MESSAGE_CREATEs without MESSAGE_CONTENT, none with content; want DMs unstripped", dms)
	}
}

// TestWebSocketLayer: the server side of RFC 6455 as clients use it:
// fragmented client messages (reassembled, the 4096-byte limit applying to
// the whole message), pings, and a client offering permessage-deflate.
func TestWebSocketLayer(t *testing.T) {
	t.Parallel()
	s := startSim(t, baseConfig())
	fragmented := func(t *testing.T, c *conn, parts ...string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
		defer cancel()
		w, err := c.ws.Writer(ctx, websocket.MessageText)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range parts {
			if _, err := w.Write([]byte(p)); err != nil {
				t.Fatal(err)
			}
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
	}
	t.Run("fragmented message", func(t *testing.T) {
		c := s.dial(t, dialOpts{})
		c.hello()
		fragmented(t, c, `{"op":1,`, `"d":null}`)
		if f := c.next(); f.Op != discord.OpHeartbeatACK {
			t.Errorf("heartbeat in two fragments: got %v, want ACK", f)
		}
	})
	t.Run("fragmented message over 4096 bytes", func(t *testing.T) {
		c := s.dial(t, dialOpts{})
		c.hello()
		p := padded(5000)
		fragmented(t, c, p[:3000], p[3000:])
		if code, _ := c.expectClose(); code != 4002 {
			t.Errorf("5000 bytes in two fragments of 3000 and 2000: close %d, want 4002", code)
		}
	})
	t.Run("ping", func(t *testing.T) {
		c := s.dial(t, dialOpts{})
		c.hello()
		ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
		defer cancel()
		if err := c.ws.Ping(ctx); err != nil {
			t.Errorf("Ping = %v, want a pong", err)
		}
	})
	t.Run("permessage-deflate offered", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
		defer cancel()
		ws, _, err := websocket.Dial(ctx, s.baseURL()+"/?v=10&encoding=json",
			&websocket.DialOptions{CompressionMode: websocket.CompressionContextTakeover})
		if err != nil {
			t.Fatal(err)
		}
		defer ws.CloseNow()
		if _, m, err := ws.Read(ctx); err != nil || !bytes.Contains(m, []byte(`"op":10`)) {
			t.Fatalf("HELLO = %s, %v", m, err)
		}
		ws.Write(ctx, websocket.MessageText, []byte(`{"op":1,"d":null}`))
		if _, m, err := ws.Read(ctx); err != nil || !bytes.Contains(m, []byte(`"op":11`)) {
			t.Errorf("ACK with permessage-deflate offered = %s, %v", m, err)
		}
	})
}

// TestLargeReady: a shard of 2500 guilds gets a READY of about 120 KB (WebSocket
// frames with 64-bit lengths), in every transport.
func TestLargeReady(t *testing.T) {
	t.Parallel()
	cfg := baseConfig()
	cfg.Guilds = 2500
	s := startSim(t, cfg)
	for _, comp := range []codec.Compression{codec.None, codec.ZlibStream, codec.ZstdStream} {
		ss := s.start(t, startOpts{shard: []int{0, 1}, dial: dialOpts{comp: comp}, noStream: true})
		if len(ss.guilds) != 2500 {
			t.Errorf("%s: READY lists %d guilds, want 2500", comp, len(ss.guilds))
		}
		if n := len(ss.readyF.Raw); n < 100<<10 || n > 200<<10 {
			t.Errorf("%s: READY for 2500 guilds is %d bytes, want about 1.8 KB + 47 B per guild", comp, n)
		}
		if comp != codec.None {
			ss.disconnect()
			continue
		}
		// The GUILD_CREATE stream: most guilds small, some large ones bigger.
		biggest, seen := 0, 0
		for seen < 2500 {
			f, _ := ss.waitDispatch("GUILD_CREATE")
			seen++
			biggest = max(biggest, len(f.Raw))
		}
		if biggest < 16<<10 {
			t.Errorf("largest of 2500 GUILD_CREATEs is %d bytes, want some large guilds well above the 2-11 KB of small ones", biggest)
		}
		ss.disconnect()
	}
}
