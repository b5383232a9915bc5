package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gatehouse-dev/gatehouse/client"
	"github.com/gatehouse-dev/gatehouse/internal/discord/sim"
	"github.com/gatehouse-dev/gatehouse/internal/discord/sim/simtest"
)

// gatewayProc is `gatehouse gateway` run in-process by run().
type gatewayProc struct {
	cancel context.CancelFunc
	done   chan error
	nats   string // the embedded NATS URL it printed
}

func startGateway(t *testing.T, args ...string) *gatewayProc {
	t.Helper()
	return startNATSCommand(t, "gateway", args...)
}

// startNATSCommand runs gateway or broker, which both print the NATS URL
// first.
func startNATSCommand(t *testing.T, cmd string, args ...string) *gatewayProc {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	pr, pw := io.Pipe()
	var stderr syncBuffer
	g := &gatewayProc{cancel: cancel, done: make(chan error, 1)}
	go func() {
		g.done <- run(ctx, append([]string{cmd}, args...), pw, &stderr)
		pw.Close()
	}()
	line, err := bufio.NewReader(pr).ReadString('\n')
	go io.Copy(io.Discard, pr)
	prefix := "gatehouse " + cmd + ": NATS at "
	if err != nil || !strings.HasPrefix(line, prefix) {
		cancel()
		<-g.done
		t.Fatalf("first line %q, %v; stderr:\n%s", line, err, stderr.b.String())
	}
	g.nats, _, _ = strings.Cut(strings.TrimPrefix(line, prefix), ",")
	return g
}

