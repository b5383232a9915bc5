package sim_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/discord"
	"github.com/gatehouse-dev/gatehouse/internal/discord/codec"
	"github.com/gatehouse-dev/gatehouse/internal/discord/sim"
)

// expectResumable resumes ss on a new connection and requires RESUMED.
func expectResumable(t *testing.T, ss *session) *conn {
	t.Helper()
	rc := ss.resume(t, ss.resumeURL(), ss.lastSeq.Load())
	f, _ := rc.waitFor("RESUMED", func(f *frame) bool { return f.T == "RESUMED" || f.Op == discord.OpInvalidSession })
	if f.T != "RESUMED" {
		t.Fatalf("RESUME got %v, want RESUMED (the session must survive)", f)
	}
	return rc
}

// TestFaultReconnect (HTTP): op 7 with d null; without delay the connection
// stays open.
func TestFaultReconnect(t *testing.T) {
	t.Parallel()
	s := startSim(t, baseConfig())
	ss := s.start(t, startOpts{})
	if n := s.fault(t, `{"kind":"reconnect"}`); n != 1 {
		t.Errorf("reconnect applied = %d, want 1", n)
	}
	f, _ := ss.waitOp(discord.OpReconnect)
	if string(f.Raw) != `{"t":null,"s":null,"op":7,"d":null}` {
		t.Errorf("RECONNECT = %s, want {\"t\":null,\"s\":null,\"op\":7,\"d\":null}", f.Raw)
	}
	ss.roundTrip()
}

// TestFaultReconnectThenClose (HTTP): with delay the server closes after op
// 7, and the session resumes.
func TestFaultReconnectThenClose(t *testing.T) {
	t.Parallel()
	s := startSim(t, baseConfig())
	ss := s.start(t, startOpts{})
	s.fault(t, `{"kind":"reconnect","delay":"200ms"}`)
	ss.waitOp(discord.OpReconnect)
	code, _ := ss.expectClose()
	if code == 1000 || code == 1001 {
		t.Errorf("close after op 7 with code %d, want one that keeps the session", code)
	}
	expectResumable(t, ss)
}

// TestFaultInvalidSession: op 9 with d = resumable; true keeps the session,
// false ends it. d:true through ApplyFault, d:false through HTTP.
func TestFaultInvalidSession(t *testing.T) {
	t.Parallel()
	for _, resumable := range []bool{true, false} {
		t.Run(map[bool]string{true: "resumable", false: "not resumable"}[resumable], func(t *testing.T) {
			t.Parallel()
			s := startSim(t, baseConfig())
			ss := s.start(t, startOpts{})
			if resumable {
				if n := s.applyFault(t, sim.Fault{Kind: "invalid_session", Resumable: true}); n != 1 {
					t.Errorf("applied = %d, want 1", n)
				}
			} else if n := s.fault(t, `{"kind":"invalid_session","resumable":false}`); n != 1 {
				t.Errorf("applied = %d, want 1", n)
			}
			f, _ := ss.waitOp(discord.OpInvalidSession)
			if want := map[bool]string{true: "true", false: "false"}[resumable]; string(f.D) != want {
				t.Fatalf("op 9 d = %s, want %s", f.D, want)
			}
			last := ss.lastSeq.Load()
			ss.disconnect()
			rc := ss.resume(t, ss.resumeURL(), last)
			g, _ := rc.waitFor("RESUMED or op 9", func(f *frame) bool { return f.T == "RESUMED" || f.Op == discord.OpInvalidSession })
			switch {
			case resumable && g.T != "RESUMED":
				t.Errorf("RESUME after op 9 d:true got %v, want RESUMED", g)
			case !resumable && (g.Op != discord.OpInvalidSession || string(g.D) != "false"):
				t.Errorf("RESUME after op 9 d:false got %v, want op 9 d:false (the session is gone)", g)
			}
		})
	}
}

// TestFaultClose (HTTP): a close frame with the given code; 4000 keeps the
// session.
func TestFaultClose(t *testing.T) {
	t.Parallel()
	s := startSim(t, baseConfig())
	ss := s.start(t, startOpts{})
	if n := s.fault(t, `{"kind":"close","code":4000}`); n != 1 {
		t.Errorf("applied = %d, want 1", n)
	}
	if code, _ := ss.expectClose(); code != 4000 {
		t.Fatalf("close code %d, want 4000", code)
	}
	expectResumable(t, ss)
}

