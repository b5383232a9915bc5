package coord

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"

	"github.com/gatehouse-dev/gatehouse/internal/coord/coordapi"
	"github.com/gatehouse-dev/gatehouse/internal/discord"
	"github.com/gatehouse-dev/gatehouse/internal/identify"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var testTokens = Tokens{Admin: "admin-secret", Node: "node-secret", Worker: "worker-secret", Status: "status-secret"}

func newTest(t *testing.T, mod func(*Config)) *Coordinator {
	t.Helper()
	cfg := Config{Tokens: testTokens, ShardCount: 8, MaxConcurrency: 2, IdentifyMargin: -1, SessionStarts: -1,
		FirstToken: 1, Logger: slog.New(slog.DiscardHandler)}
	if mod != nil {
		mod(&cfg)
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// do runs one request through the handler and returns the status and body.
func do(c *Coordinator, method, target, token, contentType, body string) (int, http.Header, string) {
	r := httptest.NewRequest(method, target, strings.NewReader(body))
	r.RemoteAddr = "192.0.2.1:5555"
	if token != "" {
		r.Header.Set("Authorization", token)
	}
	if contentType != "" {
		r.Header.Set("Content-Type", contentType)
	}
	w := httptest.NewRecorder()
	c.Handler().ServeHTTP(w, r)
	return w.Code, w.Header(), w.Body.String()
}

func bearer(tok string) string { return "Bearer " + tok }

func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"no shards", Config{Tokens: testTokens}, "ShardCount must be at least 1"},
		{"too many shards", Config{Tokens: testTokens, ShardCount: maxShards + 1}, "is over"},
		{"no admin token", Config{ShardCount: 1}, "an admin token is required"},
		{"shared token", Config{ShardCount: 1, Tokens: Tokens{Admin: "a", Worker: "a"}}, "the admin and worker tokens are the same"},
	} {
		if _, err := New(tc.cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want %q", tc.name, err, tc.want)
		}
	}
}

func TestAuthRoles(t *testing.T) {
	c := newTest(t, nil)
	for _, tc := range []struct {
		method, path, token string
		want                int
	}{
		{"GET", "/v1/status", "", 401},
		{"GET", "/v1/status", bearer("nope"), 401},
		{"GET", "/v1/status", bearer(testTokens.Status), 200},
		{"GET", "/v1/status", bearer(testTokens.Worker), 200},
		{"GET", "/v1/status", bearer(testTokens.Node), 200},
		{"GET", "/v1/status", testTokens.Admin, 200}, // a bare token works too
		{"POST", "/api/health/main/0", bearer(testTokens.Status), 403},
		{"POST", "/api/health/main/0", bearer(testTokens.Node), 204},
		{"POST", "/api/health/main/0", bearer(testTokens.Worker), 204},
		{"POST", "/v1/identify/0/ready", bearer(testTokens.Worker), 204},
		{"GET", "/openapi.json", "", 200},
		{"GET", "/healthz", "", 200},
		{"GET", "/no/such/route", bearer(testTokens.Admin), 404},
	} {
		if got, _, body := do(c, tc.method, tc.path, tc.token, "", ""); got != tc.want {
			t.Errorf("%s %s with %q: %d %s, want %d", tc.method, tc.path, tc.token, got, body, tc.want)
		}
	}
}

func TestAuthFailureLimit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newTest(t, func(c *Config) { c.AuthFailures = 3 })
		for i := range 3 {
			if got, _, _ := do(c, "GET", "/v1/status", bearer("guess"), "", ""); got != 401 {
				t.Fatalf("failure %d: %d, want 401", i, got)
			}
		}
		// Over the limit, failures are refused with 429 until the minute ends…
		got, h, body := do(c, "GET", "/v1/status", bearer("guess"), "", "")
		if got != 429 || h.Get("Retry-After") != "60" || !strings.Contains(body, "too many failed authentications") {
			t.Errorf("4th failure: %d %q %s, want 429 with Retry-After 60", got, h.Get("Retry-After"), body)
		}
		// …but a valid credential from the same address is never refused.
		for _, tok := range []string{testTokens.Admin, testTokens.Node, testTokens.Status} {
			if got, _, body := do(c, "GET", "/v1/status", bearer(tok), "", ""); got != 200 {
				t.Errorf("valid token after the failures: %d %s, want 200", got, body)
			}
		}
		time.Sleep(time.Minute)
		if got, _, _ := do(c, "GET", "/v1/status", bearer("guess"), "", ""); got != 401 {
			t.Errorf("a failure a minute later: %d, want 401", got)
		}
	})
}

