package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestDemo runs `gatehouse demo` small and fast: every shard comes up
// through the coordinator's queue, events reach the sample consumer, the
// coordinator's API answers with the printed token, and Ctrl-C stops it
// cleanly.
func TestDemo(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	pr, pw := io.Pipe()
	var stderr syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"demo", "-listen", "127.0.0.1:0", "-nats-listen", "127.0.0.1:0", "-guilds", "3000",
			"-max-concurrency", "2", "-identify-interval", "200ms", "-rate", "50", "-report-every", "200ms", "-lease-ttl", "3s", "-heartbeat-interval", "500ms"}, pw, &stderr)
		pw.Close()
	}()
	api := regexp.MustCompile(`dashboard at (http://\S+)/ `)
	tok := regexp.MustCompile(`status token (\w+) `)
	live := regexp.MustCompile(`shards ready (\d+)/3 .*\((\d+) in all\)`)
	var url, token string
	sc := bufio.NewScanner(pr)
	deadline := time.AfterFunc(30*time.Second, cancel)
	defer deadline.Stop()
	ok := false
	var lines []string
	for sc.Scan() {
		line := sc.Text()
		lines = append(lines, line)
		if m := api.FindStringSubmatch(line); m != nil {
			url = m[1]
		}
		if m := tok.FindStringSubmatch(line); m != nil {
			token = m[1]
		}
		if m := live.FindStringSubmatch(line); m != nil {
			if n, _ := strconv.Atoi(m[2]); m[1] == "3" && n > 3000 { // past the 3,000 GUILD_CREATEs
				ok = true
				break
			}
		}
	}
	go io.Copy(io.Discard, pr)
	if !ok {
		cancel()
		<-done
		t.Fatalf("no live line with 3/3 shards ready and events flowing; stdout:\n%s\nstderr:\n%s", strings.Join(lines, "\n"), stderr.b.String())
	}
	req, _ := http.NewRequestWithContext(t.Context(), "GET", url+"/v1/identify", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"max_concurrency":2`) {
		t.Errorf("GET /v1/identify with the printed token: %d %s", resp.StatusCode, body)
	}
	checkDemoMetrics(t, url, token)
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("demo after Ctrl-C: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("demo did not stop within 30s")
	}
}

// scrape reads url's Prometheus text: series (name and labels as printed)
// → value.
func scrape(t *testing.T, url, token string) (map[string]float64, int) {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), "GET", url, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	if resp.StatusCode != http.StatusOK {
		return out, resp.StatusCode
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("metrics line %q: %v", line, err)
		}
		out[line[:i]] = v
	}
	return out, resp.StatusCode
}

// checkDemoMetrics scrapes the demo's /metrics and checks the series the
// dashboard issue lists exist with sane values.
func checkDemoMetrics(t *testing.T, url, token string) {
	t.Helper()
	if _, code := scrape(t, url+"/metrics", ""); code != http.StatusUnauthorized {
		t.Errorf("GET /metrics without a token: %d, want 401", code)
	}
	want := map[string]func(float64) bool{
		`gatehouse_gateway_sessions_total{kind="identify",node="demo"}`:                   func(v float64) bool { return v == 3 },
		`gatehouse_gateway_sessions_total{kind="resume",node="demo"}`:                     func(v float64) bool { return v == 0 },
		`gatehouse_gateway_events_total{node="demo",type="GUILD_CREATE"}`:                 func(v float64) bool { return v == 3000 },
		`gatehouse_gateway_publish_latency_seconds_count{node="demo"}`:                    func(v float64) bool { return v > 0 },
		`gatehouse_gateway_shard_latency_seconds_count{node="demo",shard="0"}`:            func(v float64) bool { return v > 0 },
		`gatehouse_gateway_shard_latency_seconds_bucket{node="demo",shard="2",le="+Inf"}`: func(v float64) bool { return v > 0 },
		`gatehouse_gateway_shards{node="demo",state="ready"}`:                             func(v float64) bool { return v == 3 },
		`gatehouse_shards{state="ready"}`:                                                 func(v float64) bool { return v == 3 },
		`gatehouse_guilds`:                                                                func(v float64) bool { return v == 3000 },
		`gatehouse_session_starts_remaining`:                                              func(v float64) bool { return v == 997 },
		`gatehouse_identify_queue_depth`:                                                  func(v float64) bool { return v == 0 },
		`gatehouse_nodes`:                                                                 func(v float64) bool { return v == 1 },
		`gatehouse_shard_count`:                                                           func(v float64) bool { return v == 3 },
		`gatehouse_planner_target_shards`:                                                 func(v float64) bool { return v >= 1 },
		`gatehouse_consumer_pending{consumer="gatehouse-demo"}`:                           func(v float64) bool { return v >= 0 },
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		got, code := scrape(t, url+"/metrics", token)
		var bad []string
		for series, ok := range want {
			if v, found := got[series]; !found || !ok(v) {
				bad = append(bad, fmt.Sprintf("%s = %v (found %v)", series, v, found))
			}
		}
		if code == http.StatusOK && len(bad) == 0 {
			checkGrafana(t, got)
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("GET /metrics (%d): unexpected series:\n%s", code, strings.Join(bad, "\n"))
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// checkGrafana checks that every series the Grafana dashboard queries is
// one the demo exports.
func checkGrafana(t *testing.T, scraped map[string]float64) {
	t.Helper()
	data, err := os.ReadFile("../../deploy/grafana/gatehouse.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(data, &dash); err != nil {
		t.Fatalf("deploy/grafana/gatehouse.json: %v", err)
	}
	names := map[string]bool{}
	for series := range scraped {
		name, _, _ := strings.Cut(series, "{")
		names[name] = true
	}
	metric := regexp.MustCompile(`gatehouse_[a-z_]+`)
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			for _, m := range metric.FindAllString(tg.Expr, -1) {
				if !names[m] {
					t.Errorf("Grafana panel %q queries %s, which the demo does not export", p.Title, m)
				}
			}
		}
	}
}
