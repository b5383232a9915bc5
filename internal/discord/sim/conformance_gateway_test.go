package sim_test

import (
	"encoding/json"
	"errors"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/google/go-cmp/cmp"

	"github.com/gatehouse-dev/gatehouse/internal/discord"
	"github.com/gatehouse-dev/gatehouse/internal/discord/sim"
)

// TestHello: HELLO is the first frame, with the configured
// heartbeat_interval and a _trace unless NoTrace.
func TestHello(t *testing.T) {
	t.Parallel()
	for _, noTrace := range []bool{false, true} {
		cfg := baseConfig()
		cfg.HeartbeatInterval = 1234 * time.Millisecond
		cfg.NoTrace = noTrace
		s := startSim(t, cfg)
		c := s.dial(t, dialOpts{})
		f := c.next()
		if f.Op != discord.OpHello || f.S != 0 || f.T != "" {
			t.Fatalf("first frame = %v, want HELLO with t and s null", f)
		}
		if !strings.HasPrefix(string(f.Raw), `{"t":null,"s":null,"op":10,"d":{"heartbeat_interval":1234`) {
			t.Errorf("HELLO = %s, want it to start {\"t\":null,\"s\":null,\"op\":10,\"d\":{\"heartbeat_interval\":1234", f.Raw)
		}
		var d map[string]json.RawMessage
		if err := json.Unmarshal(f.D, &d); err != nil {
			t.Fatal(err)
		}
		trace, has := d["_trace"]
		var tr []string
		switch {
		case noTrace && has:
			t.Errorf("NoTrace: HELLO d = %s, want no _trace", f.D)
		case !noTrace && (!has || json.Unmarshal(trace, &tr) != nil || len(tr) == 0):
			t.Errorf("HELLO d = %s, want a non-empty _trace array of strings", f.D)
		}
	}
}

// TestServerFrameKeyOrder: every server frame has exactly the keys t, s, op,
// d in that order, in the raw bytes; an ACK is byte for byte Discord's.
func TestServerFrameKeyOrder(t *testing.T) {
	t.Parallel()
	cfg := baseConfig()
	cfg.Guilds = 5
	cfg.EventRate = 100
	s := startSim(t, cfg)
	c := s.dial(t, dialOpts{})
	hello := c.next()
	c.heartbeat()
	ack, _ := c.waitOp(discord.OpHeartbeatACK)
	if string(ack.Raw) != `{"t":null,"s":null,"op":11,"d":null}` {
		t.Errorf("ACK = %s, want {\"t\":null,\"s\":null,\"op\":11,\"d\":null}", ack.Raw)
	}
	ss := s.identifyOn(t, c, startOpts{})
	events, others := ss.collectEvents(10)
	all := append([]*frame{hello, ack, ss.readyF}, ss.creates...)
	all = append(all, others...)
	for _, ev := range events {
		all = append(all, ev.f)
	}
	want := []string{"t", "s", "op", "d"}
	for _, f := range all {
		keys, err := topKeys(f.Raw)
		if err != nil {
			t.Fatalf("%v: %v", f, err)
		}
		if !slices.Equal(keys, want) {
			t.Errorf("frame %v has keys %v, want %v", f, keys, want)
		}
		if f.Op == discord.OpDispatch && !strings.HasPrefix(string(f.Raw), `{"t":"`+f.T+`","s":`) {
			t.Errorf("dispatch raw %.60s, want {\"t\":\"%s\",\"s\":…", f.Raw, f.T)
		}
	}
}

// TestHeartbeatACK: every heartbeat gets one op 11, before IDENTIFY (d null)
// and after (d the last s).
func TestHeartbeatACK(t *testing.T) {
	t.Parallel()
	s := startSim(t, baseConfig())
	c := s.dial(t, dialOpts{})
	c.hello()
	for range 3 {
		c.send(`{"op":1,"d":null}`)
	}
	for i := range 3 {
		if f := c.next(); f.Op != discord.OpHeartbeatACK || string(f.D) != "null" {
			t.Fatalf("answer %d to a heartbeat before IDENTIFY = %v, want op 11 d null", i, f)
		}
	}
	ss := s.identifyOn(t, c, startOpts{})
	for range 3 {
		ss.heartbeat()
	}
	for range 3 {
		ss.waitOp(discord.OpHeartbeatACK)
	}
	ss.expectNothing(quietPeriod, "a fourth ACK", func(f *frame) bool { return f.Op == discord.OpHeartbeatACK })
	s.waitStats(t, "heartbeats 6", func(st statsJSON) bool { return st.Heartbeats == 6 })
}

// TestServerRequestsHeartbeats: with RequestHeartbeats the server sends op 1
// periodically; answering gets an ACK.
func TestServerRequestsHeartbeats(t *testing.T) {
	t.Parallel()
	cfg := baseConfig()
	cfg.RequestHeartbeats = 100 * time.Millisecond
	s := startSim(t, cfg)
	ss := s.start(t, startOpts{})
	for i := range 2 {
		req, _ := ss.waitOp(discord.OpHeartbeat)
		if req.S != 0 || req.T != "" {
			t.Errorf("heartbeat request %d = %v, want t and s null", i, req)
		}
		ss.heartbeat()
		ss.waitOp(discord.OpHeartbeatACK)
	}
}

