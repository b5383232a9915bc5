package dashboard

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"

	"github.com/gatehouse-dev/gatehouse/internal/broker"
	"github.com/gatehouse-dev/gatehouse/internal/coord"
	"github.com/gatehouse-dev/gatehouse/internal/coord/coordapi"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestClass(t *testing.T) {
	for state, want := range map[string]string{
		"ready": ClassOK, "online": ClassOK, "waiting": ClassWarn, "identifying": ClassWarn, "resuming": ClassWarn,
		"starting": ClassWarn, "stopping": ClassWarn, "offline": ClassBad, "stopped": ClassBad, "unhealthy": ClassBad,
		"zombie": ClassBad, "unknown": ClassUnknown, "unassigned": ClassUnknown, "": ClassUnknown,
	} {
		if got := Class(state); got != want {
			t.Errorf("Class(%q) = %q, want %q", state, got, want)
		}
	}
}

func TestBuildDiffPublic(t *testing.T) {
	g := 1200
	lat := 40.0
	in := Input{
		Shards: coordapi.ShardList{ShardCount: 2, Shards: []coordapi.ShardInfo{
			{Shard: 0, Holder: "node", Node: "n1", State: "ready", Guilds: &g, LatencyMS: &lat, EventsPerSec: 10},
			{Shard: 1, State: "unassigned"},
		}},
		Status:    coordapi.Status{Nodes: []coordapi.NodeInfo{{ID: "n1"}}, Glance: []coordapi.GlanceShard{{Cluster: "c2", ID: 0, StateName: "unhealthy"}}},
		Consumers: []broker.ConsumerLag{{Name: "bot", Pending: 7}},
		Now:       time.Unix(100, 0),
	}
	v := Build(in)
	want := []Cell{
		{Key: "gateway/0", Cluster: "gateway", Shard: 0, State: "ready", Class: ClassOK, Node: "n1"},
		{Key: "gateway/1", Cluster: "gateway", Shard: 1, State: "unassigned", Class: ClassUnknown},
		{Key: "c2/0", Cluster: "c2", Shard: 0, State: "unhealthy", Class: ClassBad},
	}
	if diff := cmp.Diff(want, v.Cells); diff != "" {
		t.Errorf("cells (-want +got):\n%s", diff)
	}
	f := v.Fleet
	if f.Guilds != 1200 || f.EventsPerSec != 10 || f.LatencyMS != 40 || f.MaxLag != 7 || f.NodeCount != 1 ||
		f.Classes[ClassOK] != 1 || f.Classes[ClassBad] != 1 || f.Classes[ClassUnknown] != 1 {
		t.Errorf("fleet %+v", f)
	}
	p := v.Public()
	if p.Cells[0].Node != "" || p.Fleet.Nodes != nil || p.Fleet.Consumers != nil || p.Fleet.MaxLag != 7 || p.Fleet.NodeCount != 1 {
		t.Errorf("public view keeps internals: %+v %+v", p.Cells[0], p.Fleet)
	}
	if v.Cells[0].Node != "n1" {
		t.Error("Public changed the admin view's cells")
	}

	next := append([]Cell(nil), v.Cells[:2]...)
	next[1].State, next[1].Class = "ready", ClassOK
	next = append(next, Cell{Key: "gateway/2", Shard: 2, State: "waiting", Class: ClassWarn})
	changed, gone := Diff(v.Cells, next)
	if len(changed) != 2 || changed[0].Key != "gateway/1" || changed[1].Key != "gateway/2" || len(gone) != 1 || gone[0] != "c2/0" {
		t.Errorf("Diff: changed %v gone %v", changed, gone)
	}
	if c, g := Diff(next, next); c != nil || g != nil {
		t.Errorf("Diff of equal views: %v %v", c, g)
	}
}