func TestAuthLimiter(t *testing.T) {
	t0 := time.Unix(0, 0)
	l := authLimiter{perSource: ipLimiter{Max: 2, Window: time.Minute, MaxIPs: 100}, GlobalMax: 5}
	type step struct {
		at      time.Duration
		src     string
		limited bool
	}
	for i, s := range []step{
		{0, "a", false}, {0, "a", false}, {0, "a", true}, // a over its own limit
		{0, "b", false}, {0, "b", false}, // 5 failures in all: at the cap
		{0, "c", true},            // 6th: the global cap answers for everyone
		{time.Minute, "c", false}, // a new window
		{time.Minute, "a", false},
	} {
		if got, _ := l.fail(t0.Add(s.at), s.src); got != s.limited {
			t.Errorf("step %d (%s at %v): limited %v, want %v", i, s.src, s.at, got, s.limited)
		}
	}
}

func TestSource(t *testing.T) {
	for addr, want := range map[string]string{
		"192.0.2.7:5555":            "192.0.2.7",
		"[::ffff:192.0.2.7]:5555":   "192.0.2.7",
		"[2001:db8:1:2:aaaa::1]:80": "2001:db8:1:2::/64",
		"[2001:db8:1:2:bbbb::9]:80": "2001:db8:1:2::/64",
		"pipe":                      "pipe",
	} {
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = addr
		if got := source(r); got != want {
			t.Errorf("source(%q) = %q, want %q", addr, got, want)
		}
	}
}

func TestIPLimiterBounded(t *testing.T) {
	l := ipLimiter{Max: 1, Window: time.Minute, MaxIPs: 2}
	t0 := time.Unix(0, 0)
	l.hit(t0, "a")
	l.hit(t0, "b")
	// The table is full: a new IP shares the overflow entry.
	if ok, _ := l.hit(t0, "c"); !ok {
		t.Fatal("first overflow hit refused")
	}
	if ok, _ := l.hit(t0, "d"); ok {
		t.Error("second overflow hit allowed: new IPs should share one entry")
	}
	// Once windows end, stale entries make room again.
	if ok, _ := l.hit(t0.Add(time.Minute), "e"); !ok {
		t.Error("a new IP refused after the window ended")
	}
	if len(l.entries) > 3 {
		t.Errorf("table holds %d entries, want at most MaxIPs+1", len(l.entries))
	}
}

func TestBodyLimit(t *testing.T) {
	c := newTest(t, func(c *Config) { c.MaxBodyBytes = 100 })
	got, _, body := do(c, "POST", "/beat", testTokens.Worker, "application/json", `{"session_id":"`+strings.Repeat("x", 200)+`"}`)
	if got != 413 {
		t.Errorf("oversized beat: %d %s, want 413", got, body)
	}
}

// TestIdentifyQueue: grants follow the buckets on a synctest clock, the
// native and twilight endpoints share one queue, and a client that leaves
// gives its place up.
func TestIdentifyQueue(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newTest(t, nil) // 8 shards, max_concurrency 2, 5 s interval
		start := time.Now()
		var mu sync.Mutex
		var got []string
		var wg sync.WaitGroup
		ask := func(shard int, method, target, token string) {
			wg.Go(func() {
				code, _, _ := do(c, method, target, token, "", "")
				if code == 200 && method == "POST" {
					// Native clients report their READY; twilight's do not.
					do(c, "POST", target+"/ready", token, "", "")
				}
				mu.Lock()
				got = append(got, fmtGrant(shard, code, time.Since(start)))
				mu.Unlock()
			})
			synctest.Wait() // queue in this order
		}
		ask(0, "POST", "/v1/identify/0", bearer(testTokens.Node))
		ask(1, "POST", "/v1/identify/1", bearer(testTokens.Node))
		ask(2, "GET", "/queue?shard=2", bearer(testTokens.Worker))
		ask(4, "DELETE", "/queue?shard=4", bearer(testTokens.Worker))
		ask(3, "POST", "/v1/identify/3", bearer(testTokens.Worker))
		wg.Wait()
		slices.Sort(got)
		want := []string{"shard 0: 200 at 0s", "shard 1: 200 at 0s", "shard 2: 200 at 5s", "shard 3: 200 at 5s", "shard 4: 200 at 10s"}
		slices.Sort(want)
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("grants (-want +got):\n%s", diff)
		}
		// A waiter that leaves is skipped.
		ctx, cancel := context.WithCancel(context.Background())
		r := httptest.NewRequestWithContext(ctx, "POST", "/v1/identify/6", nil)
		r.Header.Set("Authorization", bearer(testTokens.Node))
		w := httptest.NewRecorder()
		left := make(chan struct{})
		go func() { c.Handler().ServeHTTP(w, r); close(left) }()
		synctest.Wait()
		cancel()
		<-left
		t1 := time.Now()
		if code, _, _ := do(c, "POST", "/v1/identify/0", bearer(testTokens.Node), "", ""); code != 200 || time.Since(t1) != 5*time.Second {
			// Shard 4 came through twilight, which reports no READY: the
			// bucket's next slot is one interval after its grant.
			t.Errorf("after a waiter left: %d after %v, want 200 after 5s (one interval after shard 4)", code, time.Since(t1))
		}
		code, _, body := do(c, "GET", "/v1/identify", bearer(testTokens.Status), "", "")
		var q coordapi.IdentifyQueue
		if err := json.Unmarshal([]byte(body), &q); code != 200 || err != nil || q.MaxConcurrency != 2 || len(q.Buckets) != 2 || q.IntervalMS != 5000 {
			t.Errorf("queue state: %d %v %s", code, err, body)
		}
	})
}