// stop ends the node the way SIGTERM does and waits for it.
func (g *gatewayProc) stop(t *testing.T) {
	t.Helper()
	g.cancel()
	select {
	case err := <-g.done:
		if err != nil {
			t.Errorf("gateway: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("gateway did not stop within 30s")
	}
}

// TestGatewayEndToEnd runs the simulator, a gateway node with embedded
// JetStream, faults, a graceful restart of the node, and a bot worker
// consuming with the client package. Every shard session's events arrive in
// order with no gap and no duplicate, and the restart costs no IDENTIFY.
func TestGatewayEndToEnd(t *testing.T) {
	srv, base := simtest.Start(t, sim.Config{
		Guilds: 40, Shards: 4, MaxConcurrency: 4, IdentifyInterval: 100 * time.Millisecond,
		HeartbeatInterval: time.Second, EventRate: 100, EventTick: 5 * time.Millisecond,
	})
	dataDir := t.TempDir()
	args := []string{"-api", base + "/api/v10", "-token", "sim-token",
		"-nats-listen", "127.0.0.1:0", "-data-dir", dataDir, "-identify-interval", "100ms", "-log-level", "warn"}

	g := startGateway(t, args...)
	waitStats(t, srv, "4 READY", func(st sim.Stats) bool { return st.Readies == 4 && st.Events > 400 })

	// A worker's gateway command reaches the shard through the node.
	w, err := client.Connect(t.Context(), client.Config{URL: g.nats, NumShards: 4, NKeyFile: filepath.Join(dataDir, "credentials", "worker.nk")})
	if err != nil {
		t.Fatal(err)
	}
	presence := []byte(`{"op":3,"d":{"since":null,"activities":[],"status":"idle","afk":false}}`)
	if err := w.SendShard(t.Context(), 2, presence); err != nil {
		t.Errorf("SendShard(presence): %v", err)
	}
	big := []byte(`{"op":3,"d":{"since":null,"activities":[],"status":"` + strings.Repeat("x", 5000) + `","afk":false}}`)
	if err := w.SendShard(t.Context(), 2, big); err == nil {
		t.Error("SendShard of a 5 KB command succeeded; want a refusal")
	}
	w.Close()
	for _, f := range []sim.Fault{{Kind: sim.FaultDrop}, {Kind: sim.FaultReconnect}, {Kind: sim.FaultSplitPayload}} {
		before := srv.Stats()
		if _, err := srv.ApplyFault(f); err != nil {
			t.Fatal(err)
		}
		resumes := before.Resumes + 4
		if f.Kind == sim.FaultSplitPayload {
			resumes = before.Resumes // a payload split over two messages is read whole, no reconnect
		}
		waitStats(t, srv, "recovery from "+f.Kind, func(st sim.Stats) bool {
			return st.Resumes >= resumes && st.Connections == 4 && st.Events > before.Events+400
		})
	}
	g.stop(t)

	identifies := srv.Stats().Identifies
	g = startGateway(t, args...)
	before := srv.Stats()
	waitStats(t, srv, "resumed after restart", func(st sim.Stats) bool {
		return st.Resumes >= before.Resumes+4 && st.Connections == 4 && st.Events > before.Events+400
	})
	g.stop(t)
	if got := srv.Stats().Identifies; got != identifies {
		t.Errorf("the restarted node sent %d IDENTIFYs, want 0", got-identifies)
	}

	// The worker reads everything back from the stream the node left on
	// disk, served by gatehouse broker on the same data directory.
	g = startNATSCommand(t, "broker", "-listen", "127.0.0.1:0", "-data-dir", dataDir, "-log-level", "warn")
	defer g.stop(t)
	last, events, gaps := readStream(t, g.nats, filepath.Join(dataDir, "credentials", "worker.nk"), "e2e")
	if diff := cmp.Diff([]string(nil), gaps); diff != "" {
		t.Errorf("gaps or duplicates in the stream:\n%s", diff)
	}
	var shards []int
	for k := range last {
		shards = append(shards, k.shard)
	}
	slices.Sort(shards)
	// One session per shard: faults and the restart all resumed.
	if !slices.Equal(shards, []int{0, 1, 2, 3}) {
		t.Errorf("shard sessions in the stream: %v", last)
	}
	for k, seq := range last {
		if seq < 100 {
			t.Errorf("shard %d: only %d events in the stream", k.shard, seq)
		}
	}
	if events < 1000 {
		t.Errorf("only %d events consumed", events)
	}
	t.Logf("%d events consumed, sessions %v", events, last)
}

func waitStats(t *testing.T, srv *sim.Server, what string, cond func(sim.Stats) bool) {
	t.Helper()
	waitStatsFor(t, srv, 20*time.Second, what, cond)
}

func waitStatsFor(t *testing.T, srv *sim.Server, d time.Duration, what string, cond func(sim.Stats) bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond(srv.Stats()) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s: %+v", d, what, srv.Stats())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// sessionKey names one shard session in the stream.
type sessionKey struct {
	shard   int
	session string
}

// readStream consumes everything in the stream at natsURL through a new
// durable consumer, until it has been idle for 2 s, and returns each
// shard session's last sequence, the event count, and up to 10 places
// where a session's sequence did not go up by one (gaps or duplicates).
func readStream(t *testing.T, natsURL, seed, consumer string) (last map[sessionKey]int64, events int, gaps []string) {
	last, events, gaps, _ = readStreamLeases(t, natsURL, seed, consumer)
	return last, events, gaps
}

// readStreamLeases is readStream that also returns each shard's last lease
// token, and counts a batch published under a smaller token than an
// earlier one of its shard as a problem (a node that lost the shard
// published after its new owner).
func readStreamLeases(t *testing.T, natsURL, seed, consumer string) (last map[sessionKey]int64, events int, gaps []string, lease map[int]uint64) {
	t.Helper()
	c, err := client.Connect(t.Context(), client.Config{URL: natsURL, NKeyFile: seed, Consumer: consumer})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	last = map[sessionKey]int64{}
	ctx, cancel := context.WithCancel(t.Context())
	idle := time.AfterFunc(2*time.Second, cancel)
	var mu sync.Mutex        // the handler runs concurrently for different shards
	lease = map[int]uint64{} // per shard, the greatest lease token seen
	err = c.Consume(ctx, func(ctx context.Context, ev *client.Event) error {
		mu.Lock()
		defer mu.Unlock()
		idle.Reset(2 * time.Second)
		k := sessionKey{ev.Shard, ev.Session}
		if ev.Seq != last[k]+1 && len(gaps) < 10 {
			gaps = append(gaps, fmt.Sprintf("shard %d session %s: seq %d after %d", ev.Shard, ev.Session, ev.Seq, last[k]))
		}
		last[k] = ev.Seq
		if ev.Lease < lease[ev.Shard] && len(gaps) < 10 {
			gaps = append(gaps, fmt.Sprintf("shard %d seq %d: published under lease %d after lease %d", ev.Shard, ev.Seq, ev.Lease, lease[ev.Shard]))
		}
		lease[ev.Shard] = max(lease[ev.Shard], ev.Lease)
		events++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return last, events, gaps, lease
}

// TestGatewayStartErrors: a node that cannot start says why and returns; it
// never hangs.
func TestGatewayStartErrors(t *testing.T) {
	_, base := simtest.Start(t, sim.Config{Guilds: 10})
	for _, tc := range []struct {
		name, api, token, want string
	}{
		{"unreachable API", "http://127.0.0.1:1/api/v10", "sim-token", "connection refused"},
		{"bad token", base + "/api/v10", "wrong", "401"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			done := make(chan error, 1)
			go func() {
				done <- run(t.Context(), []string{"gateway", "-api", tc.api, "-token", tc.token,
					"-data-dir", t.TempDir(), "-nats-listen", ""}, io.Discard, io.Discard)
			}()
			select {
			case err := <-done:
				if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), tc.token+"\"") {
					t.Errorf("run = %v, want an error mentioning %q", err, tc.want)
				}
			case <-time.After(20 * time.Second):
				t.Fatal("gateway did not return within 20s")
			}
		})
	}
}
