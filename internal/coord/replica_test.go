package coord

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/broker/natsbroker"
	"github.com/gatehouse-dev/gatehouse/internal/coord/coordapi"
	"github.com/gatehouse-dev/gatehouse/internal/lease/kvlease"
)

// The replicated coordinator against a real NATS server: failover, no
// lease granted twice, followers, the identify queue across a failover.

const replicaTTL = 2 * time.Second

// startNATS runs an embedded server with the control buckets.
func startNATS(t *testing.T) *natsbroker.Broker {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b, err := natsbroker.Open(ctx, natsbroker.Config{DataDir: t.TempDir(), Listen: "127.0.0.1:0", LiveTTL: replicaTTL})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

// dialNATS is a process's own connection to srv.
func dialNATS(t *testing.T, srv *natsbroker.Broker) *natsbroker.Broker {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b, err := natsbroker.Open(ctx, natsbroker.Config{URL: srv.ClientURL()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

type testReplica struct {
	c    *Coordinator
	url  string
	nats *natsbroker.Broker
	stop func()
}

// startReplica runs a coordinator replica with its own NATS connection
// and HTTP listener.
func startReplica(t *testing.T, srv *natsbroker.Broker, id string, mod func(*Config)) *testReplica {
	t.Helper()
	b := dialNATS(t, srv)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{Tokens: testTokens, ShardCount: 4, MaxConcurrency: 2, IdentifyMargin: -1, SessionStarts: -1,
		IdentifyInterval: 300 * time.Millisecond, LeaseTTL: replicaTTL, ReplicaID: id, Advertise: "http://" + ln.Addr().String(),
		Control: &Control{Ctl: b.Control(), Live: b.Live(), LiveTTL: replicaTTL, Views: b, Legacy: b.LoadCoordinator},
		Logger:  slog.New(slog.DiscardHandler)}
	if mod != nil {
		mod(&cfg)
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: c.Handler()}
	ctx, cancel := context.WithCancel(context.Background())
	runDone, serveDone := make(chan struct{}), make(chan struct{})
	go func() { defer close(runDone); c.Run(ctx) }()
	go func() { defer close(serveDone); hs.Serve(ln) }()
	r := &testReplica{c: c, url: "http://" + ln.Addr().String(), nats: b}
	stopped := false
	r.stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		<-runDone
		hs.Close()
		<-serveDone
	}
	t.Cleanup(r.stop)
	return r
}

// crash kills the replica as kill -9 would: its NATS connection goes
// first, so it can neither save nor give its leadership up.
func (r *testReplica) crash() {
	r.nats.Close()
	r.stop()
}

// waitLeader waits until one of reps leads and returns it.
func waitLeader(t *testing.T, within time.Duration, reps ...*testReplica) *testReplica {
	t.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		for _, r := range reps {
			if r.c.Leading() {
				return r
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("no replica leads after %v", within)
	return nil
}

// liveNode keeps node id's liveness record, as a gateway node's agent does.
func liveNode(t *testing.T, srv *natsbroker.Broker, id string) (epoch uint64, stop func()) {
	t.Helper()
	b := dialNATS(t, srv)
	k, err := kvlease.New(kvlease.Config{Store: b.Live(), Key: coordapi.LivenessKey(id), Owner: id, TTL: replicaTTL})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); k.Run(ctx) }()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if e, ok := k.Held(); ok {
			epoch = e
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the node's liveness record was not taken")
		}
		time.Sleep(10 * time.Millisecond)
	}
	once := false
	stop = func() {
		if !once {
			once = true
			b.Close() // no goodbye: the record expires
			cancel()
			<-done
		}
	}
	t.Cleanup(stop)
	return epoch, stop
}

// call sends a request to a replica and decodes a 2xx answer into out.
func call(t *testing.T, base, method, path, token string, body, out any) int {
	t.Helper()
	var rd io.Reader
	if body != nil {
		data, _ := json.Marshal(body)
		rd = bytes.NewReader(data)
	}
	req, _ := http.NewRequest(method, base+path, rd)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 == 2 && out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			t.Fatalf("%s %s: %v: %s", method, path, err, data)
		}
	}
	return resp.StatusCode
}