// TestHeartbeatTimeout: a client that stops heartbeating is closed with the
// configured code (default 4009), and its session can still be resumed.
func TestHeartbeatTimeout(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		interval time.Duration
		timeout  time.Duration
		code     int
		want     websocket.StatusCode
	}{
		{"default code 4009", time.Second, 0, 0, 4009},
		{"configured code 4000", time.Second, 0, 4000, 4000},
		// A 30 s interval with a 1 s timeout: the close within
		// waitTimeout proves HeartbeatTimeout is used.
		{"configured timeout", 30 * time.Second, time.Second, 0, 4009},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := baseConfig()
			cfg.Guilds = 3
			cfg.HeartbeatInterval, cfg.HeartbeatTimeout, cfg.HeartbeatTimeoutCode = tc.interval, tc.timeout, tc.code
			s := startSim(t, cfg)
			c := s.dial(t, dialOpts{})
			c.hello()
			c.heartbeatEvery(200 * time.Millisecond) // until READY and the guilds are in
			ss := s.identifyOn(t, c, startOpts{})
			ss.stopHeartbeat()
			code, _ := ss.expectClose()
			if code != tc.want {
				t.Fatalf("no heartbeats: close code %d, want %d", code, tc.want)
			}
			s.waitStats(t, "violation heartbeat_timeout", func(st statsJSON) bool { return st.Violations["heartbeat_timeout"] == 1 })
			rc := ss.resume(t, ss.resumeURL(), ss.lastSeq.Load())
			f, _ := rc.waitFor("RESUMED", func(f *frame) bool { return f.T == "RESUMED" || f.Op == discord.OpInvalidSession })
			if f.T != "RESUMED" {
				t.Errorf("RESUME after a heartbeat timeout got %v, want RESUMED (the session stays resumable)", f)
			}
		})
	}
}

// TestHeartbeatKeepsAlive: a client that heartbeats (early, which Discord
// allows) is not closed.
func TestHeartbeatKeepsAlive(t *testing.T) {
	t.Parallel()
	cfg := baseConfig()
	cfg.HeartbeatInterval = 1500 * time.Millisecond
	s := startSim(t, cfg)
	ss := s.start(t, startOpts{})
	ss.heartbeatEvery(300 * time.Millisecond)
	got := ss.expectNothing(2500*time.Millisecond, "a close", func(*frame) bool { return false })
	ss.stopHeartbeat()
	sent := ss.hbSent.Load()
	var acks int64
	for _, f := range got {
		if f.Op == discord.OpHeartbeatACK {
			acks++
		}
	}
	for acks < sent {
		if _, err := ss.nextOp(discord.OpHeartbeatACK); err != nil {
			t.Fatalf("%d heartbeats, %d ACKs: %v", sent, acks, err)
		}
		acks++
	}
	ss.expectNothing(quietPeriod, "more ACKs than heartbeats", func(f *frame) bool { return f.Op == discord.OpHeartbeatACK })
	if sent < 5 {
		t.Errorf("heartbeating every 300ms for 2.5s sent %d heartbeats, want at least 5", sent)
	}
	if st := s.stats(t); st.Violations["heartbeat_timeout"] != 0 {
		t.Errorf("violations = %v, want no heartbeat_timeout", st.Violations)
	}
}

// closeCase is one payload sequence that the gateway must close with code,
// counting the violation rule.
type closeCase struct {
	name  string
	cfg   func(*sim.Config)
	query string
	steps func(t *testing.T, s *simServer, c *conn)
	code  websocket.StatusCode
	rule  string
	// identified: the steps start a session, so READY is expected and one
	// session start is spent.
	identified bool
}

func sendAfterHello(payloads ...string) func(*testing.T, *simServer, *conn) {
	return func(t *testing.T, s *simServer, c *conn) {
		c.hello()
		for _, p := range payloads {
			c.send(p)
		}
	}
}

func identifyWith(token string, shard []int, intents any) func(*testing.T, *simServer, *conn) {
	return func(t *testing.T, s *simServer, c *conn) {
		c.hello()
		if token == "" {
			token = s.token()
		}
		c.send(identifyPayload(token, shard, intents))
	}
}

func afterReady(payloads ...string) func(*testing.T, *simServer, *conn) {
	return func(t *testing.T, s *simServer, c *conn) {
		c.hello()
		s.identifyOn(t, c, startOpts{intents: discord.IntentsNonPrivileged, noStream: true})
		for _, p := range payloads {
			c.send(p)
		}
	}
}

const validPresence = `{"op":3,"d":{"since":null,"activities":[{"name":"x","type":0}],"status":"online","afk":false}}`

// padded returns a heartbeat payload of exactly n bytes (JSON whitespace pads it).
func padded(n int) string {
	const head, tail = `{"op":1,"d":null`, `}`
	return head + strings.Repeat(" ", n-len(head)-len(tail)) + tail
}

func withCfg(f func(*sim.Config)) func(*sim.Config) { return f }