func fmtGrant(shard, code int, at time.Duration) string {
	return "shard " + itoa(shard) + ": " + itoa(code) + " at " + at.String()
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }

func TestIdentifyBadRequests(t *testing.T) {
	c := newTest(t, nil)
	for _, tc := range []struct{ method, target, want string }{
		{"POST", "/v1/identify/8", "shard 8 is out of range for 8 shards"},
		{"POST", "/v1/identify/-1", "not a non-negative number"},
		{"POST", "/v1/identify/x", "not a non-negative number"},
	} {
		code, _, body := do(c, tc.method, tc.target, bearer(testTokens.Worker), "", "")
		if code != 400 || !strings.Contains(body, tc.want) {
			t.Errorf("%s %s: %d %s, want 400 with %q", tc.method, tc.target, code, body, tc.want)
		}
	}
}

// TestTwilightQueue follows twilight's gateway-queue: any method, at /queue
// and at /, an unreadable shard is shard 0, the answer is the original's
// body; a request without the token gets no answer at all (its client
// would take any answer as permission to identify).
func TestTwilightQueue(t *testing.T) {
	closed := newTest(t, nil)
	srv := httptest.NewServer(closed.Handler())
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/?shard=0")
	if err == nil {
		resp.Body.Close()
		t.Errorf("gateway-queue without a token answered %d; want the connection closed unanswered", resp.StatusCode)
	}
	open := newTest(t, func(c *Config) { c.QueueOpen = true; c.IdentifyInterval = 10 * time.Millisecond })
	for _, target := range []string{"/?shard=1", "/queue?shard=2", "/?shard=x", "/queue", "/?shard=99999999999"} {
		code, _, body := do(open, "PUT", target, "", "", "ignored")
		if code != 200 || body != twilightBody {
			t.Errorf("PUT %s: %d %q, want 200 %q", target, code, body, twilightBody)
		}
	}
}

func TestIdentifyBudgetExhausted(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newTest(t, func(c *Config) { c.SessionStarts, c.SessionReset = 1, time.Now().Add(time.Hour) })
		if code, _, _ := do(c, "POST", "/v1/identify/0", bearer(testTokens.Node), "", ""); code != 200 {
			t.Fatalf("first identify: %d", code)
		}
		code, h, body := do(c, "POST", "/v1/identify/1", bearer(testTokens.Node), "", "")
		var e coordapi.ErrorBody
		json.Unmarshal([]byte(body), &e)
		if code != 429 || h.Get("Retry-After") != "3600" || e.RetryAfterMS != 3600_000 || !strings.Contains(e.Error, "session-start budget exhausted") {
			t.Errorf("over budget: %d Retry-After %q %s", code, h.Get("Retry-After"), body)
		}
		// twilight's clients take any answer as permission: the queue
		// holds the request until Discord reports a fresh budget.
		answered := make(chan int, 1)
		go func() {
			code, _, _ := do(c, "GET", "/queue?shard=1", bearer(testTokens.Worker), "", "")
			answered <- code
		}()
		time.Sleep(2 * time.Hour)
		select {
		case code := <-answered:
			t.Fatalf("twilight queue over budget answered %d before a fresh budget", code)
		default:
		}
		c.gateNow().SetBudget(identify.Budget{Remaining: 1000, Total: 1000, ResetAt: time.Now().Add(24 * time.Hour)}) // what the next /gateway/bot refresh does
		if code := <-answered; code != 200 {
			t.Errorf("twilight queue after the budget came back: %d, want 200", code)
		}
	})
}