// TestFaultZombie (ApplyFault): no ACKs and nothing else is sent while the
// socket stays open, until the fault is cleared with DELETE /sim/faults.
// What the server would send is made after the fault: ACKs, a heartbeat
// request and an outage's GUILD_DELETE.
func TestFaultZombie(t *testing.T) {
	t.Parallel()
	s := startSim(t, baseConfig())
	ss := s.start(t, startOpts{})
	if n := s.applyFault(t, sim.Fault{Kind: "zombie"}); n != 1 {
		t.Errorf("applied = %d, want 1", n)
	}
	ss.heartbeat()
	s.applyFault(t, sim.Fault{Kind: "request_heartbeat"})
	s.applyFault(t, sim.Fault{Kind: "guild_outage", Duration: sim.Duration(time.Hour)})
	ss.expectNothing(600*time.Millisecond, "any frame from a zombie connection", func(*frame) bool { return true })
	status, _, body := s.do(t, "DELETE", "/sim/faults", "", nil)
	if status != http.StatusOK && status != http.StatusNoContent {
		t.Fatalf("DELETE /sim/faults = %d %s, want 200 or 204", status, body)
	}
	ss.roundTrip()
}

// TestFaultDrop (HTTP): the TCP connection is cut without a close frame; the
// session resumes.
func TestFaultDrop(t *testing.T) {
	t.Parallel()
	s := startSim(t, baseConfig())
	ss := s.start(t, startOpts{})
	if n := s.fault(t, `{"kind":"drop"}`); n != 1 {
		t.Errorf("applied = %d, want 1", n)
	}
	if code, _ := ss.expectClose(); code != -1 {
		t.Fatalf("drop: connection ended with close code %d, want no close frame", code)
	}
	expectResumable(t, ss)
}

// TestFaultDelayAcks (ApplyFault): ACKs come late, dispatches do not wait.
func TestFaultDelayAcks(t *testing.T) {
	t.Parallel()
	cfg := baseConfig()
	cfg.EventRate = 50
	s := startSim(t, cfg)
	ss := s.start(t, startOpts{})
	const delay = 400 * time.Millisecond
	s.applyFault(t, sim.Fault{Kind: "delay_acks", Delay: sim.Duration(delay)})
	start := time.Now()
	ss.heartbeat()
	_, before := ss.waitOp(discord.OpHeartbeatACK)
	if el := time.Since(start); el < delay {
		t.Errorf("ACK after %v, want at least %v", el, delay)
	}
	events := 0
	for _, f := range before {
		if _, ok := eventOf(t, f); ok {
			events++
		}
	}
	if events == 0 {
		t.Errorf("no event arrived while the ACK was delayed %v at 50 events/s, want only ACKs delayed", delay)
	}
}

// TestFaultGuildOutage (HTTP): GUILD_DELETE unavailable:true for the given
// number of guilds per shard, then GUILD_CREATE for each after Duration.
func TestFaultGuildOutage(t *testing.T) {
	t.Parallel()
	cfg := baseConfig()
	cfg.MaxConcurrency = 2
	s := startSim(t, cfg)
	sessions := []*session{s.start(t, startOpts{shard: []int{0, 2}}), s.start(t, startOpts{shard: []int{1, 2}})}
	if n := s.fault(t, `{"kind":"guild_outage","guilds":2,"duration":"300ms"}`); n != 2 {
		t.Errorf("applied = %d, want 2", n)
	}
	for _, ss := range sessions {
		down := map[discord.Snowflake]bool{}
		for len(down) < 2 {
			f, _ := ss.waitFor("GUILD_DELETE", func(f *frame) bool { return f.T == "GUILD_DELETE" || f.T == "GUILD_CREATE" })
			if f.T == "GUILD_CREATE" {
				t.Fatalf("shard %d: GUILD_CREATE before both GUILD_DELETEs: %.200s", ss.shard, f.D)
			}
			var d struct {
				ID          discord.Snowflake `json:"id"`
				Unavailable bool              `json:"unavailable"`
			}
			json.Unmarshal(f.D, &d)
			if !d.Unavailable || !ss.guilds[d.ID] || down[d.ID] {
				t.Fatalf("shard %d: GUILD_DELETE %s, want unavailable:true for a new guild of this shard", ss.shard, f.D)
			}
			down[d.ID] = true
		}
		for len(down) > 0 {
			f, _ := ss.waitDispatch("GUILD_CREATE")
			id := guildCreateID(t, f)
			if !down[id] {
				t.Fatalf("shard %d: GUILD_CREATE for guild %v, want one of the unavailable guilds %v", ss.shard, id, down)
			}
			delete(down, id)
		}
	}
	// Defaults: one guild per shard.
	if n := s.applyFault(t, sim.Fault{Kind: "guild_outage", Duration: sim.Duration(200 * time.Millisecond)}); n != 2 {
		t.Errorf("applied = %d, want 2", n)
	}
	for _, ss := range sessions {
		_, before := ss.waitDispatch("GUILD_CREATE")
		deletes := 0
		for _, f := range before {
			if f.T == "GUILD_DELETE" {
				deletes++
			}
		}
		if deletes != 1 {
			t.Errorf("shard %d: guild_outage without guilds sent %d GUILD_DELETEs before the GUILD_CREATE, want 1", ss.shard, deletes)
		}
	}
}