func TestHistory(t *testing.T) {
	var h History
	t0 := int64(1_700_000_000)
	t0 -= t0 % 300
	for i := int64(0); i <= 25*360; i++ { // 25 h of 10 s samples
		h.Add(Point{T: t0 + 10*i, EventsPerSec: float64(i % 30), LatencyMS: 40, Guilds: 1000})
	}
	h.Add(Point{T: t0, EventsPerSec: 1e9}) // out of order: ignored
	pts := h.Points()
	last := t0 + 10*25*360
	fine := 0
	for i, p := range pts {
		if i > 0 && p.T <= pts[i-1].T {
			t.Fatalf("points not in order at %d: %d after %d", i, p.T, pts[i-1].T)
		}
		if p.T > last-3600 {
			fine++
		}
		if p.T < last-24*3600-300 {
			t.Fatalf("point at %d is older than 24 h", p.T)
		}
		if p.LatencyMS != 40 || p.Guilds != 1000 || p.EventsPerSec > 29 {
			t.Fatalf("point %+v: averages wrong", p)
		}
	}
	if fine < 359 || fine > 361 {
		t.Errorf("%d fine points in the last hour, want 360", fine)
	}
	if coarse := len(pts) - fine; coarse < 270 || coarse > 290 {
		t.Errorf("%d coarse points, want about 23 h of 5 min steps", coarse)
	}
	data, err := json.Marshal(&h)
	if err != nil {
		t.Fatal(err)
	}
	var back History
	if err := json.Unmarshal(data, &back); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(pts, back.Points()); diff != "" {
		t.Errorf("history after a JSON round trip (-want +got):\n%s", diff)
	}
	if err := json.Unmarshal([]byte(`{"version":2}`), &back); err == nil {
		t.Error("a future version was accepted")
	}
}

// sseReader reads server-sent events.
type sseReader struct{ sc *bufio.Scanner }

func (r sseReader) next(t *testing.T) (string, string) {
	t.Helper()
	var event, data string
	for r.sc.Scan() {
		line := r.sc.Text()
		switch {
		case line == "" && data != "":
			return event, data
		case strings.HasPrefix(line, "event: "):
			event = line[7:]
		case strings.HasPrefix(line, "data: "):
			data += line[6:]
		}
	}
	t.Fatalf("stream ended: %v", r.sc.Err())
	return "", ""
}