// TestGatewayCloseCodes: each validation rule of the connection state
// machine and of IDENTIFY closes with Discord's code and counts the rule.
func TestGatewayCloseCodes(t *testing.T) {
	t.Parallel()
	nonPriv := uint64(discord.IntentsNonPrivileged)
	bigBot := withCfg(func(c *sim.Config) { c.Guilds = 6000 })
	noPresences := withCfg(func(c *sim.Config) { c.DisallowedIntents = discord.IntentGuildPresences })
	multiple4 := withCfg(func(c *sim.Config) { c.ShardMultiple = 4; c.Guilds = 40 })
	cases := []closeCase{
		// 4003: only heartbeat, IDENTIFY and RESUME before a session.
		{name: "op 3 before identify", steps: sendAfterHello(validPresence), code: 4003, rule: "not_authenticated"},
		{name: "op 4 before identify", steps: sendAfterHello(`{"op":4,"d":{"guild_id":"41771983423143937","channel_id":null,"self_mute":false,"self_deaf":false}}`), code: 4003, rule: "not_authenticated"},
		{name: "op 8 before identify", steps: sendAfterHello(`{"op":8,"d":{"guild_id":"41771983423143937","query":"","limit":0}}`), code: 4003, rule: "not_authenticated"},
		// 4004.
		{name: "bad token", steps: identifyWith("wrong-token", nil, nonPriv), code: 4004, rule: "authentication_failed"},
		// 4005.
		{name: "second identify", steps: func(t *testing.T, s *simServer, c *conn) {
			afterReady()(t, s, c)
			c.send(identifyPayload(s.token(), nil, nonPriv))
		}, code: 4005, rule: "already_authenticated", identified: true},
		{name: "resume when identified", steps: func(t *testing.T, s *simServer, c *conn) {
			c.hello()
			ss := s.identifyOn(t, c, startOpts{noStream: true})
			c.send(resumePayload(s.token(), ss.ready.SessionID, 1))
		}, code: 4005, rule: "already_authenticated", identified: true},
		// 4010.
		{name: "shard id equals count", steps: identifyWith("", []int{2, 2}, nonPriv), code: 4010, rule: "invalid_shard"},
		{name: "shard id above count", steps: identifyWith("", []int{3, 1}, nonPriv), code: 4010, rule: "invalid_shard"},
		{name: "shard count zero", steps: identifyWith("", []int{0, 0}, nonPriv), code: 4010, rule: "invalid_shard"},
		{name: "negative shard id", steps: identifyWith("", []int{-1, 2}, nonPriv), code: 4010, rule: "invalid_shard"},
		{name: "count 2 not a multiple of 4", cfg: multiple4, steps: identifyWith("", []int{0, 2}, nonPriv), code: 4010, rule: "invalid_shard"},
		{name: "count 6 not a multiple of 4", cfg: multiple4, steps: identifyWith("", []int{1, 6}, nonPriv), code: 4010, rule: "invalid_shard"},
		// 4011: more than 2500 guilds on the shard.
		{name: "6000 guilds without shard", cfg: bigBot, steps: identifyWith("", nil, nonPriv), code: 4011, rule: "sharding_required"},
		{name: "6000 guilds on 1 shard", cfg: bigBot, steps: identifyWith("", []int{0, 1}, nonPriv), code: 4011, rule: "sharding_required"},
		{name: "6000 guilds shard 0 of 2", cfg: bigBot, steps: identifyWith("", []int{0, 2}, nonPriv), code: 4011, rule: "sharding_required"},
		{name: "6000 guilds shard 1 of 2", cfg: bigBot, steps: identifyWith("", []int{1, 2}, nonPriv), code: 4011, rule: "sharding_required"},
		// 4012.
		{name: "v=11", query: "v=11&encoding=json", steps: func(*testing.T, *simServer, *conn) {}, code: 4012, rule: "invalid_api_version"},
		{name: "v=5", query: "v=5&encoding=json", steps: func(*testing.T, *simServer, *conn) {}, code: 4012, rule: "invalid_api_version"},
		{name: "v=abc", query: "v=abc&encoding=json", steps: func(*testing.T, *simServer, *conn) {}, code: 4012, rule: "invalid_api_version"},
		// 4013.
		{name: "intents missing", steps: identifyWith("", nil, nil), code: 4013, rule: "invalid_intents"},
		{name: "undefined intent bit 17", steps: identifyWith("", nil, uint64(1<<17|1)), code: 4013, rule: "invalid_intents"},
		{name: "undefined intent bit 22", steps: identifyWith("", nil, uint64(1<<22)), code: 4013, rule: "invalid_intents"},
		// 4014.
		{name: "presences not enabled", cfg: noPresences, steps: identifyWith("", nil, uint64(discord.IntentGuilds|discord.IntentGuildPresences)), code: 4014, rule: "disallowed_intents"},
		{name: "message content not enabled", cfg: withCfg(func(c *sim.Config) { c.DisallowedIntents = discord.IntentMessageContent }),
			steps: identifyWith("", nil, uint64(discord.IntentGuildMessages|discord.IntentMessageContent)), code: 4014, rule: "disallowed_intents"},
		// 4002.
		{name: "bad JSON before identify", steps: sendAfterHello(`{"op":2,`), code: 4002, rule: "decode_error"},
		{name: "bad JSON after identify", steps: afterReady(`{"op":1,"d":nul`), code: 4002, rule: "decode_error", identified: true},
		{name: "payload of 4097 bytes", steps: sendAfterHello(padded(4097)), code: 4002, rule: "payload_too_large"},
		{name: "identify over 4096 bytes", steps: func(t *testing.T, s *simServer, c *conn) {
			c.hello()
			p := identifyPayload(s.token(), nil, nonPriv)
			p["d"].(map[string]any)["properties"] = map[string]string{"os": strings.Repeat("x", 5000), "browser": "b", "device": "d"}
			c.send(p)
		}, code: 4002, rule: "payload_too_large"},
		// 4001.
		{name: "op 5 after identify", steps: afterReady(`{"op":5,"d":null}`), code: 4001, rule: "unknown_opcode", identified: true},
		{name: "op 99 after identify", steps: afterReady(`{"op":99,"d":null}`), code: 4001, rule: "unknown_opcode", identified: true},
		{name: "op 99 before identify", steps: sendAfterHello(`{"op":99,"d":null}`), code: 4001, rule: "unknown_opcode"},
		{name: "op 3 without since", steps: afterReady(`{"op":3,"d":{"activities":[],"status":"online","afk":false}}`), code: 4001, rule: "unknown_opcode", identified: true},
		// Discord's order of checks: token, intents, privileged, shard, guild count.
		{name: "order: bad token before bad intents", steps: identifyWith("wrong-token", nil, uint64(1<<17)), code: 4004, rule: "authentication_failed"},
		{name: "order: undefined intents before disallowed", cfg: noPresences,
			steps: identifyWith("", nil, uint64(discord.IntentGuildPresences|1<<17)), code: 4013, rule: "invalid_intents"},
		{name: "order: disallowed before bad shard", cfg: noPresences,
			steps: identifyWith("", []int{5, 2}, uint64(discord.IntentGuildPresences)), code: 4014, rule: "disallowed_intents"},
		{name: "order: bad shard before sharding required", cfg: bigBot, steps: identifyWith("", []int{5, 2}, nonPriv), code: 4010, rule: "invalid_shard"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := baseConfig()
			if tc.cfg != nil {
				tc.cfg(&cfg)
			}
			s := startSim(t, cfg)
			c := s.dial(t, dialOpts{query: tc.query})
			tc.steps(t, s, c)
			code, frames := c.expectClose()
			if code != tc.code {
				t.Fatalf("close code %d, want %d (frames before: %v)", code, tc.code, frames)
			}
			if !tc.identified {
				for _, f := range frames {
					if f.T == "READY" {
						t.Errorf("got READY before the %d close", tc.code)
					}
				}
			}
			st := s.waitStats(t, "violation "+tc.rule, func(st statsJSON) bool { return st.Violations[tc.rule] >= 1 })
			if st.Violations[tc.rule] != 1 {
				t.Errorf("violations[%q] = %d, want 1 (all: %v)", tc.rule, st.Violations[tc.rule], st.Violations)
			}
			wantRemaining := 1000
			if tc.identified {
				wantRemaining = 999
			}
			if st.SessionStartsRemaining != wantRemaining {
				t.Errorf("session_starts_remaining = %d, want %d (only accepted IDENTIFYs spend one)", st.SessionStartsRemaining, wantRemaining)
			}
		})
	}
}