// beatUntil heartbeats as node id until the orders satisfy ok.
func beatUntil(t *testing.T, base, id string, b coordapi.NodeBeat, ok func(coordapi.NodeOrders) bool) coordapi.NodeOrders {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var o coordapi.NodeOrders
		code := call(t, base, "POST", "/v1/nodes/"+id+"/heartbeat", testTokens.Node, b, &o)
		if code == 200 && ok(o) {
			return o
		}
		if time.Now().After(deadline) {
			t.Fatalf("heartbeat of %s: %d %+v", id, code, o)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestReplicaFailover: the leader dies (kill -9); the other replica takes
// over within the TTL, the node keeps its shards under the same tokens,
// and what is not a lease (Shardman, glance, drains) carries over.
func TestReplicaFailover(t *testing.T) {
	srv := startNATS(t)
	ra, rb := startReplica(t, srv, "ra", nil), startReplica(t, srv, "rb", nil)
	lead := waitLeader(t, 5*time.Second, ra, rb)
	other := map[*testReplica]*testReplica{ra: rb, rb: ra}[lead]
	epoch, _ := liveNode(t, srv, "n1")
	o := beatUntil(t, lead.url, "n1", coordapi.NodeBeat{Epoch: epoch}, func(o coordapi.NodeOrders) bool { return len(o.Assign) == 4 })
	if o.Liveness != coordapi.LivenessKV {
		t.Errorf("orders say liveness %q, want kv", o.Liveness)
	}
	held := o.Assign
	for _, h := range held {
		if h.Token < uint64(time.Now().Add(-time.Hour).UnixMicro()) {
			t.Errorf("token %d is not above the token base", h.Token)
		}
	}
	// Not leases, but they must survive too.
	if code := call(t, lead.url, "POST", "/api/status/c1/3/3", testTokens.Worker, nil, nil); code != 204 {
		t.Fatalf("glance: %d", code)
	}
	if code := call(t, lead.url, "POST", "/v1/commands", testTokens.Admin, coordapi.CommandRequest{Target: "n9", Command: coordapi.Command{Type: coordapi.CmdDrain}}, nil); code != 200 {
		t.Fatalf("drain: %d", code)
	}
	lead.c.save(t.Context(), true)

	// A follower answers reads from the leader's view and forwards writes.
	var st coordapi.Status
	deadline := time.Now().Add(5 * time.Second)
	for len(st.Leases) != 4 && time.Now().Before(deadline) {
		call(t, other.url, "GET", "/v1/status", testTokens.Status, nil, &st)
		time.Sleep(50 * time.Millisecond)
	}
	if len(st.Leases) != 4 || st.Replica == nil || st.Replica.Role != coordapi.RoleFollower || st.Leader == nil || st.Leader.ID != lead.c.Replica().ID {
		t.Fatalf("follower's status: replica %+v leader %+v, %d leases", st.Replica, st.Leader, len(st.Leases))
	}
	var fo coordapi.NodeOrders
	if code := call(t, other.url, "POST", "/v1/nodes/n1/heartbeat", testTokens.Node, coordapi.NodeBeat{Epoch: epoch, GenBeat: coordapi.GenBeat{Shards: held}}, &fo); code != 200 || len(fo.Renewed) != 4 {
		t.Fatalf("a heartbeat through the follower: %d %+v", code, fo)
	}
	if code := call(t, other.url, "GET", "/v1/status", "wrong", nil, nil); code != 401 {
		t.Errorf("a bad token through the follower: %d, want 401", code)
	}

	killed := time.Now()
	lead.crash()
	waitLeader(t, 3*replicaTTL, other)
	took := time.Since(killed)
	if took > replicaTTL+time.Second {
		t.Errorf("takeover %v after the leader died, want within the TTL (%v) and a second", took, replicaTTL)
	}
	o = beatUntil(t, other.url, "n1", coordapi.NodeBeat{Epoch: epoch, GenBeat: coordapi.GenBeat{Shards: held}}, func(o coordapi.NodeOrders) bool { return true })
	if len(o.Revoke) != 0 || len(o.Assign) != 0 || fmt.Sprint(o.Renewed) != fmt.Sprint(held) {
		t.Errorf("after the failover: renewed %v assign %v revoke %v; want the same shards and tokens %v", o.Renewed, o.Assign, o.Revoke, held)
	}
	st = other.c.Status()
	if len(st.Glance) != 1 || st.Glance[0].StateName != "online" {
		t.Errorf("glance after the failover: %+v", st.Glance)
	}
	other.c.mu.Lock()
	drained := other.c.fleet.drained["n9"]
	other.c.mu.Unlock()
	if !drained {
		t.Error("the drain of n9 was lost in the failover")
	}
}

// TestReplicaNeverGrantsTwice: a shard whose holder's liveness record
// lives is never leased to another node, whichever replica leads; once
// the record expires, the shards go to another node under greater tokens.
func TestReplicaNeverGrantsTwice(t *testing.T) {
	srv := startNATS(t)
	ra := startReplica(t, srv, "ra", nil)
	waitLeader(t, 5*time.Second, ra)
	e1, stop1 := liveNode(t, srv, "n1")
	o := beatUntil(t, ra.url, "n1", coordapi.NodeBeat{Epoch: e1}, func(o coordapi.NodeOrders) bool { return len(o.Assign) == 4 })
	held := o.Assign
	// n1 stops heartbeating (it lost the coordinators) but stays live.
	rb := startReplica(t, srv, "rb", nil)
	ra.crash()
	waitLeader(t, 3*replicaTTL, rb)
	e2, _ := liveNode(t, srv, "n2")
	for range 10 {
		var o2 coordapi.NodeOrders
		if code := call(t, rb.url, "POST", "/v1/nodes/n2/heartbeat", testTokens.Node, coordapi.NodeBeat{Epoch: e2}, &o2); code != 200 || len(o2.Assign) != 0 {
			t.Fatalf("n2 got %v (%d) while n1's liveness lives", o2.Assign, code)
		}
		time.Sleep(100 * time.Millisecond)
	}
	stop1() // n1 dies: its record expires a TTL later
	o = beatUntil(t, rb.url, "n2", coordapi.NodeBeat{Epoch: e2}, func(o coordapi.NodeOrders) bool { return len(o.Assign) == 4 })
	for i, h := range o.Assign {
		if h.Token <= held[i].Token {
			t.Errorf("shard %d: token %d after n1's %d, want greater", h.Shard, h.Token, held[i].Token)
		}
	}
}

// TestReplicaIdentifyAcrossFailover: the session starts spent carry over,
// and the new leader grants no IDENTIFY of a bucket less than a window
// after the old one's last.
func TestReplicaIdentifyAcrossFailover(t *testing.T) {
	srv := startNATS(t)
	budget := func(c *Config) {
		c.SessionStarts, c.SessionStartTotal, c.SessionReset = 100, 1000, time.Now().Add(time.Hour)
	}
	ra, rb := startReplica(t, srv, "ra", budget), startReplica(t, srv, "rb", budget)
	lead := waitLeader(t, 5*time.Second, ra, rb)
	other := map[*testReplica]*testReplica{ra: rb, rb: ra}[lead]
	for _, shard := range []int{0, 1, 3} {
		if code := call(t, lead.url, "POST", fmt.Sprintf("/v1/identify/%d", shard), testTokens.Node, nil, nil); code != 200 {
			t.Fatalf("identify %d: %d", shard, code)
		}
		call(t, lead.url, "POST", fmt.Sprintf("/v1/identify/%d/ready", shard), testTokens.Node, nil, nil)
	}
	last := time.Now()
	lead.crash()
	waitLeader(t, 3*replicaTTL, other)
	if got := other.c.Queue().Remaining; got != 97 {
		t.Errorf("the new leader has %d session starts left, want 97 (100 less the 3 granted)", got)
	}
	if code := call(t, other.url, "POST", "/v1/identify/2", testTokens.Node, nil, nil); code != 200 {
		t.Fatalf("identify after the failover: %d", code)
	}
	if gap := time.Since(last); gap < 300*time.Millisecond {
		t.Errorf("the new leader granted bucket 0 %v after the old one's last grant, want at least the window", gap)
	}
}

// TestReplicaLegacyState: a control plane that starts from what an older
// coordinator saved keeps its resharded count and issues tokens above
// every token that coordinator issued.
func TestReplicaLegacyState(t *testing.T) {
	srv := startNATS(t)
	ctx := t.Context()
	const old = 1 << 60
	legacy := fmt.Sprintf(`{"version":1,"shard_count":6,"resharded":true,"next_token":%d}`, uint64(old))
	if err := putLegacy(ctx, srv, legacy); err != nil {
		t.Fatal(err)
	}
	ra := startReplica(t, srv, "ra", nil)
	waitLeader(t, 5*time.Second, ra)
	if got := ra.c.shardCount(); got != 6 {
		t.Errorf("shard count %d, want the resharded 6", got)
	}
	e, _ := liveNode(t, srv, "n1")
	o := beatUntil(t, ra.url, "n1", coordapi.NodeBeat{Epoch: e}, func(o coordapi.NodeOrders) bool { return len(o.Assign) == 6 })
	for _, h := range o.Assign {
		if h.Token <= old {
			t.Errorf("token %d, want above the older coordinator's %d", h.Token, uint64(old))
		}
	}
}

// putLegacy writes state where an older coordinator kept it.
func putLegacy(ctx context.Context, srv *natsbroker.Broker, state string) error {
	kv, err := srv.JetStream().KeyValue(ctx, natsbroker.DefaultSessionBucket)
	if err != nil {
		return err
	}
	_, err = kv.Put(ctx, "coordinator", []byte(state))
	return err
}

// TestReplicaNoLeaderAnswers503: with no leader (its record held by a
// replica that is gone), a follower answers writes 503 with Retry-After,
// never forwards twice, and closes twilight's requests unanswered.
func TestReplicaNoLeaderAnswers503(t *testing.T) {
	srv := startNATS(t)
	ra := startReplica(t, srv, "ra", nil)
	waitLeader(t, 5*time.Second, ra)
	rb := startReplica(t, srv, "rb", nil)
	ra.crash() // its record lives until the TTL
	req, _ := http.NewRequest("POST", rb.url+"/v1/identify/0", nil)
	req.Header.Set("Authorization", "Bearer "+testTokens.Node)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" || !strings.Contains(string(body), "unavailable") {
		t.Errorf("a write with the leader gone: %d %q %s, want 503 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"), body)
	}
	tw, _ := http.NewRequest("GET", rb.url+"/queue?shard=0", nil)
	tw.Header.Set("Authorization", "Bearer "+testTokens.Worker)
	if resp, err := http.DefaultClient.Do(tw); err == nil {
		resp.Body.Close()
		t.Errorf("twilight's queue answered %d with no leader; it must close the connection unanswered", resp.StatusCode)
	}
}

