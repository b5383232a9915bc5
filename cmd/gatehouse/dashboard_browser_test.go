package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/gatehouse-dev/gatehouse/internal/coord"
	"github.com/gatehouse-dev/gatehouse/internal/dashboard"
)

// chromium returns the browser to drive, or "" when none is installed.
func chromium() string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// artifactDir is where the browser tests leave their screenshots:
// $GATEHOUSE_ARTIFACTS, or artifacts/dashboard at the repository root.
func artifactDir(t *testing.T) string {
	dir := os.Getenv("GATEHOUSE_ARTIFACTS")
	if dir == "" {
		dir = filepath.Join("..", "..", "artifacts", "dashboard")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// demoProc is a demo running in this process.
type demoProc struct {
	url, admin, status, simBase string
	stop                        func()
}

// startDemo runs a small demo and reads where it listens from its output.
func startDemo(t *testing.T, args ...string) demoProc {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	var stderr syncBuffer
	go func() {
		done <- run(ctx, append([]string{"demo", "-listen", "127.0.0.1:0", "-nats-listen", "127.0.0.1:0"}, args...), pw, &stderr)
		pw.Close()
	}()
	res := map[string]*regexp.Regexp{
		"url":    regexp.MustCompile(`dashboard at (http://\S+)/ `),
		"admin":  regexp.MustCompile(`admin token (\w+) `),
		"status": regexp.MustCompile(`status token (\w+) `),
		"sim":    regexp.MustCompile(`Discord simulator at (http://\S+)/api/v10\)`),
	}
	found := map[string]string{}
	sc := bufio.NewScanner(pr)
	var lines []string
	for len(found) < len(res) && sc.Scan() {
		lines = append(lines, sc.Text())
		for k, re := range res {
			if m := re.FindStringSubmatch(sc.Text()); m != nil {
				found[k] = m[1]
			}
		}
	}
	go io.Copy(io.Discard, pr)
	d := demoProc{url: found["url"], admin: found["admin"], status: found["status"], simBase: found["sim"]}
	d.stop = func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("demo: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("demo did not stop within 30s")
		}
	}
	if len(found) < len(res) {
		d.stop()
		t.Fatalf("demo output lacks %v:\n%s\n%s", res, strings.Join(lines, "\n"), stderr.b.String())
	}
	return d
}

// TestDashboardBrowser drives the dashboard of a running demo in headless
// Chromium: one cell per shard, a guild search that highlights the right
// cell, a shard the simulator cuts off turning red and then green once it
// resumes, the admin view behind the token, and no token on the public
// page. It leaves screenshots in artifactDir.
func TestDashboardBrowser(t *testing.T) {
	const shards = 6
	d := startDemo(t, "-guilds", strconv.Itoa(shards*1000), "-max-concurrency", "2", "-identify-interval", "200ms",
		"-rate", "20", "-lease-ttl", "3s", "-report-every", "10s")
	t.Cleanup(d.stop) // after the browser's cleanup: its streams end first
	ctx := newBrowser(t, 1280, 900, 90*time.Second)
	dir := artifactDir(t)

	do := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		sctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		if err := chromedp.Do(sctx, steps...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	text := func(sel string) string {
		t.Helper()
		s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
		if err != nil {
			t.Fatalf("text of %s: %v", sel, err)
		}
		return s
	}
	shot := func(name string) {
		t.Helper()
		buf, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatalf("screenshot %s: %v", name, err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), buf, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	count := func(sel string) int { return countSel(t, ctx, sel) }
	waitFor := func(what string, limit time.Duration, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(limit)
		for !cond() {
			if time.Now().After(deadline) {
				html, _ := chromedp.Run(ctx, chromedp.OuterHTML(chromedp.CSS("main")))
				t.Fatalf("timed out waiting for %s; page:\n%.3000s", what, html)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}

	// The grid: one cell per shard, all green once the shards are ready.
	do("open the public page", chromedp.Navigate(d.url+"/"), chromedp.WaitVisible(chromedp.CSS("#grid .cell")))
	waitFor("6 green cells", 30*time.Second, func() bool { return count(".cell") == shards && count(".cell.ok") == shards })
	shot("1-grid.png")

	// Guild search: the page computes (id >> 22) % shards and highlights it.
	const guild = uint64(81384788765712384)
	want := int((guild >> 22) % shards)
	do("search a guild",
		chromedp.SendKeys(chromedp.CSS("#guild"), strconv.FormatUint(guild, 10)),
		chromedp.Click(chromedp.CSS("#search button")),
		chromedp.WaitVisible(chromedp.CSS(fmt.Sprintf(`.cell.hl[data-k="gateway/%d"]`, want))))
	result := text("#search-result")
	shot("2-search.png")
	if n := count(".cell.hl"); n != 1 || !strings.Contains(result, fmt.Sprintf("shard %d", want)) {
		t.Errorf("search for %d: %d highlighted cells, result %q; want shard %d", guild, n, result, want)
	}
	// Bad input gets a clear message.
	do("search text", chromedp.SetValue(chromedp.CSS("#guild"), "not-a-guild"), chromedp.Click(chromedp.CSS("#search button")))
	if result := text("#search-result"); !strings.Contains(result, "is a number") {
		t.Errorf("search for text: %q", result)
	}

	// The simulator cuts a shard off: it turns red, then green once the
	// outage is over and it resumed.
	victim := (want + 1) % shards
	resp, err := http.Post(d.simBase+"/sim/faults", "application/json",
		strings.NewReader(fmt.Sprintf(`{"kind":"outage","shards":[%d],"duration":"5s"}`, victim)))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	cell := fmt.Sprintf(`.cell[data-k="gateway/%d"]`, victim)
	waitFor("the cut-off shard red", 15*time.Second, func() bool { return count(cell+".bad") == 1 })
	shot("3-shard-down.png")
	waitFor("the shard green again", 45*time.Second, func() bool { return count(cell+".ok") == 1 })
	shot("4-shard-back.png")

	// Nothing secret on the public page.
	html, err := chromedp.Run(ctx, chromedp.OuterHTML(chromedp.CSS("html")))
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{d.admin, d.status, "sim-token"} {
		if strings.Contains(html, secret) {
			t.Errorf("the public page contains a token (%.4s…)", secret)
		}
	}
	if strings.Contains(html, "gateway · demo") {
		t.Error("the public page shows node names")
	}

	// The admin view: the token opens it; cells are grouped by node and a
	// shard offers a restart.
	do("open the admin view",
		chromedp.Navigate(d.url+"/admin"),
		chromedp.WaitVisible(chromedp.CSS("#token")),
		chromedp.SendKeys(chromedp.CSS("#token"), d.admin),
		chromedp.Click(chromedp.CSS("#login button")),
		chromedp.WaitVisible(chromedp.CSS(`[data-group="gateway · demo"] .cell`)),
		chromedp.Click(chromedp.CSS(fmt.Sprintf(`.cell[data-k="gateway/%d"]`, want))),
		chromedp.WaitVisible(chromedp.CSS("#restart")))
	shot("5-admin.png")
	if n := count(`[data-group="gateway · demo"] .cell`); n != shards {
		t.Errorf("admin view: %d cells under node demo, want %d", n, shards)
	}
	t.Logf("screenshots in %s", dir)
}

// TestDashboardScale loads the dashboard of a coordinator with 5,000
// shards in headless Chromium, then has a node take them all and report
// them in two waves, and checks the page shows every cell with its state
// and keeps answering. It logs how long the page took; the figure is a
// measurement, not a pass mark.
func TestDashboardScale(t *testing.T) {
	const shards = 5000
	co, err := coord.New(coord.Config{Tokens: coord.Tokens{Admin: "adm", Node: "nod"}, ShardCount: shards, MaxConcurrency: 16,
		IdentifyMargin: -1, SessionStarts: -1, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	dash, err := dashboard.New(dashboard.Config{Coordinator: co, Tick: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	dctx, dcancel := context.WithCancel(context.Background())
	ddone := make(chan struct{})
	go func() { dash.Run(dctx); close(ddone) }()
	t.Cleanup(func() { dcancel(); <-ddone })
	srv := httptest.NewServer(dash.Handler(co.Handler()))
	t.Cleanup(srv.Close) // after the browser's cleanup: its stream ends first
	ctx := newBrowser(t, 1920, 1080, 120*time.Second)

	count := func(sel string) int { return countSel(t, ctx, sel) }
	waitFor := func(what string, cond func() bool) time.Duration {
		start := time.Now()
		for !cond() {
			if time.Since(start) > 60*time.Second {
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(50 * time.Millisecond)
		}
		return time.Since(start)
	}
	start := time.Now()
	if err := chromedp.Do(ctx, chromedp.Navigate(srv.URL+"/"), chromedp.WaitVisible(chromedp.CSS("#grid .cell"))); err != nil {
		t.Fatal(err)
	}
	waitFor("5,000 cells", func() bool { return count(".cell.unknown") == shards })
	loaded := time.Since(start)

	// A node takes every shard; it reports them ready in one heartbeat.
	held := takeAllShards(t, srv.URL, "big", "nod", func(int) string { return `"state":"ready","guilds":2000,"latency_ms":41` })
	if n := strings.Count(held, `"shard"`); n != shards {
		t.Fatalf("assigned %d shards, want %d", n, shards)
	}
	allGreen := waitFor("5,000 green cells", func() bool { return count(".cell.ok") == shards })
	// The page still answers at once.
	start2 := time.Now()
	if err := chromedp.Do(ctx, chromedp.SetValue(chromedp.CSS("#guild"), "81384788765712384"), chromedp.Click(chromedp.CSS("#search button")),
		chromedp.WaitVisible(chromedp.CSS(".cell.hl"))); err != nil {
		t.Fatal(err)
	}
	search := time.Since(start2)
	t.Logf("5,000 shards: page loaded with every cell in %v; all green %v after the report; a guild search answered in %v",
		loaded.Round(time.Millisecond), allGreen.Round(time.Millisecond), search.Round(time.Millisecond))
}