// TestShardMultipleAccepted: with ShardMultiple 4, a shard count of 8 is
// fine.
func TestShardMultipleAccepted(t *testing.T) {
	t.Parallel()
	cfg := baseConfig()
	cfg.ShardMultiple, cfg.Guilds = 4, 40
	s := startSim(t, cfg)
	ss := s.start(t, startOpts{shard: []int{5, 8}})
	if ss.ready.Shard == nil || *ss.ready.Shard != [2]int{5, 8} {
		t.Errorf("READY shard = %v, want [5 8]", ss.ready.Shard)
	}
}

// TestPayloadSizeLimitBoundary: a payload of exactly 4096 bytes is accepted.
func TestPayloadSizeLimitBoundary(t *testing.T) {
	t.Parallel()
	s := startSim(t, baseConfig())
	c := s.dial(t, dialOpts{})
	c.hello()
	c.send(padded(4096))
	if f := c.next(); f.Op != discord.OpHeartbeatACK {
		t.Fatalf("4096-byte heartbeat got %v, want ACK", f)
	}
}

// TestActiveStateAcceptsOps: after READY, ops 1, 3, 4, 8, 31 and 43 with
// valid shapes are accepted.
func TestActiveStateAcceptsOps(t *testing.T) {
	t.Parallel()
	s := startSim(t, baseConfig())
	ss := s.start(t, startOpts{intents: discord.IntentsAll})
	g := ss.ready.Guilds[0].ID.String()
	for _, p := range []string{
		validPresence,
		`{"op":4,"d":{"guild_id":"` + g + `","channel_id":null,"self_mute":false,"self_deaf":false}}`,
		`{"op":8,"d":{"guild_id":"` + g + `","query":"","limit":0}}`,
		`{"op":31,"d":{"guild_ids":["` + g + `"]}}`,
		`{"op":43,"d":{"guild_id":"` + g + `","fields":["status"]}}`,
	} {
		ss.send(p)
		ss.roundTrip()
	}
	if st := s.stats(t); len(st.Violations) != 0 && sumViolations(st) != 0 {
		t.Errorf("violations = %v after valid ops, want none", st.Violations)
	}
}