// TestRunRefreshesBudget: Run asks Discord for the budget at start and
// again right after the window resets.
func TestRunRefreshesBudget(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		calls := 0
		c := newTest(t, func(c *Config) {
			c.GatewayBot = func(ctx context.Context) (discord.GatewayBot, error) {
				calls++
				gb := discord.GatewayBot{Shards: 8}
				gb.SessionStartLimit = discord.SessionStartLimit{Total: 1000, Remaining: 1000 - calls, ResetAfter: 30_000, MaxConcurrency: 2}
				return gb, nil
			}
		})
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error)
		go func() { done <- c.Run(ctx) }()
		synctest.Wait()
		if calls != 1 || c.Status().Identify.Remaining != 999 {
			t.Errorf("at start: %d calls, remaining %d; want 1, 999", calls, c.Status().Identify.Remaining)
		}
		time.Sleep(31 * time.Second)
		synctest.Wait()
		if calls != 2 || c.Status().Identify.Remaining != 998 {
			t.Errorf("after the reset: %d calls, remaining %d; want 2, 998", calls, c.Status().Identify.Remaining)
		}
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
}

func TestGuildLookup(t *testing.T) {
	c := newTest(t, nil)
	code, _, body := do(c, "GET", "/v1/guilds/81384788765712384", bearer(testTokens.Status), "", "")
	// 81384788765712384 >> 22 = 19403645698; % 8 = 2.
	if code != 200 || !strings.Contains(body, `"shard":2`) || !strings.Contains(body, `"guild_id":"81384788765712384"`) {
		t.Errorf("lookup: %d %s", code, body)
	}
	if code, _, _ := do(c, "GET", "/v1/guilds/abc", bearer(testTokens.Status), "", ""); code != 400 {
		t.Errorf("bad guild: %d, want 400", code)
	}
}

// TestOpenAPIMatchesRoutes: every route is in the document with its method,
// and the document names no route that does not exist.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	c := newTest(t, nil)
	var doc struct {
		OpenAPI string                                `json:"openapi"`
		Paths   map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(openAPIDoc, &doc); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.") {
		t.Errorf("openapi = %q", doc.OpenAPI)
	}
	seen := map[string]bool{}
	for _, rt := range c.routes() {
		ops, ok := doc.Paths[rt.pattern]
		if !ok {
			t.Errorf("route %s %s is not in openapi.json", rt.method, rt.pattern)
			continue
		}
		seen[rt.pattern] = true
		m := strings.ToLower(rt.method)
		if m == "" {
			m = "get" // any method: documented at least as get
		}
		if _, ok := ops[m]; !ok {
			t.Errorf("openapi.json has %s but not its %s operation", rt.pattern, m)
		}
	}
	for p := range doc.Paths {
		if !seen[p] {
			t.Errorf("openapi.json documents %s, which is not a route", p)
		}
	}
	// Path parameters are declared for every {name}.
	param := regexp.MustCompile(`\{(\w+)\}`)
	for p, ops := range doc.Paths {
		for m, raw := range ops {
			for _, name := range param.FindAllStringSubmatch(p, -1) {
				if !strings.Contains(string(raw), `"name": "`+name[1]+`"`) {
					t.Errorf("%s %s does not declare path parameter %s", m, p, name[1])
				}
			}
		}
	}
	// The error codes are the ones the API answers.
	var errs struct {
		Components struct {
			Schemas struct {
				Error struct {
					Properties struct {
						Code struct {
							Enum []string `json:"enum"`
						} `json:"code"`
					} `json:"properties"`
				} `json:"Error"`
			} `json:"schemas"`
		} `json:"components"`
	}
	if err := json.Unmarshal(openAPIDoc, &errs); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(coordapi.Codes, errs.Components.Schemas.Error.Properties.Code.Enum); diff != "" {
		t.Errorf("openapi.json's error codes differ from coordapi.Codes (-want +got):\n%s", diff)
	}
	code, h, body := do(c, "GET", "/openapi.json", "", "", "")
	if code != 200 || h.Get("Content-Type") != "application/json" || len(body) != len(openAPIDoc) {
		t.Errorf("GET /openapi.json: %d %q %d bytes", code, h.Get("Content-Type"), len(body))
	}
}

// TestErrorsNeverLeakInternals: an internal error answers a generic body.
func TestErrorsNeverLeakInternals(t *testing.T) {
	w := httptest.NewRecorder()
	writeError(w, io.ErrUnexpectedEOF)
	if w.Code != 500 || strings.Contains(w.Body.String(), "EOF") {
		t.Errorf("internal error answered %d %s", w.Code, w.Body.String())
	}
}