// TestReplicaKeepsReshard: a leader that dies during a reshard hands it on:
// the same phase and modes, and the new generation's leases, which the
// node keeps under the same tokens.
func TestReplicaKeepsReshard(t *testing.T) {
	srv := startNATS(t)
	two := func(c *Config) { c.ShardCount, c.MaxConcurrency = 2, 1 }
	ra, rb := startReplica(t, srv, "ra", two), startReplica(t, srv, "rb", two)
	lead := waitLeader(t, 5*time.Second, ra, rb)
	other := map[*testReplica]*testReplica{ra: rb, rb: ra}[lead]
	e, _ := liveNode(t, srv, "n")
	cur := beatUntil(t, lead.url, "n", coordapi.NodeBeat{Epoch: e}, func(o coordapi.NodeOrders) bool { return len(o.Assign) == 2 }).Assign
	if code := call(t, lead.url, "POST", "/v1/reshard", testTokens.Admin, coordapi.ReshardRequest{To: 4}, nil); code != 202 {
		t.Fatalf("reshard: %d", code)
	}
	o := beatUntil(t, lead.url, "n", coordapi.NodeBeat{Epoch: e, GenBeat: coordapi.GenBeat{ShardCount: 2, Shards: cur}},
		func(o coordapi.NodeOrders) bool { return o.Next != nil && len(o.Next.Assign) == 4 })
	next := o.Next.Assign
	lead.c.save(t.Context(), true)
	lead.crash()
	waitLeader(t, 3*replicaTTL, other)
	r := other.c.CurrentReshard()
	if !r.Running() || r.Phase != coordapi.PhaseStarting || r.From != 2 || r.To != 4 {
		t.Fatalf("the reshard after the failover: %+v", r)
	}
	o = beatUntil(t, other.url, "n", coordapi.NodeBeat{Epoch: e, GenBeat: coordapi.GenBeat{ShardCount: 2, Shards: cur}, Next: &coordapi.GenBeat{ShardCount: 4, Shards: next}},
		func(o coordapi.NodeOrders) bool { return true })
	if o.Next == nil || o.Next.Mode != coordapi.ModeHold || fmt.Sprint(o.Next.Renewed) != fmt.Sprint(next) || len(o.Next.Revoke) != 0 || len(o.Next.Assign) != 0 {
		t.Fatalf("the new generation after the failover: %+v; want %v renewed", o.Next, next)
	}
}

