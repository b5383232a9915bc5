// The conformance suite drives the simulator from outside, over real TCP on
// 127.0.0.1, with a raw WebSocket client (rawclient_test.go), and checks each
// rule of the simulator contract against Discord's documented behaviour.
// Files: conformance_test.go (REST, admin, stats, seed),
// conformance_gateway_test.go (HELLO, heartbeats, IDENTIFY validation and
// limits, READY), conformance_events_test.go (routing, intents, resume),
// conformance_compress_test.go (transport compression) and
// conformance_faults_test.go (fault injection).
package sim_test

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"

	"github.com/gatehouse-dev/gatehouse/internal/discord"
	"github.com/gatehouse-dev/gatehouse/internal/discord/sim"
)

// TestMain checks for leaked goroutines. The suite's tests spend their time
// waiting on sockets and timers, so unless -test.parallel is given it runs 8
// of them at once instead of GOMAXPROCS.
func TestMain(m *testing.M) {
	flag.Parse()
	explicit := false
	flag.Visit(func(f *flag.Flag) { explicit = explicit || f.Name == "test.parallel" })
	if !explicit {
		flag.Set("test.parallel", "8")
	}
	goleak.VerifyTestMain(m)
}

const (
	body401 = `{"message": "401: Unauthorized", "code": 0}`
	body400 = `{"message": "400: Bad Request", "code": 0}`
)

// TestRESTGateway: GET /gateway needs no token and answers Discord's exact
// body, without a trailing slash; v9 is answered the same way, other
// versions get 400.
func TestRESTGateway(t *testing.T) {
	t.Parallel()
	s := startSim(t, baseConfig())
	want := `{"url": "ws://` + s.addr + `"}`
	for _, path := range []string{"/api/v10/gateway", "/api/v9/gateway"} {
		status, hdr, body := s.do(t, "GET", path, "", nil)
		if status != http.StatusOK || string(body) != want {
			t.Errorf("GET %s = %d %q, want 200 %q", path, status, body, want)
		}
		if ct := hdr.Get("Content-Type"); !regexp.MustCompile(`^application/json`).MatchString(ct) {
			t.Errorf("GET %s Content-Type = %q, want application/json", path, ct)
		}
	}
	for _, path := range []string{"/api/v8/gateway", "/api/v11/gateway", "/api/v3/gateway/bot"} {
		status, _, body := s.do(t, "GET", path, "Bot "+s.token(), nil)
		if status != http.StatusBadRequest || string(body) != body400 {
			t.Errorf("GET %s = %d %q, want 400 %q", path, status, body, body400)
		}
	}
}

// gatewayBotRe is /gateway/bot's body with Discord's separators and key order.
var gatewayBotRe = regexp.MustCompile(`^\{"url": "([^"]*)", "shards": (\d+), "session_start_limit": \{"total": (\d+), "remaining": (\d+), "reset_after": (\d+), "max_concurrency": (\d+)\}\}$`)

