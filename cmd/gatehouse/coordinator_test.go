package main

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/discord/sim"
	"github.com/gatehouse-dev/gatehouse/internal/discord/sim/simtest"
)

// startCoordinator runs `gatehouse coordinator` in-process and returns its
// base URL.
func startCoordinator(t *testing.T, args ...string) (string, func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	pr, pw := io.Pipe()
	var stderr syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, append([]string{"coordinator", "-listen", "127.0.0.1:0", "-log-level", "warn"}, args...), pw, &stderr)
		pw.Close()
	}()
	line, err := bufio.NewReader(pr).ReadString('\n')
	go io.Copy(io.Discard, pr)
	const prefix = "gatehouse coordinator: API on "
	if err != nil || !strings.HasPrefix(line, prefix) {
		cancel()
		<-done
		t.Fatalf("first line %q, %v; stderr:\n%s", line, err, stderr.b.String())
	}
	url, _, _ := strings.Cut(strings.TrimPrefix(line, prefix), " ")
	return url, func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("coordinator: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("coordinator did not stop within 10s")
		}
	}
}

// TestCoordinatorFleet starts 64 shards at max_concurrency 16 on two
// gateway nodes at once. Through the coordinator's queue the fleet comes up
// with zero identify violations; the control run, each node with its own
// in-process gate, shows the test can tell: the nodes collide in every
// bucket.
func TestCoordinatorFleet(t *testing.T) {
	t.Setenv("GATEHOUSE_ADMIN_TOKEN", "admin-test")
	t.Setenv("GATEHOUSE_NODE_TOKEN", "node-test")
	for _, withCoord := range []bool{true, false} {
		name := "coordinator"
		if !withCoord {
			name = "control-local-gates"
		}
		t.Run(name, func(t *testing.T) {
			srv, base := simtest.Start(t, sim.Config{
				Guilds: 640, Shards: 64, MaxConcurrency: 16, IdentifyInterval: 300 * time.Millisecond,
				HeartbeatInterval: 2 * time.Second, EventRate: 1,
			})
			api := base + "/api/v10"
			common := []string{"-api", api, "-token", "sim-token", "-shard-count", "64", "-identify-interval", "300ms",
				"-nats-listen", "127.0.0.1:0", "-log-level", "error", "-compress", "none"}
			if withCoord {
				url, stop := startCoordinator(t, "-api", api, "-token", "sim-token", "-identify-interval", "300ms")
				defer stop()
				common = append(common, "-coordinator", url)
				// The coordinator read the deployment from /gateway/bot.
				req, _ := http.NewRequestWithContext(t.Context(), "GET", url+"/v1/identify", nil)
				req.Header.Set("Authorization", "Bearer node-test")
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 || !strings.Contains(string(body), `"max_concurrency":16`) {
					t.Fatalf("GET /v1/identify: %d %s", resp.StatusCode, body)
				}
			}
			a := startGateway(t, append(common, "-shards", "0-31", "-data-dir", t.TempDir())...)
			b := startGateway(t, append(common, "-shards", "32-63", "-data-dir", t.TempDir())...)
			waitStats(t, srv, "64 READY", func(st sim.Stats) bool { return st.Readies >= 64 })
			a.stop(t)
			b.stop(t)
			v := srv.Stats().IdentifyViolations
			if withCoord && v != 0 {
				t.Errorf("through the coordinator the fleet made %d identify violations: %v", v, srv.Stats().Violations)
			}
			if !withCoord {
				if v == 0 {
					t.Error("two nodes with their own gates made no violation: the test cannot tell")
				}
			}
		})
	}
}