func sumViolations(st statsJSON) int64 {
	var n int64
	for _, v := range st.Violations {
		n += v
	}
	return n
}

// TestSendLimit: more than SendLimit payloads in the window close with 4008
// at once; heartbeats and IDENTIFY count; a new connection has a fresh
// budget.
func TestSendLimit(t *testing.T) {
	t.Parallel()
	for _, withIdentify := range []bool{false, true} {
		name := "heartbeats only"
		if withIdentify {
			name = "identify and heartbeats"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			cfg := baseConfig()
			cfg.SendLimit = 10
			s := startSim(t, cfg)
			c := s.dial(t, dialOpts{})
			c.hello()
			beats := 10
			if withIdentify {
				s.identifyOn(t, c, startOpts{noStream: true})
				beats = 9
			}
			for range beats {
				c.heartbeat()
			}
			for i := range beats {
				if _, err := c.nextOp(discord.OpHeartbeatACK); err != nil {
					t.Fatalf("ACK %d of %d (payloads within the limit of 10): %v", i+1, beats, err)
				}
			}
			c.heartbeat() // payload 11
			code, _ := c.expectClose()
			if code != 4008 {
				t.Fatalf("payload 11 with SendLimit 10: close code %d, want 4008", code)
			}
			s.waitStats(t, "violation send_rate", func(st statsJSON) bool { return st.Violations["send_rate"] == 1 })

			fresh := s.dial(t, dialOpts{})
			fresh.hello()
			for range 10 {
				fresh.heartbeat()
			}
			for i := range 10 {
				if _, err := fresh.nextOp(discord.OpHeartbeatACK); err != nil {
					t.Fatalf("new connection, ACK %d of 10: %v (the budget is per connection)", i+1, err)
				}
			}
		})
	}
}

// nextOp reads frames until one with op arrives, returning an error on close.
func (c *conn) nextOp(op discord.Opcode) (*frame, error) {
	deadline := time.Now().Add(waitTimeout)
	for {
		f, err := c.nextErr(time.Until(deadline))
		if err != nil {
			return nil, err
		}
		if f.Op == op {
			return f, nil
		}
	}
}

// invalidSessionD reads until op 9 or READY and returns op 9's d.
func invalidSessionD(t *testing.T, c *conn) (d string, elapsed time.Duration) {
	t.Helper()
	start := time.Now()
	f, _ := c.waitFor("INVALID_SESSION", func(f *frame) bool { return f.Op == discord.OpInvalidSession || f.T == "READY" || f.T == "RESUMED" })
	if f.Op != discord.OpInvalidSession {
		t.Fatalf("got %v, want INVALID_SESSION", f)
	}
	return string(f.D), time.Since(start)
}

// TestIdentifyRateLimitSameBucket: a second IDENTIFY in one bucket within
// the interval gets op 9 d:false after IdentifyRejectDelay and counts as an
// identify violation.
func TestIdentifyRateLimitSameBucket(t *testing.T) {
	t.Parallel()
	cfg := baseConfig()
	cfg.IdentifyInterval = 5 * time.Second
	cfg.IdentifyRejectDelay = 300 * time.Millisecond
	s := startSim(t, cfg)
	s.start(t, startOpts{shard: []int{0, 2}, noStream: true})
	c := s.dial(t, dialOpts{})
	c.hello()
	start := time.Now()
	c.send(identifyPayload(s.token(), []int{1, 2}, uint64(discord.IntentsNonPrivileged))) // bucket 1 % 1 = 0
	d, _ := invalidSessionD(t, c)
	if d != "false" {
		t.Errorf("too-fast IDENTIFY: op 9 d = %s, want false", d)
	}
	if el := time.Since(start); el < cfg.IdentifyRejectDelay {
		t.Errorf("op 9 came %v after IDENTIFY, want at least IdentifyRejectDelay %v", el, cfg.IdentifyRejectDelay)
	}
	st := s.waitStats(t, "one identify violation", func(st statsJSON) bool { return st.IdentifyViolations >= 1 })
	if st.IdentifyViolations != 1 || st.Violations["identify_rate"] != 1 || st.Readies != 1 || st.SessionStartsRemaining != 999 {
		t.Errorf("stats identify_violations %d, violations %v, readies %d, remaining %d; want 1, identify_rate 1, 1, 999",
			st.IdentifyViolations, st.Violations, st.Readies, st.SessionStartsRemaining)
	}
}