// TestReplicaFollowerBatchesBeats: Shardman workers beat through a
// follower. The leader records every beat, batched or not; a session the
// leader drops hears 404 from the follower at its next beat but one.
func TestReplicaFollowerBatchesBeats(t *testing.T) {
	srv := startNATS(t)
	ra := startReplica(t, srv, "ra", nil)
	waitLeader(t, 5*time.Second, ra)
	rb := startReplica(t, srv, "rb", nil)
	if rb.c.Leading() {
		t.Fatal("the second replica leads")
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if _, ok := rb.c.rep.leaderURL(); ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the follower does not see the leader")
		}
	}
	shardman := func(method, path, body string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(method, rb.url+path, strings.NewReader(body))
		req.Header.Set("Authorization", testTokens.Worker)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		data, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(data)
	}
	code, body := shardman("GET", "/connect", "")
	var sess struct {
		SessionID string `json:"session_id"`
	}
	if code != 200 || json.Unmarshal([]byte(body), &sess) != nil {
		t.Fatalf("GET /connect through the follower: %d %s", code, body)
	}
	leaderSaw := func() (guilds int, ok bool) {
		ra.c.mu.Lock()
		defer ra.c.mu.Unlock()
		s, ok := ra.c.shardman.byID[sess.SessionID]
		if !ok || s.guildCount == nil {
			return 0, ok
		}
		return *s.guildCount, true
	}
	beat := func(guilds int) int {
		code, body := shardman("POST", "/beat", fmt.Sprintf(`{"session_id":%q,"guild_count":%d}`, sess.SessionID, guilds))
		if code != 204 && code != 404 {
			t.Fatalf("beat: %d %s", code, body)
		}
		return code
	}
	waitSaw := func(guilds int) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			if g, _ := leaderSaw(); g == guilds {
				return
			}
			if time.Now().After(deadline) {
				g, ok := leaderSaw()
				t.Fatalf("the leader has guild_count %d (session known: %v), want %d", g, ok, guilds)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	if beat(1) != 204 {
		t.Fatal("the first beat was refused")
	}
	waitSaw(1)
	for g := 2; g <= 5; g++ {
		if beat(g) != 204 {
			t.Fatalf("beat %d was refused", g)
		}
	}
	waitSaw(5)
	rb.c.rep.beatMu.Lock()
	batched := len(rb.c.rep.beats.known) == 1
	rb.c.rep.beatMu.Unlock()
	if !batched {
		t.Error("the follower does not batch the session's beats")
	}

	// The leader drops the session (as when it expires).
	ra.c.mu.Lock()
	delete(ra.c.shardman.byID, sess.SessionID)
	ra.c.mu.Unlock()
	deadline := time.Now().Add(5 * time.Second)
	for beat(6) != 404 {
		if time.Now().After(deadline) {
			t.Fatal("beats of a session the leader dropped are still answered 204")
		}
		time.Sleep(50 * time.Millisecond)
	}
}
