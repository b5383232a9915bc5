package main

import (
	"bufio"
	"context"
	"io"
	"net/http"
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
			"-max-concurrency", "2", "-identify-interval", "200ms", "-rate", "50", "-report-every", "200ms"}, pw, &stderr)
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
