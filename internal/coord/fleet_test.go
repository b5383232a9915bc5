package coord

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/coord/coordapi"
	"github.com/google/go-cmp/cmp"
)

// TestFleetTranscript walks nodes through joining, a rebalance by
// release-then-assign, a node going silent, a stale holder coming back and
// a coordinator restart.
func TestFleetTranscript(t *testing.T) {
	t0 := time.Unix(1000, 0)
	f, err := newFleet(4, 9*time.Second, false, 4, 1)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	beat := func(at time.Duration, id string, shards, released []coordapi.HeldShard) coordapi.NodeOrders {
		o, err := f.beat(t0.Add(at), id, coordapi.NodeBeat{GenBeat: coordapi.GenBeat{Shards: shards, Released: released}})
		if err != nil {
			t.Fatalf("beat %s at %v: %v", id, at, err)
		}
		got = append(got, fmt.Sprintf("%v %s: assign %v renewed %v revoke %v", at, id, o.Assign, o.Renewed, o.Revoke))
		return o
	}
	h := func(pairs ...uint64) (out []coordapi.HeldShard) {
		for i := 0; i < len(pairs); i += 2 {
			out = append(out, coordapi.HeldShard{Shard: int(pairs[i]), Token: pairs[i+1]})
		}
		return out
	}
	beat(0, "a", nil, nil)                                   // a alone: every shard
	beat(time.Second, "b", nil, nil)                         // b joins: nothing until a lets go
	beat(3*time.Second, "a", h(0, 1, 1, 2, 2, 3, 3, 4), nil) // a is told to stop two
	beat(4*time.Second, "b", nil, nil)                       // still held by a
	beat(5*time.Second, "a", h(0, 1, 1, 2), h(2, 3, 3, 4))   // a released them
	beat(6*time.Second, "b", nil, nil)                       // now b gets them
	// a goes silent; its leases expire 9 s after its last renewal (5 s).
	beat(13*time.Second, "b", h(2, 5, 3, 6), nil)
	beat(14*time.Second, "b", h(2, 5, 3, 6), nil)
	// a comes back still running shard 0 under its old token: stop it.
	beat(15*time.Second, "a", h(0, 1), nil)
	want := []string{
		"0s a: assign [{0 1} {1 2} {2 3} {3 4}] renewed [] revoke []",
		"1s b: assign [] renewed [] revoke []",
		"3s a: assign [] renewed [{0 1} {1 2} {2 3} {3 4}] revoke [2 3]",
		"4s b: assign [] renewed [] revoke []",
		"5s a: assign [] renewed [{0 1} {1 2}] revoke []",
		"6s b: assign [{2 5} {3 6}] renewed [] revoke []",
		"13s b: assign [] renewed [{2 5} {3 6}] revoke []",
		"14s b: assign [{0 7} {1 8}] renewed [{2 5} {3 6}] revoke []",
		"15s a: assign [] renewed [] revoke [0]",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("transcript (-want +got):\n%s", diff)
	}
	nodes, leases := f.status(t0.Add(15 * time.Second))
	if len(nodes) != 2 || len(leases) != 4 || nodes[1].ID != "b" || len(nodes[1].Shards) != 4 {
		t.Errorf("status: nodes %+v leases %+v", nodes, leases)
	}

	// A restarted coordinator adopts what nodes report, under new tokens.
	f2, _ := newFleet(4, 9*time.Second, false, 1, 1)
	o, err := f2.beat(t0, "b", coordapi.NodeBeat{GenBeat: coordapi.GenBeat{Shards: h(0, 7, 1, 8, 2, 5, 3, 6)}})
	if err != nil || len(o.Renewed) != 4 || len(o.Revoke) != 0 || len(o.Assign) != 0 {
		t.Errorf("after a coordinator restart: %+v %v", o, err)
	}
	// Leaving frees everything at once.
	if ls := f2.leave("b"); len(ls) != 4 {
		t.Errorf("leave released %d leases, want 4", len(ls))
	}
	if o, _ := f2.beat(t0.Add(time.Second), "c", coordapi.NodeBeat{}); len(o.Assign) != 4 {
		t.Errorf("after b left, c got %v, want all 4", o.Assign)
	}
}

func TestFleetBadBeats(t *testing.T) {
	f, _ := newFleet(4, 9*time.Second, false, 1, 1)
	for _, tc := range []struct {
		id   string
		b    coordapi.NodeBeat
		want string
	}{
		{"", coordapi.NodeBeat{}, "node ID"},
		{strings.Repeat("x", 129), coordapi.NodeBeat{}, "node ID"},
		{"a", coordapi.NodeBeat{Capacity: -1}, "negative"},
		{"a", coordapi.NodeBeat{GenBeat: coordapi.GenBeat{Shards: []coordapi.HeldShard{{Shard: 4, Token: 1}}}}, "out of range"},
		{"a", coordapi.NodeBeat{GenBeat: coordapi.GenBeat{Released: []coordapi.HeldShard{{Shard: -1, Token: 1}}}}, "out of range"},
	} {
		if _, err := f.beat(time.Unix(0, 0), tc.id, tc.b); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("beat(%q, %+v) = %v, want %q", tc.id, tc.b, err, tc.want)
		}
	}
}