// TestIdentifyBuckets: with MaxConcurrency 2, shards 0 and 1 identify at
// once; shards 2 and 3 share buckets 0 and 1 with them and are too fast.
func TestIdentifyBuckets(t *testing.T) {
	t.Parallel()
	cfg := baseConfig()
	cfg.MaxConcurrency = 2
	cfg.IdentifyInterval = 5 * time.Second
	s := startSim(t, cfg)
	conns := make([]*conn, 4)
	for i := range conns {
		conns[i] = s.dial(t, dialOpts{})
		conns[i].hello()
	}
	for i := range 2 {
		conns[i].send(identifyPayload(s.token(), []int{i, 4}, uint64(discord.IntentsNonPrivileged)))
	}
	for i := range 2 {
		f, _ := conns[i].waitFor("READY", func(f *frame) bool { return f.T == "READY" || f.Op == discord.OpInvalidSession })
		if f.T != "READY" {
			t.Errorf("shard %d of 4 (bucket %d) identifying together with the other bucket got %v, want READY", i, i, f)
		}
	}
	for i := 2; i < 4; i++ {
		conns[i].send(identifyPayload(s.token(), []int{i, 4}, uint64(discord.IntentsNonPrivileged)))
	}
	for i := 2; i < 4; i++ {
		if d, _ := invalidSessionD(t, conns[i]); d != "false" {
			t.Errorf("shard %d of 4 in bucket %d: op 9 d = %s, want false", i, i%2, d)
		}
	}
	st := s.waitStats(t, "two identify violations", func(st statsJSON) bool { return st.IdentifyViolations >= 2 })
	if st.IdentifyViolations != 2 || st.Readies != 2 {
		t.Errorf("identify_violations %d readies %d, want 2 and 2", st.IdentifyViolations, st.Readies)
	}
}

// TestIdentifyAfterInterval: once the interval has passed, the same bucket
// may identify again; no violation.
func TestIdentifyAfterInterval(t *testing.T) {
	t.Parallel()
	cfg := baseConfig()
	cfg.IdentifyInterval = 300 * time.Millisecond
	s := startSim(t, cfg)
	s.start(t, startOpts{noStream: true})
	s.start(t, startOpts{noStream: true}) // waits 300ms after the first READY
	s.start(t, startOpts{noStream: true})
	st := s.waitStats(t, "3 readies", func(st statsJSON) bool { return st.Readies == 3 })
	if st.IdentifyViolations != 0 {
		t.Errorf("identify_violations = %d for IDENTIFYs one interval apart, want 0", st.IdentifyViolations)
	}
}

// TestIdentifyAgainOnSameConnection: after op 9 for a too-fast IDENTIFY the
// client may IDENTIFY again on the same connection (reference §11).
func TestIdentifyAgainOnSameConnection(t *testing.T) {
	t.Parallel()
	cfg := baseConfig()
	cfg.IdentifyInterval = 500 * time.Millisecond
	s := startSim(t, cfg)
	first := s.start(t, startOpts{noStream: true})
	_ = first
	readyAt := time.Now()
	c := s.dial(t, dialOpts{})
	c.hello()
	c.send(identifyPayload(s.token(), nil, uint64(discord.IntentsNonPrivileged)))
	if d, _ := invalidSessionD(t, c); d != "false" {
		t.Fatalf("op 9 d = %s, want false", d)
	}
	time.Sleep(time.Until(readyAt.Add(cfg.IdentifyInterval + 100*time.Millisecond)))
	c.send(identifyPayload(s.token(), nil, uint64(discord.IntentsNonPrivileged)))
	f, _ := c.waitFor("READY", func(f *frame) bool { return f.T == "READY" || f.Op == discord.OpInvalidSession })
	if f.T != "READY" {
		t.Errorf("IDENTIFY on the same connection after op 9 and the interval: got %v, want READY", f)
	}
}

