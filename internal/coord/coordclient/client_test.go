package coordclient

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/gatehouse-dev/gatehouse/internal/coord"
	"github.com/gatehouse-dev/gatehouse/internal/identify"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var quiet = slog.New(slog.DiscardHandler)

func startCoord(t *testing.T, mod func(*coord.Config), wrap func(http.Handler) http.Handler) *httptest.Server {
	t.Helper()
	cfg := coord.Config{Tokens: coord.Tokens{Admin: "a", Node: "n"}, ShardCount: 8, MaxConcurrency: 2,
		IdentifyInterval: 100 * time.Millisecond, IdentifyMargin: -1, SessionStarts: -1, Logger: quiet}
	if mod != nil {
		mod(&cfg)
	}
	c, err := coord.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	h := c.Handler()
	if wrap != nil {
		h = wrap(h)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

func newClient(t *testing.T, url, token string) *Client {
	t.Helper()
	c, err := New(Config{URL: url, Token: token, RetryMin: 10 * time.Millisecond, RetryMax: 50 * time.Millisecond, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestTwoNodesShareOneQueue: two clients, as two nodes, identify shards
// of one bucket at once; the coordinator spaces every grant of the bucket
// by the interval.
func TestTwoNodesShareOneQueue(t *testing.T) {
	srv := startCoord(t, nil, nil)
	a, b := newClient(t, srv.URL, "n"), newClient(t, srv.URL, "n")
	var mu sync.Mutex
	var grants []time.Time
	var wg sync.WaitGroup
	for i, shard := range []int{0, 2, 4, 6} { // bucket 0 of max_concurrency 2
		cl := a
		if i%2 == 1 {
			cl = b
		}
		wg.Go(func() {
			if err := cl.Wait(t.Context(), shard); err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			grants = append(grants, time.Now())
			mu.Unlock()
		})
	}
	wg.Wait()
	if len(grants) != 4 {
		t.Fatalf("%d grants", len(grants))
	}
	slices.SortFunc(grants, time.Time.Compare)
	for i := 1; i < len(grants); i++ {
		if d := grants[i].Sub(grants[i-1]); d < 95*time.Millisecond { // the client may see a grant a little late, never early
			t.Errorf("grants %d and %d of one bucket %v apart, want at least the 100ms interval", i-1, i, d)
		}
	}
}

func TestRefusals(t *testing.T) {
	srv := startCoord(t, func(c *coord.Config) { c.SessionStarts, c.SessionReset = 1, time.Now().Add(time.Hour) }, nil)
	if err := newClient(t, srv.URL, "wrong").Wait(t.Context(), 0); !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "401") {
		t.Errorf("bad token: %v, want ErrRefused with 401", err)
	}
	c := newClient(t, srv.URL, "n")
	if err := c.Wait(t.Context(), 8); !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "out of range") {
		t.Errorf("shard out of range: %v", err)
	}
	if err := c.Wait(t.Context(), 0); err != nil {
		t.Fatal(err)
	}
	if err := c.Wait(t.Context(), 1); !errors.Is(err, identify.ErrBudgetExhausted) {
		t.Errorf("over budget: %v, want ErrBudgetExhausted", err)
	}
}

// TestRetriesUntilReachable: while the coordinator answers 503 (or cannot
// be reached), Wait keeps trying; it never gives a grant it did not get.
func TestRetriesUntilReachable(t *testing.T) {
	var calls, ready atomic.Int32
	srv := startCoord(t, nil, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if strings.HasSuffix(r.URL.Path, "/ready") {
				ready.Add(1)
			} else if calls.Add(1) <= 3 {
				http.Error(w, `{"error":"starting"}`, http.StatusServiceUnavailable)
				return
			}
			h.ServeHTTP(w, r)
		})
	})
	c := newClient(t, srv.URL, "n")
	if err := c.Wait(t.Context(), 3); err != nil {
		t.Fatal(err)
	}
	if n := calls.Load(); n != 4 {
		t.Errorf("%d identify requests, want 4 (three refused with 503)", n)
	}
	c.Identified(3, time.Now())
	deadline := time.Now().Add(5 * time.Second)
	for ready.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if ready.Load() != 1 {
		t.Error("the READY report did not reach the coordinator")
	}
	// Unreachable: Wait retries until its context ends.
	down := newClient(t, "http://127.0.0.1:1", "n")
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	if err := down.Wait(ctx, 0); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("unreachable coordinator: %v, want the context's deadline", err)
	}
}

func TestConfigErrors(t *testing.T) {
	for _, cfg := range []Config{{URL: "", Token: "t"}, {URL: "ftp://x", Token: "t"}, {URL: "http://x:1"}} {
		if _, err := New(cfg); err == nil {
			t.Errorf("New(%+v) = nil error", cfg)
		}
	}
}