// TestFleetDraining: a draining node's shards move once it releases them;
// capacity caps what a node gets.
func TestFleetDraining(t *testing.T) {
	t0 := time.Unix(0, 0)
	f, _ := newFleet(4, 9*time.Second, false, 4, 1)
	o, _ := f.beat(t0, "a", coordapi.NodeBeat{Capacity: 3})
	if len(o.Assign) != 3 {
		t.Fatalf("capacity 3: assigned %v", o.Assign)
	}
	o, _ = f.beat(t0, "b", coordapi.NodeBeat{})
	if len(o.Assign) != 1 {
		t.Fatalf("b: assigned %v, want the one left", o.Assign)
	}
	o, _ = f.beat(t0.Add(time.Second), "a", coordapi.NodeBeat{Draining: true, GenBeat: coordapi.GenBeat{Shards: o2held(f, "a")}})
	if len(o.Revoke) != 3 {
		t.Errorf("draining a: revoke %v, want all 3", o.Revoke)
	}
}

// TestFleetDrainOneByOne: a drained node's shards hand off with at most
// one shard of each identify bucket in flight; a handoff ends when the
// next node reports the shard ready (or after three TTLs). The drain mark
// ends when the node leaves, so its successor takes shards again.
func TestFleetDrainOneByOne(t *testing.T) {
	t0 := time.Unix(0, 0)
	ttl := 9 * time.Second
	f, _ := newFleet(6, ttl, false, 2, 1) // buckets {0,2,4} and {1,3,5}
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	f.beat(at(0), "a", coordapi.NodeBeat{})
	if err := f.setDrain("a", true); err != nil {
		t.Fatal(err)
	}
	ready := func(shards ...int) (out []coordapi.ShardReport) {
		for _, s := range shards {
			out = append(out, coordapi.ShardReport{Shard: s, State: "ready"})
		}
		return out
	}
	var bHeld []int
	bBeat := func(sec int, ready []coordapi.ShardReport) {
		t.Helper()
		o, err := f.beat(at(sec), "b", coordapi.NodeBeat{GenBeat: coordapi.GenBeat{Shards: o2held(f, "b"), Reports: ready}})
		if err != nil {
			t.Fatal(err)
		}
		for _, h := range o.Assign {
			bHeld = append(bHeld, h.Shard)
		}
	}
	aBeat := func(sec int, released []int) (revoke []int, drained bool) {
		t.Helper()
		var rel []coordapi.HeldShard
		var held []coordapi.HeldShard
		for _, l := range f.leases.Held("a") {
			if slices.Contains(released, l.Shard) {
				rel = append(rel, coordapi.HeldShard{Shard: l.Shard, Token: l.Token})
			} else {
				held = append(held, coordapi.HeldShard{Shard: l.Shard, Token: l.Token})
			}
		}
		o, err := f.beat(at(sec), "a", coordapi.NodeBeat{GenBeat: coordapi.GenBeat{Shards: held, Released: rel}})
		if err != nil {
			t.Fatal(err)
		}
		return o.Revoke, o.Drained
	}
	bBeat(1, nil)
	rv, drained := aBeat(2, nil)
	if !drained || !slices.Equal(rv, []int{0, 1}) {
		t.Fatalf("first drain beat: revoke %v drained %v, want [0 1] (one per bucket) and true", rv, drained)
	}
	if rv, _ := aBeat(3, []int{0, 1}); len(rv) != 0 {
		t.Fatalf("with 0 and 1 in flight: revoke %v, want none", rv)
	}
	bBeat(4, nil)
	if !slices.Equal(bHeld, []int{0, 1}) {
		t.Fatalf("b holds %v, want [0 1]", bHeld)
	}
	if rv, _ := aBeat(5, nil); len(rv) != 0 {
		t.Fatalf("before b reports them ready: revoke %v, want none", rv)
	}
	bBeat(6, ready(0)) // bucket 0 is free again, bucket 1 is not
	if rv, _ := aBeat(7, nil); !slices.Equal(rv, []int{2}) {
		t.Fatalf("after shard 0 is ready on b: revoke %v, want [2]", rv)
	}
	if got := f.inFlight(); !slices.Equal(got, []int{1, 2}) {
		t.Errorf("in flight %v, want [1 2]", got)
	}
	aBeat(8, []int{2})
	bBeat(9, ready(0))
	bBeat(15, ready(0, 2))
	if rv, _ := aBeat(16, nil); !slices.Equal(rv, []int{4}) {
		t.Fatalf("after shard 2 is ready on b: revoke %v, want [4] (bucket 1 still has shard 1 in flight)", rv)
	}
	// Shard 1 is never reported ready: its handoff times out after 3 TTLs.
	for sec := 21; sec < 28; sec += 6 {
		bBeat(sec, ready(0, 2))
		if rv, _ := aBeat(sec+1, []int{4}); len(rv) != 0 {
			t.Fatalf("at %ds, with 1 and 4 in flight: revoke %v, want none", sec+1, rv)
		}
	}
	bBeat(33, ready(0, 2))
	if rv, _ := aBeat(34, nil); !slices.Equal(rv, []int{3}) {
		t.Errorf("after shard 1's handoff timed out: revoke %v, want [3]", rv)
	}
	f.leave("a")
	if o, _ := f.beat(at(60), "a", coordapi.NodeBeat{}); o.Drained {
		t.Errorf("a node that left and came back is still drained")
	}
}