// TestSessionStartBudget: the IDENTIFY after the last session start under
// each ExhaustedPolicy.
func TestSessionStartBudget(t *testing.T) {
	t.Parallel()
	for _, policy := range []sim.ExhaustedPolicy{sim.ExhaustResetToken, "invalid-session", "allow"} {
		t.Run(string(policy), func(t *testing.T) {
			t.Parallel()
			cfg := baseConfig()
			cfg.SessionStartTotal = 3
			cfg.MaxConcurrency = 4
			cfg.Exhausted = policy
			s := startSim(t, cfg)
			var live []*session
			for i := range 3 {
				live = append(live, s.start(t, startOpts{shard: []int{i, 4}, noStream: true}))
			}
			if got := s.gatewayBot(t).SessionStartLimit.Remaining; got != 0 {
				t.Fatalf("after 3 of 3 session starts: remaining = %d, want 0", got)
			}
			c := s.dial(t, dialOpts{})
			c.hello()
			c.send(identifyPayload(s.token(), []int{3, 4}, uint64(discord.IntentsNonPrivileged)))

			switch policy {
			case sim.ExhaustResetToken:
				if code, _ := c.expectClose(); code != 4004 {
					t.Errorf("IDENTIFY with no session starts left: close %d, want 4004 (token reset)", code)
				}
				for i, ss := range live {
					if code, _ := ss.expectClose(); code != 4004 {
						t.Errorf("live session %d after the token reset: close %d, want 4004", i, code)
					}
				}
				for _, path := range []string{"/api/v10/gateway/bot", "/api/v10/users/@me"} {
					if status, _, body := s.do(t, "GET", path, "Bot "+s.token(), nil); status != http.StatusUnauthorized || string(body) != body401 {
						t.Errorf("GET %s with the reset token = %d %s, want 401 %s", path, status, body, body401)
					}
				}
				// The sessions are gone. The contract allows both answers to a
				// RESUME with the reset token: 4004 (the token is refused) or
				// op 9 d:false (token mismatch on RESUME).
				rc := live[0].resume(t, live[0].resumeURL(), live[0].lastSeq.Load())
				f, err := rc.nextErr(waitTimeout)
				var ce *closedError
				switch {
				case errors.As(err, &ce) && ce.code == 4004:
				case err == nil && f.Op == discord.OpInvalidSession && string(f.D) == "false":
				default:
					t.Errorf("RESUME with the reset token: got %v %v, want close 4004 or op 9 d:false", f, err)
				}
				again := s.dial(t, dialOpts{})
				again.hello()
				again.send(identifyPayload(s.token(), []int{0, 4}, uint64(discord.IntentsNonPrivileged)))
				if code, _ := again.expectClose(); code != 4004 {
					t.Errorf("IDENTIFY with the reset token: close %d, want 4004", code)
				}
				st := s.waitStats(t, "token_reset", func(st statsJSON) bool { return st.TokenReset })
				if st.Violations["session_start_exhausted"] != 1 {
					t.Errorf("violations = %v, want session_start_exhausted 1", st.Violations)
				}
				s.srv.RotateToken("rotated-token")
				if status, _, body := s.do(t, "GET", "/api/v10/gateway/bot", "Bot rotated-token", nil); status != http.StatusOK {
					t.Errorf("after RotateToken: GET /gateway/bot with the new token = %d %s, want 200", status, body)
				}
				if status, _, _ := s.do(t, "GET", "/api/v10/gateway/bot", "Bot "+s.token(), nil); status != http.StatusUnauthorized {
					t.Errorf("after RotateToken: the old token got %d, want 401", status)
				}
			case "invalid-session":
				if d, _ := invalidSessionD(t, c); d != "false" {
					t.Errorf("op 9 d = %s, want false", d)
				}
				for _, ss := range live {
					ss.roundTrip() // still alive
				}
				st := s.waitStats(t, "session_start_exhausted", func(st statsJSON) bool { return st.Violations["session_start_exhausted"] >= 1 })
				if st.Violations["session_start_exhausted"] != 1 || st.TokenReset || st.Readies != 3 || st.SessionStartsRemaining != 0 {
					t.Errorf("stats = %+v, want session_start_exhausted 1, no token reset, 3 readies, 0 remaining", st)
				}
				if status, _, _ := s.do(t, "GET", "/api/v10/gateway/bot", "Bot "+s.token(), nil); status != http.StatusOK {
					t.Errorf("GET /gateway/bot = %d, want 200 (token not reset)", status)
				}
			case "allow":
				f, _ := c.waitFor("READY", func(f *frame) bool { return f.T == "READY" || f.Op == discord.OpInvalidSession })
				if f.T != "READY" {
					t.Fatalf("policy allow: got %v, want READY", f)
				}
				st := s.waitStats(t, "session_start_exhausted", func(st statsJSON) bool { return st.Violations["session_start_exhausted"] >= 1 })
				if st.Violations["session_start_exhausted"] != 1 || st.Readies != 4 || st.TokenReset {
					t.Errorf("stats = %+v, want session_start_exhausted 1, 4 readies, no token reset", st)
				}
				if got := s.gatewayBot(t).SessionStartLimit.Remaining; got != 0 {
					t.Errorf("remaining = %d, want 0 (never negative)", got)
				}
			}
		})
	}
}

var sessionIDRe = regexp.MustCompile(`^[0-9a-f]{32}$`)

// readyKeys is the captured key order of READY's d.
var readyKeys = []string{"v", "user_settings", "user", "shard", "session_type", "session_id", "resume_gateway_url",
	"relationships", "private_channels", "presences", "guilds", "guild_join_requests", "geo_ordered_rtc_regions",
	"game_relationships", "auth", "application", "_trace"}

// TestReadyContent: READY has s 1, Discord's key order, a 32-hex
// session_id, the resume URL, the shard echoed only when sent, the bot user,
// the application, and exactly the guilds of its shard as unavailable stubs.
func TestReadyContent(t *testing.T) {
	t.Parallel()
	cfg := baseConfig()
	cfg.Guilds = 50
	cfg.MaxConcurrency = 4
	s := startSim(t, cfg)

	all := s.start(t, startOpts{noStream: true})
	if len(all.guilds) != 50 {
		t.Errorf("READY without shard lists %d guilds, want all 50", len(all.guilds))
	}
	keys, _ := topKeys(all.readyF.D)
	if want := slices.DeleteFunc(slices.Clone(readyKeys), func(k string) bool { return k == "shard" }); !slices.Equal(keys, want) {
		t.Errorf("READY without shard: d keys %v, want %v", keys, want)
	}

	sessionIDs := map[string]bool{all.ready.SessionID: true}
	union := map[discord.Snowflake]int{}
	for i := range 3 {
		ss := s.start(t, startOpts{shard: []int{i, 3}, noStream: true})
		r := ss.ready
		if ss.readyF.S != 1 {
			t.Errorf("READY s = %d, want 1", ss.readyF.S)
		}
		if keys, _ := topKeys(ss.readyF.D); !slices.Equal(keys, readyKeys) {
			t.Errorf("READY d keys %v, want %v", keys, readyKeys)
		}
		if r.V != 10 {
			t.Errorf("READY v = %d, want 10", r.V)
		}
		if !sessionIDRe.MatchString(r.SessionID) || sessionIDs[r.SessionID] {
			t.Errorf("READY session_id = %q, want 32 lowercase hex characters, unique", r.SessionID)
		}
		sessionIDs[r.SessionID] = true
		if want := "ws://" + s.addr + "/resume"; r.ResumeGatewayURL != want {
			t.Errorf("READY resume_gateway_url = %q, want %q", r.ResumeGatewayURL, want)
		}
		if r.Shard == nil || *r.Shard != [2]int{i, 3} {
			t.Errorf("READY shard = %v, want [%d 3]", r.Shard, i)
		}
		if r.User.ID == 0 || r.User.Username == "" || !r.User.Bot || r.User.ID != all.ready.User.ID {
			t.Errorf("READY user = %+v, want the bot user", r.User)
		}
		if r.Application.ID == 0 {
			t.Errorf("READY application = %+v, want an id", r.Application)
		}
		var raw struct {
			Guilds []map[string]any `json:"guilds"`
		}
		json.Unmarshal(ss.readyF.D, &raw)
		for _, g := range raw.Guilds {
			if g["unavailable"] != true || len(g) != 2 {
				t.Errorf("READY guild stub %v, want {id, unavailable:true}", g)
				break
			}
		}
		for id := range ss.guilds {
			if got := discord.ShardForGuild(id, 3); got != i {
				t.Errorf("READY of shard [%d 3] lists guild %v, which routes to shard %d", i, id, got)
			}
			union[id]++
		}
	}
	want := map[discord.Snowflake]int{}
	for id := range all.guilds {
		want[id] = 1
	}
	if diff := cmp.Diff(want, union); diff != "" {
		t.Errorf("guilds of shards 0..2 of 3 vs all guilds, each once (-want +got):\n%s", diff)
	}
}

