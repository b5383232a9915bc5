package coord

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/coord/coordapi"
)

// memState is a StateStore in memory.
type memState struct {
	mu   sync.Mutex
	data []byte
}

func (m *memState) LoadCoordinator(context.Context) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.data, nil
}

func (m *memState) SaveCoordinator(_ context.Context, b []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.data = append([]byte(nil), b...)
	return nil
}

// TestStateSurvivesRestart: a restarted coordinator keeps the nodes'
// leases and tokens, and never issues a token twice.
func TestStateSurvivesRestart(t *testing.T) {
	store := &memState{}
	mk := func() *Coordinator {
		c := newTest(t, func(c *Config) { c.ShardCount = 4; c.State = store })
		if err := c.Load(t.Context()); err != nil {
			t.Fatal(err)
		}
		return c
	}
	beat := func(c *Coordinator, node, body string) coordapi.NodeOrders {
		t.Helper()
		code, _, out := do(c, "POST", "/v1/nodes/"+node+"/heartbeat", bearer(testTokens.Node), "application/json", body)
		var o coordapi.NodeOrders
		if err := json.Unmarshal([]byte(out), &o); code != 200 || err != nil {
			t.Fatalf("heartbeat: %d %s", code, out)
		}
		return o
	}
	c1 := mk()
	o := beat(c1, "a", `{"shards":[]}`)
	if len(o.Assign) != 4 {
		t.Fatalf("first heartbeat assigned %v", o.Assign)
	}
	c1.save(t.Context(), false)

	c2 := mk()
	held, _ := json.Marshal(coordapi.NodeBeat{GenBeat: coordapi.GenBeat{Shards: o.Assign[:2]}}) // a gave two back meanwhile
	o2 := beat(c2, "a", strings.Replace(string(held), `"released":null`, `"released":[]`, 1))
	if len(o2.Revoke) != 0 || len(o2.Renewed) != 2 || o2.Renewed[0] != o.Assign[0] || o2.Renewed[1] != o.Assign[1] {
		t.Errorf("after the restart: renewed %v revoke %v; want the same two tokens, nothing revoked", o2.Renewed, o2.Revoke)
	}
	// Shards 2 and 3 are still leased to a until it says otherwise or the
	// lease expires; a new node gets nothing yet.
	if o3 := beat(c2, "b", `{}`); len(o3.Assign) != 0 {
		t.Errorf("b got %v while a's leases live", o3.Assign)
	}
	rel, _ := json.Marshal(coordapi.NodeBeat{GenBeat: coordapi.GenBeat{Shards: o.Assign[:2], Released: o.Assign[2:]}})
	beat(c2, "a", string(rel))
	o4 := beat(c2, "b", `{}`)
	if len(o4.Assign) != 2 {
		t.Fatalf("b after a released two: %v", o4.Assign)
	}
	for _, h := range o4.Assign {
		if h.Token <= 4 {
			t.Errorf("new lease token %d was issued before the restart", h.Token)
		}
	}
}

func TestStateOtherShardCount(t *testing.T) {
	store := &memState{data: []byte(`{"version":1,"shard_count":8,"next_token":10,"leases":[{"Shard":5,"Holder":"a","Token":9,"Granted":"2026-01-01T00:00:00Z","Expires":"2999-01-01T00:00:00Z"}]}`)}
	c := newTest(t, func(c *Config) { c.ShardCount = 4; c.State = store })
	if err := c.Load(t.Context()); err != nil {
		t.Fatal(err)
	}
	if n := len(c.Status().Leases); n != 0 {
		t.Errorf("%d leases restored from another shard count", n)
	}
	if next := c.fleet.leases.NextToken(); next != 10 {
		t.Errorf("next token %d, want 10 kept", next)
	}
	bad := newTest(t, func(c *Config) { c.State = &memState{data: []byte(`{"version":99}`)} })
	if err := bad.Load(t.Context()); err == nil || !strings.Contains(err.Error(), "version 99") {
		t.Errorf("unknown version: %v", err)
	}
}

// TestStateKeepsShardmanAndGlance: Shardman sessions and glance states
// survive a coordinator restart; a worker beats on with its session ID.
func TestStateKeepsShardmanAndGlance(t *testing.T) {
	store := &memState{}
	c1 := newTest(t, func(c *Config) { c.State = store })
	_, _, body := do(c1, "GET", "/connect", testTokens.Worker, "", "")
	var a struct {
		SessionID string `json:"session_id"`
	}
	json.Unmarshal([]byte(body), &a)
	do(c1, "POST", "/beat", testTokens.Worker, "application/json", `{"session_id":"`+a.SessionID+`","guild_count":77,"latency":0.2}`)
	do(c1, "POST", "/api/status/main/3/2", bearer(testTokens.Worker), "", "")
	c1.save(t.Context(), false)

	c2 := newTest(t, func(c *Config) { c.State = store })
	if err := c2.Load(t.Context()); err != nil {
		t.Fatal(err)
	}
	if code, _, body := do(c2, "POST", "/beat", testTokens.Worker, "application/json", `{"session_id":"`+a.SessionID+`","guild_count":78,"latency":0.2}`); code != 204 {
		t.Errorf("beat after the restart: %d %s, want 204", code, body)
	}
	st := c2.Status()
	if len(st.Shardman) != 1 || *st.Shardman[0].GuildCount != 78 || len(st.Glance) != 1 || st.Glance[0].StateName != "offline" {
		t.Errorf("restored: shardman %+v glance %+v", st.Shardman, st.Glance)
	}
	if code, _, _ := do(c2, "GET", "/connect", testTokens.Worker, "", ""); code != 200 {
		t.Errorf("connect: %d", code) // shard 1 is free; shard 0 is the restored worker's
	}
}