func o2held(f *fleet, id string) (out []coordapi.HeldShard) {
	for _, l := range f.leases.Held(id) {
		out = append(out, coordapi.HeldShard{Shard: l.Shard, Token: l.Token})
	}
	return out
}

// TestShardmanAndNodesShareShards: a shard a Shardman worker holds is not
// assigned to a node, and one a node holds is not handed out by /connect.
func TestShardmanAndNodesShareShards(t *testing.T) {
	c := newTest(t, func(c *Config) { c.ShardCount = 2 })
	code, _, body := do(c, "GET", "/connect", testTokens.Worker, "", "")
	if code != 200 || !strings.Contains(body, `"shard_id":0`) {
		t.Fatalf("connect: %d %s", code, body)
	}
	code, _, body = do(c, "POST", "/v1/nodes/a/heartbeat", bearer(testTokens.Node), "application/json", `{"shards":[]}`)
	if code != 200 || !strings.Contains(body, `"assign":[{"shard":1,`) {
		t.Errorf("node heartbeat: %d %s, want only shard 1 assigned", code, body)
	}
	if code, _, body := do(c, "GET", "/connect", testTokens.Worker, "", ""); code != 401 {
		t.Errorf("connect with shard 1 leased to a node: %d %s, want 401 (none free)", code, body)
	}
}

func TestCommandValidation(t *testing.T) {
	c := newTest(t, nil)
	for _, tc := range []struct {
		token, body string
		want        int
		msg         string
	}{
		{bearer(testTokens.Node), `{"target":"a","type":"drain"}`, 403, "needs admin"},
		{bearer(testTokens.Admin), `{"type":"drain"}`, 400, "target"},
		{bearer(testTokens.Admin), `{"target":"a","type":"reboot"}`, 400, "want restart_shard"},
		{bearer(testTokens.Admin), `{"target":"a","type":"restart_shard"}`, 400, "needs a shard"},
		{bearer(testTokens.Admin), `{"target":"a","type":"restart_shard","shard":8}`, 400, "needs a shard below 8"},
		{bearer(testTokens.Admin), `{"target":"a","type":"config"}`, 400, "capacity"},
		{bearer(testTokens.Admin), `{"target":"a","type":"drain","code":"rm -rf"}`, 400, "unknown field"},
		{bearer(testTokens.Admin), `{"target":"a","type":"drain"}`, 200, `"delivered":[]`},
	} {
		code, _, body := do(c, "POST", "/v1/commands", tc.token, "application/json", tc.body)
		if code != tc.want || !strings.Contains(body, tc.msg) {
			t.Errorf("%s: %d %s, want %d with %q", tc.body, code, body, tc.want, tc.msg)
		}
	}
	// The drain holds in the coordinator even though node a was not
	// connected: its heartbeat shows it draining.
	do(c, "POST", "/v1/nodes/a/heartbeat", bearer(testTokens.Node), "application/json", `{}`)
	_, _, body := do(c, "GET", "/v1/nodes", bearer(testTokens.Status), "", "")
	if !strings.Contains(body, `"draining":true`) {
		t.Errorf("nodes after a drain: %s", body)
	}
}

// TestFleetNodeRestart: a node that comes back (same ID, before its
// leases expire) reporting none of its shards gets them again at once,
// under new tokens, instead of after the TTL.
func TestFleetNodeRestart(t *testing.T) {
	t0 := time.Unix(1000, 0)
	f, _ := newFleet(2, 9*time.Second, false, 1, 1)
	o, err := f.beat(t0, "a", coordapi.NodeBeat{})
	if err != nil || len(o.Assign) != 2 {
		t.Fatalf("first beat: %+v, %v", o, err)
	}
	o, err = f.beat(t0.Add(time.Second), "a", coordapi.NodeBeat{GenBeat: coordapi.GenBeat{Shards: o.Assign}})
	if err != nil || len(o.Renewed) != 2 || len(o.Assign) != 0 {
		t.Fatalf("renewal: %+v, %v", o, err)
	}
	// Restarted: reports nothing.
	o, err = f.beat(t0.Add(2*time.Second), "a", coordapi.NodeBeat{})
	if err != nil {
		t.Fatal(err)
	}
	if len(o.Assign) != 2 || o.Assign[0].Token <= 2 || o.Assign[1].Token <= 2 {
		t.Errorf("after a restart: assign %v, want both shards under new tokens", o.Assign)
	}
}

// inFlight returns the shards moving between live nodes now, in order.
func (f *fleet) inFlight() []int {
	out := make([]int, 0, len(f.handoffs))
	for s := range f.handoffs {
		out = append(out, s)
	}
	slices.Sort(out)
	return out
}
