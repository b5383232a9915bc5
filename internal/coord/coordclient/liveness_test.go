package coordclient

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/broker/natsbroker"
	"github.com/gatehouse-dev/gatehouse/internal/coord"
)

// TestAgentRidesThroughCoordinatorOutage: with a replicated coordinator
// the node's leases hang on its liveness record, so the node keeps every
// shard, and may keep publishing, while no coordinator answers for
// several lease TTLs; it stops them only when it can no longer renew the
// record.
func TestAgentRidesThroughCoordinatorOutage(t *testing.T) {
	const ttl = 2 * time.Second
	ctx := t.Context()
	srv, err := natsbroker.Open(ctx, natsbroker.Config{DataDir: t.TempDir(), Listen: "127.0.0.1:0", LiveTTL: ttl})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	co, err := coord.New(coord.Config{Tokens: coord.Tokens{Admin: "adm", Node: "nod"}, ShardCount: 3, SessionStarts: -1, LeaseTTL: ttl,
		Control: &coord.Control{Ctl: srv.Control(), Live: srv.Live(), LiveTTL: ttl, Views: srv}, ReplicaID: "c1", Advertise: "http://" + ln.Addr().String(),
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: co.Handler()}
	coCtx, stopCo := context.WithCancel(ctx)
	coDone, serveDone := make(chan struct{}), make(chan struct{})
	go func() { defer close(coDone); co.Run(coCtx) }()
	go func() { defer close(serveDone); hs.Serve(ln) }()
	stopCoordinator := func() {
		stopCo()
		<-coDone
		hs.Close()
		<-serveDone
	}
	defer func() {
		select {
		case <-coDone:
		default:
			stopCoordinator()
		}
	}()

	nodeConn, err := natsbroker.Open(ctx, natsbroker.Config{URL: srv.ClientURL()})
	if err != nil {
		t.Fatal(err)
	}
	defer nodeConn.Close()
	c, err := New(Config{URL: "http://" + ln.Addr().String(), Token: "nod", RetryMin: 20 * time.Millisecond, RetryMax: 100 * time.Millisecond, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	a, err := c.NewAgent(AgentConfig{NodeID: "n1", Liveness: nodeConn.Live(), FirstInterval: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	node := newFakeNode()
	agentCtx, stopAgent := context.WithCancel(ctx)
	agentDone := make(chan struct{})
	go func() { defer close(agentDone); a.Run(agentCtx, node) }()
	defer func() { stopAgent(); <-agentDone }()
	waitUntil(t, "three shards running", func() bool { return len(node.running()) == 3 })
	waitUntil(t, "the leases held by the liveness record", func() bool { _, ok := a.Lease(3, 0); return ok })

	stopCoordinator() // every coordinator gone
	for deadline := time.Now().Add(3 * ttl); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if len(node.running()) != 3 {
			t.Fatalf("the node stopped shards while the coordinators were away: running %v", node.running())
		}
		for s := range 3 {
			if _, ok := a.Lease(3, s); !ok {
				t.Fatalf("shard %d's lease lapsed while the liveness record was renewed", s)
			}
		}
	}
	nodeConn.Close() // now the record cannot be renewed: it expires a TTL later
	waitUntil(t, "every shard stopped", func() bool { return len(node.running()) == 0 })
	if _, ok := a.Lease(3, 0); ok {
		t.Error("a lease is still valid after the liveness record was lost")
	}
}
