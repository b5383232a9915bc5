package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/discord/sim"
	"github.com/gatehouse-dev/gatehouse/internal/discord/sim/simtest"
)

// proc is a gatehouse child process.
type proc struct {
	cmd    *exec.Cmd
	done   chan struct{}
	stderr *syncBuffer
}

// startProc runs the gatehouse binary and returns the text after prefix
// on its first stdout line that has it.
func startProc(t *testing.T, exe string, env []string, prefix string, args ...string) (*proc, string) {
	t.Helper()
	cmd := exec.Command(exe, args...)
	cmd.Env = append(os.Environ(), env...)
	p := &proc{cmd: cmd, done: make(chan struct{}), stderr: &syncBuffer{}}
	cmd.Stderr = p.stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	found := make(chan string, 1)
	go func() {
		defer close(p.done)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if rest, ok := strings.CutPrefix(sc.Text(), prefix); ok {
				select {
				case found <- rest:
				default:
				}
			}
		}
		io.Copy(io.Discard, out)
		cmd.Wait()
	}()
	t.Cleanup(func() { p.kill() })
	select {
	case line := <-found:
		return p, line
	case <-p.done:
		t.Fatalf("%s exited: %s", args[0], p.stderr.b.String())
	case <-time.After(30 * time.Second):
		t.Fatalf("%s printed no %q within 30s: %s", args[0], prefix, p.stderr.b.String())
	}
	return nil, ""
}

func (p *proc) kill() {
	p.cmd.Process.Kill()
	<-p.done
}

// stop sends SIGTERM and waits.
func (p *proc) stop(t *testing.T) {
	t.Helper()
	p.cmd.Process.Signal(os.Interrupt)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		t.Errorf("%s did not stop within 30s", p.cmd.Args[1])
		p.kill()
	}
}

var (
	exeOnce sync.Once
	exePath string
	exeErr  error
)