// TestFaultSplitPayload (HTTP): the next zlib payload is split across two
// messages, the first not ending in 00 00 ff ff; the decoder joins them. Not
// applied to zstd or uncompressed connections.
func TestFaultSplitPayload(t *testing.T) {
	t.Parallel()
	cfg := baseConfig()
	cfg.MaxConcurrency = 3
	s := startSim(t, cfg)
	zl := s.start(t, startOpts{shard: []int{0, 3}, dial: dialOpts{comp: codec.ZlibStream}})
	zs := s.start(t, startOpts{shard: []int{1, 3}, dial: dialOpts{comp: codec.ZstdStream}})
	plain := s.start(t, startOpts{shard: []int{2, 3}})
	if n := s.fault(t, `{"kind":"split_payload"}`); n != 1 {
		t.Errorf("split_payload applied = %d with one zlib connection, want 1", n)
	}
	zl.heartbeat()
	f := zl.next()
	if len(f.Wire) < 2 {
		t.Fatalf("payload after split_payload (%v) arrived in %d message, want it split", f, len(f.Wire))
	}
	if bytes.HasSuffix(f.Wire[0], zlibSuffix) {
		t.Errorf("first part ends in 00 00 ff ff, want a part that does not")
	}
	if !bytes.HasSuffix(f.Wire[len(f.Wire)-1], zlibSuffix) {
		t.Errorf("last part does not end in 00 00 ff ff")
	}
	for _, ss := range []*session{zl, zs, plain} {
		for _, f := range ss.roundTrip() {
			if len(f.Wire) != 1 {
				t.Errorf("%s: later payload %v in %d messages, want 1", ss.url, f, len(f.Wire))
			}
		}
	}
	if n := s.applyFault(t, sim.Fault{Kind: "split_payload", Shards: []int{1, 2}}); n != 0 {
		t.Errorf("split_payload on zstd and uncompressed shards applied = %d, want 0", n)
	}
}

// TestFaultSilence (HTTP): one event type stops on one shard; other types
// continue there, the type continues on other shards, heartbeats are ACKed.
func TestFaultSilence(t *testing.T) {
	t.Parallel()
	cfg := baseConfig()
	cfg.EventRate = 300
	cfg.MaxConcurrency = 2
	s := startSim(t, cfg)
	quiet := s.start(t, startOpts{shard: []int{0, 2}})
	loud := s.start(t, startOpts{shard: []int{1, 2}})
	s.fault(t, `{"kind":"silence","event_type":"MESSAGE_CREATE","shards":[0]}`)
	quiet.roundTrip() // frames queued before the fault
	events, _ := quiet.collectEvents(100)
	for _, ev := range events {
		if ev.f.T == "MESSAGE_CREATE" {
			t.Fatalf("silenced shard 0 got MESSAGE_CREATE")
		}
	}
	quiet.roundTrip()
	loud.roundTrip()
	loud.waitDispatch("MESSAGE_CREATE")
}