// TestStreams: a page gets a snapshot, then the cells that changed when a
// node reports; the public stream never names the node; the admin stream
// and history need a token.
func TestStreams(t *testing.T) {
	co, err := coord.New(coord.Config{Tokens: coord.Tokens{Admin: "adm", Node: "nod", Status: "sta"}, ShardCount: 2, MaxConcurrency: 1,
		IdentifyMargin: -1, SessionStarts: -1, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	d, err := New(Config{Coordinator: co, Tick: 20 * time.Millisecond, Sample: 30 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { d.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	srv := httptest.NewServer(d.Handler(co.Handler()))
	defer srv.Close()

	get := func(path, token string) *http.Response {
		t.Helper()
		req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+path, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	for path, want := range map[string]int{"/": 200, "/admin": 200, "/assets/app.js": 200, "/assets/app.css": 200, "/assets/": 404,
		"/v1/stream": 401, "/v1/history": 401, "/public/history": 200, "/healthz": 200, "/public/shards/1": 200, "/public/shards/9": 400} {
		resp := get(path, "")
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("GET %s: %d, want %d", path, resp.StatusCode, want)
		}
	}
	page := get("/", "")
	html, _ := io.ReadAll(page.Body)
	page.Body.Close()
	if !strings.Contains(string(html), "/assets/app.js") || !strings.Contains(page.Header.Get("Content-Security-Policy"), "default-src 'self'") {
		t.Errorf("page: %s %v", html, page.Header)
	}

	pub := get("/public/stream", "")
	defer pub.Body.Close()
	adm := get("/v1/stream", "sta")
	defer adm.Body.Close()
	pr, ar := sseReader{bufio.NewScanner(pub.Body)}, sseReader{bufio.NewScanner(adm.Body)}
	for _, r := range []sseReader{pr, ar} {
		ev, data := r.next(t)
		var snap snapshotMsg
		if ev != "snapshot" || json.Unmarshal([]byte(data), &snap) != nil || len(snap.Cells) != 2 || snap.Cells[0].State != "unassigned" {
			t.Fatalf("first event %s %s", ev, data)
		}
	}

	// A node takes both shards and reports shard 0 ready.
	var beat func(body string)
	beat = func(body string) {
		req, _ := http.NewRequest("POST", srv.URL+"/v1/nodes/node-x/heartbeat", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer nod")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var o struct {
			Assign []struct {
				Shard int    `json:"shard"`
				Token uint64 `json:"token"`
			} `json:"assign"`
		}
		json.NewDecoder(resp.Body).Decode(&o)
		resp.Body.Close()
		if len(o.Assign) == 2 {
			beat(fmt.Sprintf(`{"shards":[{"shard":0,"token":%d},{"shard":1,"token":%d}],"reports":[{"shard":0,"state":"ready","guilds":5},{"shard":1,"state":"waiting"}]}`,
				o.Assign[0].Token, o.Assign[1].Token))
		}
	}
	beat(`{"shards":[]}`)
	wantCells := func(r sseReader, node string) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for time.Now().Before(deadline) {
			ev, data := r.next(t)
			if ev != "cells" {
				continue
			}
			var m cellsMsg
			json.Unmarshal([]byte(data), &m)
			for _, c := range m.Changed {
				if c.Key == "gateway/0" && c.State == "ready" && c.Class == ClassOK {
					if c.Node != node {
						t.Errorf("cell node %q, want %q", c.Node, node)
					}
					return
				}
			}
		}
		t.Fatal("no cells event with shard 0 ready")
	}
	wantCells(pr, "")
	wantCells(ar, "node-x")
	// The history fills.
	deadline := time.Now().Add(5 * time.Second)
	for len(d.History()) < 2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if h := d.History(); len(h) < 2 || h[len(h)-1].Guilds != 5 {
		t.Errorf("history %+v", h)
	}
}

// TestBuildReshard: a running reshard shows in the fleet panel with its
// phase and progress; a finished one does not.
func TestBuildReshard(t *testing.T) {
	now := time.Unix(2000, 0).UTC()
	r := &coordapi.Reshard{From: 8, To: 16, Phase: coordapi.PhaseStarting, Ready: 5, ETA: now.Add(time.Minute)}
	v := Build(Input{Shards: coordapi.ShardList{ShardCount: 8}, Status: coordapi.Status{Reshard: r}, Now: now})
	want := &Reshard{From: 8, To: 16, Ready: 5, ETA: now.Add(time.Minute), Phase: coordapi.PhaseStarting}
	if diff := cmp.Diff(want, v.Fleet.Reshard); diff != "" {
		t.Errorf("fleet reshard (-want +got):\n%s", diff)
	}
	r.Phase = coordapi.PhaseDone
	if v := Build(Input{Status: coordapi.Status{Reshard: r}, Now: now}); v.Fleet.Reshard != nil {
		t.Errorf("a finished reshard still shows: %+v", v.Fleet.Reshard)
	}
}

// TestStreamCapsAndFraming: public streams are capped apart from admin
// ones (one more is answered 503 with Retry-After, and operators still
// get theirs), and no page may be framed.
func TestStreamCapsAndFraming(t *testing.T) {
	co, err := coord.New(coord.Config{Tokens: coord.Tokens{Admin: "adm", Status: "sta"}, ShardCount: 1, SessionStarts: -1, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	d, err := New(Config{Coordinator: co, MaxPublicStreams: 2, MaxAdminStreams: 1})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(d.Handler(co.Handler()))
	defer srv.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	get := func(path, token string) *http.Response {
		t.Helper()
		req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+path, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	var open []*http.Response
	defer func() {
		for _, r := range open {
			r.Body.Close()
		}
	}()
	for i := range 2 {
		r := get("/public/stream", "")
		open = append(open, r)
		if r.StatusCode != 200 {
			t.Fatalf("public stream %d: %d, want 200", i, r.StatusCode)
		}
		sseReader{bufio.NewScanner(r.Body)}.next(t) // registered once its snapshot arrives
	}
	over := get("/public/stream", "")
	body, _ := io.ReadAll(over.Body)
	over.Body.Close()
	if over.StatusCode != 503 || over.Header.Get("Retry-After") == "" || !strings.Contains(string(body), "unavailable") {
		t.Errorf("third public stream: %d %q %s, want 503 with Retry-After", over.StatusCode, over.Header.Get("Retry-After"), body)
	}
	adm := get("/v1/stream", "sta")
	open = append(open, adm)
	if adm.StatusCode != 200 {
		t.Errorf("admin stream with the public ones full: %d, want 200", adm.StatusCode)
	}
	for _, path := range []string{"/", "/admin"} {
		r := get(path, "")
		io.Copy(io.Discard, r.Body)
		r.Body.Close()
		if r.Header.Get("X-Frame-Options") != "DENY" || !strings.Contains(r.Header.Get("Content-Security-Policy"), "frame-ancestors 'none'") {
			t.Errorf("GET %s may be framed: %v", path, r.Header)
		}
	}
}