// TestTokensGrowWithoutState: a coordinator without saved state seeds its
// fencing tokens from the clock, so a restarted one never issues a token
// at or below one it issued before, which would fence the new owner out
// of the session store.
func TestTokensGrowWithoutState(t *testing.T) {
	first := newTest(t, func(c *Config) { c.FirstToken = 0 })
	f1 := first.fleet.leases.NextToken()
	if _, err := first.fleet.leases.Acquire(time.Now(), 3, "a"); err != nil {
		t.Fatal(err)
	}
	issued := first.fleet.leases.NextToken() - 1
	time.Sleep(time.Millisecond)
	second := newTest(t, func(c *Config) { c.FirstToken = 0 })
	if f2 := second.fleet.leases.NextToken(); f2 <= issued || f2 <= f1 {
		t.Errorf("restarted coordinator's first token %d, want above %d issued before", f2, issued)
	}
	if f1 < uint64(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixMicro()) {
		t.Errorf("first token %d is not seeded from the clock", f1)
	}
}

// TestStateKeepsReshard: a coordinator restarted during a reshard carries
// it on: the same phase, both modes, and the new generation's leases,
// which the node keeps under the same tokens.
func TestStateKeepsReshard(t *testing.T) {
	store := &memState{}
	mk := func() *Coordinator {
		c := newTest(t, func(c *Config) { c.ShardCount, c.MaxConcurrency, c.State = 2, 1, store })
		if err := c.Load(t.Context()); err != nil {
			t.Fatal(err)
		}
		return c
	}
	now := time.Now()
	a := mk()
	a.mu.Lock()
	o, err := a.fleet.beat(now, "n", coordapi.NodeBeat{})
	a.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	cur := o.Assign
	if _, err := a.StartReshard(now, 4, "manual"); err != nil {
		t.Fatal(err)
	}
	a.mu.Lock()
	o, err = a.fleet.beat(now, "n", coordapi.NodeBeat{GenBeat: coordapi.GenBeat{ShardCount: 2, Shards: cur}})
	a.mu.Unlock()
	if err != nil || o.Next == nil || len(o.Next.Assign) != 4 {
		t.Fatalf("new generation orders: %+v, %v", o.Next, err)
	}
	next := o.Next.Assign
	a.save(t.Context(), true)

	b := mk()
	r := b.CurrentReshard()
	if !r.Running() || r.Phase != coordapi.PhaseStarting || r.From != 2 || r.To != 4 {
		t.Fatalf("restored reshard: %+v", r)
	}
	b.mu.Lock()
	o, err = b.fleet.beat(now.Add(time.Second), "n", coordapi.NodeBeat{GenBeat: coordapi.GenBeat{ShardCount: 2, Shards: cur}, Next: &coordapi.GenBeat{ShardCount: 4, Shards: next}})
	b.mu.Unlock()
	if err != nil || o.Next == nil || o.Next.Mode != coordapi.ModeHold || len(o.Next.Renewed) != 4 || len(o.Next.Revoke) != 0 || len(o.Next.Assign) != 0 {
		t.Fatalf("after the restart: %+v, %v", o.Next, err)
	}
	for i, h := range o.Next.Renewed {
		if h != next[i] {
			t.Errorf("new shard %d: token %d after the restart, %d before", h.Shard, h.Token, next[i].Token)
		}
	}
}

// TestStateReshardedCount: a count a reshard set wins over the configured
// one on the next start; a saved count that no reshard set does not.
func TestStateReshardedCount(t *testing.T) {
	for _, tc := range []struct {
		saved string
		want  int
	}{
		{`{"version":1,"shard_count":4,"resharded":true,"next_token":5,"leases":[]}`, 4},
		{`{"version":1,"shard_count":4,"next_token":5,"leases":[]}`, 2},
	} {
		store := &memState{data: []byte(tc.saved)}
		c := newTest(t, func(c *Config) { c.ShardCount, c.MaxConcurrency, c.State = 2, 1, store })
		if err := c.Load(t.Context()); err != nil {
			t.Fatal(err)
		}
		if got := c.Status().ShardCount; got != tc.want {
			t.Errorf("saved %s: shard count %d, want %d", tc.saved, got, tc.want)
		}
		if code, _, _ := do(c, "GET", "/v1/shards/3", bearer(testTokens.Status), "", ""); (code == 200) != (tc.want == 4) {
			t.Errorf("saved %s: GET /v1/shards/3 = %d", tc.saved, code)
		}
	}
}