// TestRESTGatewayBot: /gateway/bot's exact shape, the recommended shard count
// ceil(guilds/1000) (or Shards when set), max_concurrency and the session
// start limit before any IDENTIFY.
func TestRESTGatewayBot(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		guilds, shards, maxConc, total, multiple int
		wantShards                               int
	}{
		{guilds: 6000, multiple: 4, wantShards: 8}, // large bots get a valid multiple
		{guilds: 1, wantShards: 1},
		{guilds: 999, wantShards: 1},
		{guilds: 1000, wantShards: 1},
		{guilds: 1001, wantShards: 2},
		{guilds: 2500, wantShards: 3},
		{guilds: 6000, wantShards: 6},
		{guilds: 20, shards: 7, wantShards: 7},
		{guilds: 20, maxConc: 16, total: 2000, wantShards: 1},
	} {
		t.Run(fmt.Sprintf("guilds=%d,shards=%d,mc=%d,multiple=%d", tc.guilds, tc.shards, tc.maxConc, tc.multiple), func(t *testing.T) {
			t.Parallel()
			cfg := baseConfig()
			cfg.Guilds, cfg.Shards, cfg.MaxConcurrency, cfg.SessionStartTotal = tc.guilds, tc.shards, tc.maxConc, tc.total
			cfg.ShardMultiple = tc.multiple
			s := startSim(t, cfg)
			status, _, body := s.do(t, "GET", "/api/v10/gateway/bot", "Bot "+s.token(), nil)
			if status != http.StatusOK {
				t.Fatalf("GET /api/v10/gateway/bot = %d %s, want 200", status, body)
			}
			m := gatewayBotRe.FindStringSubmatch(string(body))
			if m == nil {
				t.Fatalf("GET /api/v10/gateway/bot = %s, want Discord's exact shape {\"url\": …, \"shards\": …, \"session_start_limit\": {\"total\": …, \"remaining\": …, \"reset_after\": …, \"max_concurrency\": …}}", body)
			}
			wantMC, wantTotal := max(tc.maxConc, 1), tc.total
			if wantTotal == 0 {
				wantTotal = 1000
			}
			got := []string{m[1], m[2], m[3], m[4], m[6]}
			want := []string{"ws://" + s.addr, strconv.Itoa(tc.wantShards), strconv.Itoa(wantTotal), strconv.Itoa(wantTotal), strconv.Itoa(wantMC)}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("/gateway/bot [url shards total remaining max_concurrency] mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

// TestRESTAuth: every authenticated endpoint answers 401 with Discord's exact
// body without a token, with a wrong token and without the "Bot " prefix.
func TestRESTAuth(t *testing.T) {
	t.Parallel()
	s := startSim(t, baseConfig())
	for _, path := range []string{"/api/v10/gateway/bot", "/api/v10/users/@me", "/api/v10/applications/@me"} {
		for _, auth := range []string{"", "Bot wrong-token", s.token(), "Bearer " + s.token(), "Bot "} {
			status, _, body := s.do(t, "GET", path, auth, nil)
			if status != http.StatusUnauthorized || string(body) != body401 {
				t.Errorf("GET %s with Authorization %q = %d %q, want 401 %q", path, auth, status, body, body401)
			}
		}
		if status, _, body := s.do(t, "GET", path, "Bot "+s.token(), nil); status != http.StatusOK {
			t.Errorf("GET %s with the right token = %d %s, want 200", path, status, body)
		}
	}
}

// TestRESTUsersAndApplicationMe: /users/@me is the bot user and
// /applications/@me the application, the same ones READY names.
func TestRESTUsersAndApplicationMe(t *testing.T) {
	t.Parallel()
	s := startSim(t, baseConfig())
	_, _, body := s.do(t, "GET", "/api/v10/users/@me", "Bot "+s.token(), nil)
	var user struct {
		ID       discord.Snowflake `json:"id"`
		Username string            `json:"username"`
		Bot      bool              `json:"bot"`
	}
	if err := json.Unmarshal(body, &user); err != nil || user.ID == 0 || user.Username == "" || !user.Bot {
		t.Fatalf("GET /users/@me = %s (err %v), want a bot user with id and username", body, err)
	}
	_, _, body = s.do(t, "GET", "/api/v10/applications/@me", "Bot "+s.token(), nil)
	var app struct {
		ID discord.Snowflake `json:"id"`
	}
	if err := json.Unmarshal(body, &app); err != nil || app.ID == 0 {
		t.Fatalf("GET /applications/@me = %s (err %v), want an application with id", body, err)
	}
	ss := s.start(t, startOpts{noStream: true})
	if ss.ready.User.ID != user.ID || ss.ready.Application.ID != app.ID {
		t.Errorf("READY user %v application %v, want /users/@me %v and /applications/@me %v",
			ss.ready.User.ID, ss.ready.Application.ID, user.ID, app.ID)
	}
}

// TestRESTSessionStartLimitLive: remaining drops by one for an accepted
// IDENTIFY, not for a RESUME nor for a rate-limited IDENTIFY; reset_after
// counts down a window no longer than SessionStartReset.
func TestRESTSessionStartLimitLive(t *testing.T) {
	t.Parallel()
	cfg := baseConfig()
	cfg.SessionStartTotal = 5
	cfg.SessionStartReset = time.Hour
	cfg.IdentifyInterval = 10 * time.Second // the second IDENTIFY below is too fast
	cfg.IdentifyRejectDelay = 20 * time.Millisecond
	s := startSim(t, cfg)
	if got := s.gatewayBot(t).SessionStartLimit; got.Total != 5 || got.Remaining != 5 {
		t.Fatalf("before IDENTIFY: session_start_limit %+v, want total 5 remaining 5", got)
	}

	ss := s.start(t, startOpts{noStream: true})
	sl := s.gatewayBot(t).SessionStartLimit
	if sl.Remaining != 4 {
		t.Errorf("after one accepted IDENTIFY: remaining = %d, want 4", sl.Remaining)
	}
	if sl.ResetAfter <= 0 || sl.ResetAfter > time.Hour.Milliseconds() {
		t.Errorf("after one IDENTIFY: reset_after = %d ms, want in (0, %d]", sl.ResetAfter, time.Hour.Milliseconds())
	}

	// RESUME: free.
	seq := ss.lastSeq.Load()
	ss.ws.CloseNow()
	rc := ss.resume(t, ss.resumeURL(), seq)
	rc.waitDispatch("RESUMED")
	if got := s.gatewayBot(t).SessionStartLimit.Remaining; got != 4 {
		t.Errorf("after a RESUME: remaining = %d, want 4 (RESUMEs are free)", got)
	}

	// A too-fast IDENTIFY in the same bucket: op 9, free too.
	c := s.dial(t, dialOpts{})
	c.hello()
	c.send(identifyPayload(s.token(), nil, uint64(discord.IntentsNonPrivileged)))
	f, _ := c.waitFor("INVALID_SESSION", func(f *frame) bool { return f.Op == discord.OpInvalidSession || f.T == "READY" })
	if f.Op != discord.OpInvalidSession {
		t.Fatalf("too-fast IDENTIFY got %v, want op 9", f)
	}
	if got := s.gatewayBot(t).SessionStartLimit.Remaining; got != 4 {
		t.Errorf("after a rate-limited IDENTIFY: remaining = %d, want 4", got)
	}
	if st := s.srv.Stats(); st.SessionStartsRemaining != 4 || st.SessionStartsTotal != 5 {
		t.Errorf("Stats() session starts remaining/total = %d/%d, want 4/5", st.SessionStartsRemaining, st.SessionStartsTotal)
	}
}

// TestRESTGlobalRateLimit: more than 50 requests per second with one token
// get 429 with Discord's body and headers; after Retry-After requests pass
// again.
func TestRESTGlobalRateLimit(t *testing.T) {
	t.Parallel()
	s := startSim(t, baseConfig())
	type result struct {
		status int
		hdr    http.Header
		body   []byte
	}
	// 300 requests: even a slow machine sends more than 50 in some second.
	const workers, perWorker = 20, 15
	results := make(chan result, workers*perWorker)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for range perWorker {
				req, _ := http.NewRequestWithContext(t.Context(), "GET", "http://"+s.addr+"/api/v10/gateway/bot", nil)
				req.Header.Set("Authorization", "Bot "+s.token())
				resp, err := s.hc.Do(req)
				if err != nil {
					results <- result{status: -1, body: []byte(err.Error())}
					continue
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				results <- result{resp.StatusCode, resp.Header, b}
			}
		})
	}
	wg.Wait()
	close(results)
	var ok, limited int
	var first429 *result
	longest := 0.0
	for r := range results {
		switch r.status {
		case http.StatusOK:
			ok++
		case http.StatusTooManyRequests:
			limited++
			if first429 == nil {
				first429 = &r
			}
			var b struct {
				RetryAfter float64 `json:"retry_after"`
			}
			json.Unmarshal(r.body, &b)
			longest = max(longest, b.RetryAfter)
		default:
			t.Errorf("burst request = %d %s, want 200 or 429", r.status, r.body)
		}
	}
	if limited == 0 {
		t.Fatalf("%d requests in a burst: %d ok, none limited; want 429s above 50 per second", workers*perWorker, ok)
	}
	if ok < 50 {
		t.Errorf("burst: %d requests passed, want at least 50 (the limit is 50 per second)", ok)
	}
	var body struct {
		Message    string   `json:"message"`
		RetryAfter *float64 `json:"retry_after"`
		Global     *bool    `json:"global"`
	}
	if err := json.Unmarshal(first429.body, &body); err != nil {
		t.Fatalf("429 body %s: %v", first429.body, err)
	}
	if body.Message != "You are being rate limited." || body.RetryAfter == nil || *body.RetryAfter <= 0 || *body.RetryAfter > 1 ||
		body.Global == nil || !*body.Global {
		t.Errorf("429 body = %s, want message \"You are being rate limited.\", 0 < retry_after <= 1, global true", first429.body)
	}
	ra, err := strconv.ParseFloat(first429.hdr.Get("Retry-After"), 64)
	if err != nil || ra <= 0 {
		t.Errorf("429 Retry-After = %q, want a positive number of seconds", first429.hdr.Get("Retry-After"))
	}
	for _, h := range []string{"X-RateLimit-Global", "X-RateLimit-Scope", "X-RateLimit-Limit"} {
		if first429.hdr.Get(h) == "" {
			t.Errorf("429 has no %s header", h)
		}
	}
	if g := first429.hdr.Get("X-RateLimit-Global"); g != "true" {
		t.Errorf("429 X-RateLimit-Global = %q, want true", g)
	}
	if sc := first429.hdr.Get("X-RateLimit-Scope"); sc != "global" {
		t.Errorf("429 X-RateLimit-Scope = %q, want global", sc)
	}
	time.Sleep(time.Duration(longest*float64(time.Second)) + 200*time.Millisecond)
	if status, _, b := s.do(t, "GET", "/api/v10/gateway/bot", "Bot "+s.token(), nil); status != http.StatusOK {
		t.Errorf("after Retry-After: GET /gateway/bot = %d %s, want 200", status, b)
	}
}

// TestStatsJSON: /sim/stats has the documented integer fields and a
// per-shard list, and Stats() agrees with it.
func TestStatsJSON(t *testing.T) {
	t.Parallel()
	cfg := baseConfig()
	cfg.Guilds = 30
	cfg.MaxConcurrency = 2
	s := startSim(t, cfg)
	a := s.start(t, startOpts{shard: []int{0, 2}})
	b := s.start(t, startOpts{shard: []int{1, 2}})
	a.roundTrip()
	b.roundTrip()

	_, _, raw := s.do(t, "GET", "/sim/stats", "", nil)
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil {
		t.Fatalf("GET /sim/stats = %s: %v", raw, err)
	}
	integer := regexp.MustCompile(`^-?[0-9]+$`)
	for _, k := range []string{"connections", "connections_total", "identifies", "identify_violations", "readies", "resumes",
		"resume_failures", "events", "heartbeats", "closes", "session_starts_remaining", "session_starts_total", "sessions"} {
		if v, ok := fields[k]; !ok || !integer.Match(v) {
			t.Errorf("/sim/stats field %q = %s, want an integer", k, v)
		}
	}
	if v := fields["violations"]; len(v) == 0 || v[0] != '{' {
		t.Errorf("/sim/stats violations = %s, want an object", v)
	}
	if v := fields["token_reset"]; string(v) != "false" {
		t.Errorf("/sim/stats token_reset = %s, want false", v)
	}

	st := s.waitStats(t, "2 connections and 2 readies", func(st statsJSON) bool { return st.Connections == 2 && st.Readies == 2 })
	if st.Identifies != 2 || st.IdentifyViolations != 0 || st.Heartbeats != 2 || st.Sessions != 2 || st.ConnectionsTotal != 2 {
		t.Errorf("stats = %+v, want identifies 2, identify_violations 0, heartbeats 2, sessions 2, connections_total 2", st)
	}
	var want []shardStatsJSON
	for _, ss := range []*session{a, b} {
		want = append(want, shardStatsJSON{Shard: ss.shard, NumShards: 2, Guilds: len(ss.guilds), Connections: 1, Identifies: 1})
	}
	got := append([]shardStatsJSON(nil), st.Shards...)
	for i := range got {
		got[i].Events = 0
	}
	sortShards(got)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("stats shards mismatch (-want +got):\n%s", diff)
	}
	if len(a.guilds)+len(b.guilds) != 30 {
		t.Errorf("READY guilds of shards 0 and 1 of 2: %d + %d, want 30", len(a.guilds), len(b.guilds))
	}

	b.ws.Close(websocket.StatusNormalClosure, "")
	after := s.waitStats(t, "1 connection after a close", func(st statsJSON) bool { return st.Connections == 1 })
	if after.Sessions != 1 || after.ConnectionsTotal != 2 {
		t.Errorf("after a 1000 close: sessions %d connections_total %d, want 1 and 2", after.Sessions, after.ConnectionsTotal)
	}

	direct := s.srv.Stats()
	if direct.Readies != after.Readies || direct.Identifies != after.Identifies || direct.Connections != after.Connections {
		t.Errorf("Stats() = %+v, disagrees with /sim/stats %+v", direct, after)
	}
}

func sortShards(s []shardStatsJSON) {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && (s[j].NumShards < s[j-1].NumShards || s[j].NumShards == s[j-1].NumShards && s[j].Shard < s[j-1].Shard); j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}

// TestStatsEventsCount: events counts generated dispatches delivered.
func TestStatsEventsCount(t *testing.T) {
	t.Parallel()
	cfg := baseConfig()
	cfg.EventRate = 100
	s := startSim(t, cfg)
	ss := s.start(t, startOpts{})
	ss.collectEvents(20)
	st := s.stats(t)
	if st.Events < 20 {
		t.Errorf("stats events = %d after the client received 20 events, want >= 20", st.Events)
	}
	if len(st.Shards) != 1 || st.Shards[0].Events < 20 {
		t.Errorf("stats shards = %+v, want one entry with events >= 20", st.Shards)
	}
}

// TestSeedReproducible: the same Seed gives the same guilds for a shard; a
// different Seed gives different ones.
func TestSeedReproducible(t *testing.T) {
	t.Parallel()
	guildsOf := func(seed int64) ([]discord.Snowflake, map[discord.Snowflake]string) {
		cfg := baseConfig()
		cfg.Seed = seed
		cfg.Guilds = 30
		s := startSim(t, cfg)
		ss := s.start(t, startOpts{shard: []int{1, 2}})
		var ids []discord.Snowflake
		for _, g := range ss.ready.Guilds {
			ids = append(ids, g.ID)
		}
		names := map[discord.Snowflake]string{}
		for _, f := range ss.creates {
			var g struct {
				ID   discord.Snowflake `json:"id"`
				Name string            `json:"name"`
			}
			if err := json.Unmarshal(f.D, &g); err != nil {
				t.Fatal(err)
			}
			names[g.ID] = g.Name
		}
		return ids, names
	}
	ids1, names1 := guildsOf(42)
	ids2, names2 := guildsOf(42)
	if diff := cmp.Diff(ids1, ids2); diff != "" {
		t.Errorf("READY guilds of shard [1,2] with Seed 42 differ between two servers (-first +second):\n%s", diff)
	}
	if diff := cmp.Diff(names1, names2); diff != "" {
		t.Errorf("guild names with Seed 42 differ between two servers (-first +second):\n%s", diff)
	}
	ids3, _ := guildsOf(43)
	if cmp.Equal(ids1, ids3) {
		t.Errorf("Seed 42 and Seed 43 give the same guild IDs %v, want the seed to matter", ids1)
	}
}

// TestShutdownClosesConnections: Shutdown ends open gateway connections and
// returns; Serve returns nil.
func TestShutdownClosesConnections(t *testing.T) {
	t.Parallel()
	s := startSim(t, baseConfig())
	ss := s.start(t, startOpts{})
	s.shutdown(t)
	code, _ := ss.expectClose()
	if code == 1000 || code == 1001 {
		t.Errorf("Shutdown closed the connection with %d, want no session-ending code", code)
	}
}

// TestNewValidates: New rejects negative settings.
func TestNewValidates(t *testing.T) {
	t.Parallel()
	for name, cfg := range map[string]sim.Config{
		"negative guilds":            {Guilds: -1},
		"negative max concurrency":   {MaxConcurrency: -1},
		"negative identify interval": {IdentifyInterval: -time.Second},
		"negative send limit":        {SendLimit: -1},
		"negative event rate":        {EventRate: -1},
		"unknown exhausted policy":   {Exhausted: "explode"},
	} {
		if srv, err := sim.New(cfg); err == nil {
			t.Errorf("New(%s) = %v, nil; want an error", name, srv)
			srv.Shutdown(t.Context())
		}
	}
}