// TestFaultSilenceUntilResume: a silence with until_resume covers the
// connection open when it was applied; after a RESUME the type flows again.
// With RecordDeliveries, the server's delivered set holds every event id a
// client received and none of the silenced ones.
func TestFaultSilenceUntilResume(t *testing.T) {
	t.Parallel()
	cfg := baseConfig()
	cfg.EventRate = 300
	cfg.RecordDeliveries = true
	cfg.EventTypes = []string{"MESSAGE_CREATE", "TYPING_START"}
	s := startSim(t, cfg)
	ss := s.start(t, startOpts{})
	s.applyFault(t, sim.Fault{Kind: "silence", EventType: "MESSAGE_CREATE", UntilResume: true})
	ss.roundTrip() // frames queued before the fault
	events, _ := ss.collectEvents(100)
	for _, ev := range events {
		if ev.f.T == "MESSAGE_CREATE" {
			t.Fatalf("silenced connection got MESSAGE_CREATE")
		}
	}
	before := s.srv.Stats().EventIDs
	rc := expectResumable(t, ss)
	ev, _ := rc.waitDispatch("MESSAGE_CREATE")
	got, _ := eventOf(t, ev)
	if got.id <= before {
		t.Errorf("first MESSAGE_CREATE after RESUME has id %d, want one generated after the silence (> %d)", got.id, before)
	}
	delivered := s.srv.Delivered()
	for _, e := range append(events, got) {
		if !delivered.Has(uint64(e.id)) {
			t.Errorf("event %d reached the client but is not in Delivered()", e.id)
		}
	}
	missing := 0
	for id := uint64(1); id <= uint64(before); id++ {
		if !delivered.Has(id) {
			missing++
		}
	}
	if missing == 0 {
		t.Errorf("every id up to %d is in Delivered(), want the silenced MESSAGE_CREATEs missing", before)
	}
}

// TestFaultLatency: every outbound frame is delayed; through ApplyFault and
// through HTTP with the delay as a number of milliseconds.
func TestFaultLatency(t *testing.T) {
	t.Parallel()
	const delay = 300 * time.Millisecond
	for _, viaHTTP := range []bool{false, true} {
		t.Run(map[bool]string{false: "ApplyFault", true: "HTTP millis"}[viaHTTP], func(t *testing.T) {
			t.Parallel()
			s := startSim(t, baseConfig())
			ss := s.start(t, startOpts{})
			if viaHTTP {
				s.fault(t, `{"kind":"latency","delay":300}`)
			} else {
				s.applyFault(t, sim.Fault{Kind: "latency", Delay: sim.Duration(delay)})
			}
			start := time.Now()
			ss.roundTrip()
			if el := time.Since(start); el < delay {
				t.Errorf("ACK after %v with latency %v, want at least the latency", el, delay)
			}
		})
	}
}

// TestFaultRequestHeartbeat (HTTP): op 1 now; the answer is ACKed.
func TestFaultRequestHeartbeat(t *testing.T) {
	t.Parallel()
	s := startSim(t, baseConfig())
	ss := s.start(t, startOpts{})
	if n := s.fault(t, `{"kind":"request_heartbeat"}`); n != 1 {
		t.Errorf("applied = %d, want 1", n)
	}
	ss.waitOp(discord.OpHeartbeat)
	ss.roundTrip()
}

// TestFaultTargeting (ApplyFault): Shards and NumShards choose the
// connections; empty means all.
func TestFaultTargeting(t *testing.T) {
	t.Parallel()
	cfg := baseConfig()
	cfg.MaxConcurrency = 4
	s := startSim(t, cfg)
	a := s.start(t, startOpts{shard: []int{0, 2}})
	b := s.start(t, startOpts{shard: []int{1, 2}})
	c := s.start(t, startOpts{shard: []int{0, 4}})
	for _, tc := range []struct {
		name   string
		fault  sim.Fault
		target []*session
	}{
		{"shard 1", sim.Fault{Shards: []int{1}}, []*session{b}},
		{"shard 0 of 4", sim.Fault{Shards: []int{0}, NumShards: 4}, []*session{c}},
		{"shard 0 of any count", sim.Fault{Shards: []int{0}}, []*session{a, c}},
		{"count 2", sim.Fault{NumShards: 2}, []*session{a, b}},
		{"all", sim.Fault{}, []*session{a, b, c}},
	} {
		tc.fault.Kind = "request_heartbeat"
		if n := s.applyFault(t, tc.fault); n != len(tc.target) {
			t.Errorf("%s: applied = %d, want %d", tc.name, n, len(tc.target))
		}
		for _, ss := range []*session{a, b, c} {
			if slices.Contains(tc.target, ss) {
				ss.waitOp(discord.OpHeartbeat)
				continue
			}
			for _, f := range ss.roundTrip() {
				if f.Op == discord.OpHeartbeat {
					t.Errorf("%s: shard [%d %d] got the fault too", tc.name, ss.shard, ss.n)
				}
			}
		}
	}
}