// TestAPIVersion9: v=9 is accepted and READY says so.
func TestAPIVersion9(t *testing.T) {
	t.Parallel()
	s := startSim(t, baseConfig())
	ss := s.start(t, startOpts{dial: dialOpts{query: "v=9&encoding=json"}, noStream: true})
	if ss.ready.V != 9 {
		t.Errorf("READY v = %d on a v=9 connection, want 9", ss.ready.V)
	}
}

// TestGuildCreateStream: after READY (s 1) exactly one GUILD_CREATE per
// READY guild follows, with s 2, 3, …; each is a realistic guild whose large
// flag follows the session's large_threshold.
func TestGuildCreateStream(t *testing.T) {
	t.Parallel()
	cfg := baseConfig()
	cfg.Guilds = 30
	s := startSim(t, cfg)
	c := s.dial(t, dialOpts{})
	c.hello()
	p := identifyPayload(s.token(), nil, uint64(discord.IntentsNonPrivileged))
	p["d"].(map[string]any)["large_threshold"] = 50
	c.send(p)
	readyF, _ := c.waitDispatch("READY")
	if readyF.S != 1 {
		t.Errorf("READY s = %d, want 1", readyF.S)
	}
	var ready discord.Ready
	json.Unmarshal(readyF.D, &ready)
	want := map[discord.Snowflake]bool{}
	for _, g := range ready.Guilds {
		want[g.ID] = true
	}
	got := map[discord.Snowflake]bool{}
	biggest := 0
	for i := range len(want) {
		f := c.next()
		if f.T != "GUILD_CREATE" || f.S != int64(i+2) {
			t.Fatalf("dispatch %d after READY = %v, want GUILD_CREATE with s %d", i+1, f, i+2)
		}
		var g struct {
			ID          discord.Snowflake `json:"id"`
			Name        string            `json:"name"`
			MemberCount int               `json:"member_count"`
			Large       *bool             `json:"large"`
			Unavailable *bool             `json:"unavailable"`
			Channels    []json.RawMessage `json:"channels"`
			Roles       []json.RawMessage `json:"roles"`
			JoinedAt    string            `json:"joined_at"`
		}
		if err := json.Unmarshal(f.D, &g); err != nil {
			t.Fatal(err)
		}
		if !want[g.ID] || got[g.ID] {
			t.Errorf("GUILD_CREATE for guild %v: in READY %v, seen before %v", g.ID, want[g.ID], got[g.ID])
		}
		got[g.ID] = true
		if g.Name == "" || g.MemberCount < 1 || len(g.Channels) == 0 || len(g.Roles) == 0 || g.JoinedAt == "" ||
			g.Unavailable == nil || *g.Unavailable || g.Large == nil {
			t.Errorf("GUILD_CREATE %v lacks realistic fields (name, member_count, channels, roles, joined_at, unavailable:false, large): %.300s", g.ID, f.D)
		} else if *g.Large != (g.MemberCount > 50) {
			t.Errorf("GUILD_CREATE %v: large %v with member_count %d and large_threshold 50", g.ID, *g.Large, g.MemberCount)
		}
		if len(f.Raw) < 1024 {
			t.Errorf("GUILD_CREATE %v is %d bytes, want a realistic size (about 2-11 KB)", g.ID, len(f.Raw))
		}
		biggest = max(biggest, len(f.Raw))
	}
	if biggest <= 2048 {
		t.Errorf("largest GUILD_CREATE is %d bytes, want some above 2 KB", biggest)
	}
	c.expectNothing(quietPeriod, "another GUILD_CREATE", func(f *frame) bool { return f.T == "GUILD_CREATE" })
}