// buildExe builds the gatehouse binary once per test run.
func buildExe(t *testing.T) string {
	t.Helper()
	exeOnce.Do(func() {
		dir, err := os.MkdirTemp("", "gatehouse-test-")
		if err != nil {
			exeErr = err
			return
		}
		exePath = filepath.Join(dir, "gatehouse")
		if out, err := exec.Command("go", "build", "-o", exePath, ".").CombinedOutput(); err != nil {
			exeErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if exeErr != nil {
		t.Fatal(exeErr)
	}
	return exePath
}

// TestFailoverEndToEnd: a coordinator, a broker and two gateway nodes with
// -shards assigned, as separate processes, run 64 shards at
// max_concurrency 16 with zero identify violations. Node a is killed with
// SIGKILL: its shards RESUME on node b within the lease TTL plus 2 s, with
// no new IDENTIFY. The coordinator then restarts from its state in KV and
// nothing moves. The stream has no gap and no duplicate.
func TestFailoverEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs five processes")
	}
	exe := buildExe(t)
	srv, base := simtest.Start(t, sim.Config{
		Guilds: 640, Shards: 64, MaxConcurrency: 16, IdentifyInterval: 300 * time.Millisecond,
		HeartbeatInterval: 2 * time.Second, EventRate: 5,
	})
	api := base + "/api/v10"
	env := []string{"GATEHOUSE_ADMIN_TOKEN=admin-e2e", "GATEHOUSE_NODE_TOKEN=node-e2e"}
	const ttl = 3 * time.Second

	brokerDir := t.TempDir()
	seed := func(name string) string { return filepath.Join(brokerDir, "credentials", name+".nk") }
	broker, natsLine := startProc(t, exe, nil, "gatehouse broker: NATS at ", "broker", "-listen", "127.0.0.1:0", "-data-dir", brokerDir, "-log-level", "warn")
	natsURL, _, _ := strings.Cut(natsLine, ",")
	// A fixed port, so a restarted coordinator is found at the same URL.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	coordAddr := ln.Addr().String()
	ln.Close()
	startCoord := func() *proc {
		p, _ := startProc(t, exe, env, "gatehouse coordinator: API on ", "coordinator", "-listen", coordAddr, "-nats", natsURL, "-nats-nkey", seed("coordinator"),
			"-api", api, "-token", "sim-token", "-identify-interval", "300ms", "-lease-ttl", ttl.String(), "-log-level", "warn")
		return p
	}
	coord := startCoord()
	coordURL := "http://" + coordAddr
	node := func(id string) *proc {
		p, _ := startProc(t, exe, env, "gatehouse gateway: ", "gateway", "-api", api, "-token", "sim-token",
			"-shards", "assigned", "-shard-count", "64", "-coordinator", coordURL, "-nats", natsURL, "-nats-nkey", seed("node"), "-node-id", id,
			"-identify-interval", "300ms", "-compress", "none", "-log-level", "warn")
		return p
	}
	a := node("a")
	b := node("b")
	waitStats(t, srv, "64 shards connected", func(st sim.Stats) bool { return st.Readies >= 64 && st.Connections == 64 })
	// Let the startup rebalance settle and events flow.
	time.Sleep(2 * ttl / 3)
	waitStats(t, srv, "64 shards connected after the rebalance", func(st sim.Stats) bool { return st.Connections == 64 })
	before := srv.Stats()
	if before.Identifies != 64 || before.IdentifyViolations != 0 {
		t.Fatalf("start: %d identifies, %d violations; want 64 and 0", before.Identifies, before.IdentifyViolations)
	}

	a.kill()
	killedAt := time.Now()
	waitStats(t, srv, "node a's connections gone", func(st sim.Stats) bool { return st.Connections < 64 })
	var took time.Duration
	waitStatsFor(t, srv, ttl+10*time.Second, "every shard back after node a was killed", func(st sim.Stats) bool {
		if st.Connections == 64 && st.Resumes > before.Resumes {
			took = time.Since(killedAt)
			return true
		}
		return false
	})
	t.Logf("node a's shards resumed on node b %v after the kill (lease TTL %v)", took.Round(10*time.Millisecond), ttl)
	if took > ttl+2*time.Second {
		t.Errorf("failover took %v, want within the lease TTL plus 2s (%v)", took, ttl+2*time.Second)
	}
	time.Sleep(time.Second) // events after the failover
	after := srv.Stats()
	if after.Identifies != before.Identifies {
		t.Errorf("failover cost %d IDENTIFYs, want 0", after.Identifies-before.Identifies)
	}
	if after.IdentifyViolations != 0 {
		t.Errorf("%d identify violations: %v", after.IdentifyViolations, after.Violations)
	}

	// Node b reports every shard ready, with the guild counts the moved
	// shards brought along in their saved state.
	deadline := time.Now().Add(10 * time.Second)
	for {
		ready, guilds, nodes := shardsReport(t, coordURL)
		if ready == 64 && guilds == 640 && nodes == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("GET /v1/shards after the failover: %d ready, %d guilds on %d nodes; want 64, 640 on 1", ready, guilds, nodes)
			break
		}
		time.Sleep(100 * time.Millisecond)
	}

	// The coordinator restarts from its state in KV: node b keeps every
	// shard under the same leases, so nothing moves.
	tokensBefore := leaseTokens(t, coordURL)
	coord.stop(t)
	coord = startCoord()
	time.Sleep(2 * ttl)
	if tokensAfter := leaseTokens(t, coordURL); !maps.Equal(tokensBefore, tokensAfter) || len(tokensAfter) != 64 {
		t.Errorf("lease tokens changed across the coordinator restart:\nbefore %v\nafter  %v", tokensBefore, tokensAfter)
	}
	restarted := srv.Stats()
	if restarted.Connections != 64 || restarted.Resumes != after.Resumes || restarted.Identifies != after.Identifies {
		t.Errorf("after a coordinator restart: %d connections, %d resumes, %d identifies; want 64 and no change (%d, %d)",
			restarted.Connections, restarted.Resumes, restarted.Identifies, after.Resumes, after.Identifies)
	}
	b.stop(t)
	coord.stop(t)

	// Every shard session's events are in the stream in order, once.
	last, _, gaps, leases := readStreamLeases(t, natsURL, seed("worker"), "e2e")
	if len(gaps) > 0 {
		t.Errorf("gaps, duplicates or stale owners in the stream:\n%s", strings.Join(gaps, "\n"))
	}
	// Each shard's newest batches carry the token the coordinator holds
	// for it: the publishing node was fenced by its lease.
	if !maps.Equal(leases, tokensBefore) {
		t.Errorf("last lease token per shard in the stream differs from the coordinator's:\nstream      %v\ncoordinator %v", leases, tokensBefore)
	}
	if len(last) != 64 {
		t.Errorf("%d shard sessions in the stream, want 64 (one per shard: moves and the failover resumed)", len(last))
	}
	broker.stop(t)
}

// shardsReport sums GET /v1/shards: shards ready, guilds reported, and
// distinct holding nodes.
func shardsReport(t *testing.T, base string) (ready, guilds, nodes int) {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), "GET", base+"/v1/shards", nil)
	req.Header.Set("Authorization", "Bearer admin-e2e")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var l struct {
		Shards []struct {
			Node   string `json:"node"`
			State  string `json:"state"`
			Guilds *int   `json:"guilds"`
		} `json:"shards"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&l); err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET /v1/shards: %d %v", resp.StatusCode, err)
	}
	seen := map[string]bool{}
	for _, s := range l.Shards {
		if s.State == "ready" {
			ready++
		}
		if s.Guilds != nil {
			guilds += *s.Guilds
		}
		if s.Node != "" {
			seen[s.Node] = true
		}
	}
	return ready, guilds, len(seen)
}

// leaseTokens returns the coordinator's live leases: shard → token.
func leaseTokens(t *testing.T, base string) map[int]uint64 {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), "GET", base+"/v1/leases", nil)
	req.Header.Set("Authorization", "Bearer admin-e2e")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var ls []struct {
		Shard int    `json:"shard"`
		Token uint64 `json:"token"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&ls); err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET /v1/leases: %d %v", resp.StatusCode, err)
	}
	out := map[int]uint64{}
	for _, l := range ls {
		out[l.Shard] = l.Token
	}
	return out
}