// TestFaultBadRequest: bad fault JSON and unknown kinds are refused.
func TestFaultBadRequest(t *testing.T) {
	t.Parallel()
	s := startSim(t, baseConfig())
	for _, body := range []string{`{bad`, `{"kind":"nope"}`, `{"kind":"latency","delay":"soon"}`, ``} {
		if status, b := s.postFault(t, body); status != http.StatusBadRequest {
			t.Errorf("POST /sim/faults %q = %d %s, want 400", body, status, b)
		}
	}
	if _, err := s.srv.ApplyFault(sim.Fault{Kind: "nope"}); err == nil {
		t.Errorf("ApplyFault(kind nope) = nil error, want an error")
	}
}

// faultKinds returns the kinds listed by GET /sim/faults.
func faultKinds(t *testing.T, s *simServer) []string {
	t.Helper()
	status, _, body := s.do(t, "GET", "/sim/faults", "", nil)
	if status != http.StatusOK {
		t.Fatalf("GET /sim/faults = %d %s", status, body)
	}
	var v any
	if err := json.Unmarshal(body, &v); err != nil {
		t.Fatalf("GET /sim/faults = %s: %v", body, err)
	}
	var kinds []string
	var walk func(any)
	walk = func(v any) {
		switch x := v.(type) {
		case map[string]any:
			if k, ok := x["kind"].(string); ok {
				kinds = append(kinds, k)
				return
			}
			for _, e := range x {
				walk(e)
			}
		case []any:
			for _, e := range x {
				walk(e)
			}
		}
	}
	walk(v)
	slices.Sort(kinds)
	return kinds
}

// TestFaultsList: GET /sim/faults lists the active faults; a fault with a
// duration expires; DELETE and ClearFaults clear them.
func TestFaultsList(t *testing.T) {
	t.Parallel()
	s := startSim(t, baseConfig())
	s.start(t, startOpts{})
	if got := faultKinds(t, s); len(got) != 0 {
		t.Errorf("GET /sim/faults before any = %v, want none", got)
	}
	s.fault(t, `{"kind":"latency","delay":"10ms"}`)
	s.fault(t, `{"kind":"silence","event_type":"TYPING_START","duration":"300ms"}`)
	if got, want := faultKinds(t, s), []string{"latency", "silence"}; !slices.Equal(got, want) {
		t.Errorf("GET /sim/faults = %v, want %v", got, want)
	}
	deadline := time.Now().Add(waitTimeout)
	for !slices.Equal(faultKinds(t, s), []string{"latency"}) {
		if time.Now().After(deadline) {
			t.Fatalf("silence with duration 300ms still listed: %v", faultKinds(t, s))
		}
		time.Sleep(20 * time.Millisecond)
	}
	if status, _, _ := s.do(t, "DELETE", "/sim/faults", "", nil); status != http.StatusOK && status != http.StatusNoContent {
		t.Errorf("DELETE /sim/faults = %d, want 200 or 204", status)
	}
	if got := faultKinds(t, s); len(got) != 0 {
		t.Errorf("after DELETE: GET /sim/faults = %v, want none", got)
	}
	s.applyFault(t, sim.Fault{Kind: "latency", Delay: sim.Duration(10 * time.Millisecond)})
	s.srv.ClearFaults()
	if got := faultKinds(t, s); len(got) != 0 {
		t.Errorf("after ClearFaults: GET /sim/faults = %v, want none", got)
	}
}

// TestFaultOutage (HTTP): the shard's connection is cut, a RESUME during
// the outage is closed with 4000 and the session survives it: once the
// outage is over the RESUME succeeds.
func TestFaultOutage(t *testing.T) {
	t.Parallel()
	s := startSim(t, baseConfig())
	ss := s.start(t, startOpts{})
	if n := s.fault(t, `{"kind":"outage","duration":"600ms"}`); n != 1 {
		t.Errorf("applied = %d, want 1", n)
	}
	start := time.Now()
	if code, _ := ss.expectClose(); code != -1 {
		t.Fatalf("outage: connection ended with close code %d, want no close frame", code)
	}
	rc := ss.resume(t, ss.resumeURL(), ss.lastSeq.Load())
	if code, _ := rc.expectClose(); code != 4000 {
		t.Fatalf("RESUME during the outage: close code %d, want 4000", code)
	}
	time.Sleep(time.Until(start.Add(700 * time.Millisecond)))
	expectResumable(t, ss)
}
