package sim_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/google/go-cmp/cmp"

	"github.com/gatehouse-dev/gatehouse/internal/discord"
)

// checkEvents checks the generated events one session received: each has a
// sim_event_id as the last key of d, no id repeats, each guild event routes
// to the session's shard and is one of its READY guilds, DM-like events reach
// shard 0 only, and the session's intents allow it.
func checkEvents(t *testing.T, ss *session, events []event) {
	t.Helper()
	seen := map[int64]bool{}
	for _, ev := range events {
		if !ev.idLast {
			t.Errorf("%s: sim_event_id is not the last key of d: %.300s", ss.url, ev.f.D)
		}
		if seen[ev.id] {
			t.Errorf("%s: sim_event_id %d delivered twice", ss.url, ev.id)
		}
		seen[ev.id] = true
		if ev.guild == 0 {
			if ss.shard != 0 {
				t.Errorf("shard [%d %d] got DM-like event %v, want those on shard 0 only", ss.shard, ss.n, ev.f)
			}
		} else {
			if got := discord.ShardForGuild(ev.guild, ss.n); got != ss.shard {
				t.Errorf("shard [%d %d] got %s for guild %v, which routes to shard %d", ss.shard, ss.n, ev.f.T, ev.guild, got)
			}
			if len(ss.guilds) > 0 && !ss.guilds[ev.guild] && ev.f.T != "GUILD_CREATE" {
				t.Errorf("shard [%d %d] got %s for guild %v, not one of its READY guilds", ss.shard, ss.n, ev.f.T, ev.guild)
			}
		}
		if need := requiredIntent(ev); need != 0 && !ss.intents.Has(need) {
			if !(ev.f.T == "GUILD_MEMBER_UPDATE" && ev.content.User != nil && ev.content.User.ID == ss.botID) {
				t.Errorf("session with intents %v got %s (needs %v)", ss.intents, ev.f.T, need)
			}
		}
		if !ss.intents.Has(discord.IntentMessageContent) && contentExpectedStripped(ss, ev) {
			c := ev.content
			if (c.Content != nil && *c.Content != "") || len(c.Embeds) > 0 || len(c.Attachments) > 0 || len(c.Components) > 0 {
				t.Errorf("session without MESSAGE_CONTENT got %s with content: %.300s", ev.f.T, ev.f.D)
			}
		}
	}
}

// requiredIntent is the intent a dispatch needs: guild events per
// discord.IntentForEvent, DM events their DIRECT_MESSAGE_* intent.
func requiredIntent(ev event) discord.Intents {
	t := ev.f.T
	if ev.guild != 0 {
		need, _ := discord.IntentForEvent(t)
		return need
	}
	switch {
	case strings.HasPrefix(t, "MESSAGE_REACTION_"):
		return discord.IntentDirectMessageReactions
	case strings.HasPrefix(t, "MESSAGE_POLL_VOTE_"):
		return discord.IntentDirectMessagePolls
	case strings.HasPrefix(t, "MESSAGE_"), t == "CHANNEL_PINS_UPDATE":
		return discord.IntentDirectMessages
	case t == "TYPING_START":
		return discord.IntentDirectMessageTyping
	}
	return 0
}

// contentExpectedStripped: guild MESSAGE_CREATE/UPDATE not written by the bot
// and not mentioning it.
func contentExpectedStripped(ss *session, ev event) bool {
	if ev.guild == 0 || (ev.f.T != "MESSAGE_CREATE" && ev.f.T != "MESSAGE_UPDATE") {
		return false
	}
	if a := ev.content.Author; a != nil && a.ID == ss.botID {
		return false
	}
	for _, m := range ev.content.Mentions {
		if m.ID == ss.botID {
			return false
		}
	}
	return true
}

func idSet(events []event) map[int64]bool {
	m := map[int64]bool{}
	for _, ev := range events {
		m[ev.id] = true
	}
	return m
}

// TestEventsValid: generated events carry a unique sim_event_id as d's last
// key, route to the session's shard and its READY guilds.
func TestEventsValid(t *testing.T) {
	t.Parallel()
	cfg := baseConfig()
	cfg.Guilds = 40
	cfg.EventRate = 400
	cfg.MaxConcurrency = 4
	s := startSim(t, cfg)
	for i := range 2 {
		ss := s.start(t, startOpts{shard: []int{i, 2}})
		events, _ := ss.collectEvents(100)
		checkEvents(t, ss, events)
	}
}

// TestSameShardSessionsShareEvents: two sessions on the same [shard, n] get
// the same events, byte for byte in d, with the same sim_event_id.
func TestSameShardSessionsShareEvents(t *testing.T) {
	t.Parallel()
	cfg := baseConfig()
	cfg.Guilds = 20
	cfg.EventRate = 100
	s := startSim(t, cfg)
	a := s.start(t, startOpts{shard: []int{0, 2}})
	b := s.start(t, startOpts{shard: []int{0, 2}})
	evB, _ := b.collectEvents(40)
	checkEvents(t, b, evB)
	evA := a.waitEventIDs(idSet(evB))
	checkEvents(t, a, evA)
	byID := map[int64]event{}
	for _, ev := range evA {
		byID[ev.id] = ev
	}
	want := idSet(evB)
	// Per guild, the shared events come in the same order on both sessions.
	orderA, orderB := map[discord.Snowflake][]int64{}, map[discord.Snowflake][]int64{}
	for _, ev := range evA {
		if want[ev.id] {
			orderA[ev.guild] = append(orderA[ev.guild], ev.id)
		}
	}
	for _, ev := range evB {
		orderB[ev.guild] = append(orderB[ev.guild], ev.id)
		if other := byID[ev.id]; other.f.T != ev.f.T || !bytes.Equal(other.f.D, ev.f.D) {
			t.Errorf("event %d: session A got %s %.200s, session B got %s %.200s; want the same", ev.id, other.f.T, other.f.D, ev.f.T, ev.f.D)
		}
	}
	if diff := cmp.Diff(orderB, orderA); diff != "" {
		t.Errorf("per-guild order of shared events differs (-B +A):\n%s", diff)
	}
}

// TestReshardGenerationsShareEvents: sessions of 2 and of 4 shards run at
// once; each gets only its own guilds' events, and an event for a guild held
// by both generations reaches both with the same sim_event_id.
func TestReshardGenerationsShareEvents(t *testing.T) {
	t.Parallel()
	cfg := baseConfig()
	cfg.Guilds = 40
	cfg.EventRate = 100
	cfg.MaxConcurrency = 4
	s := startSim(t, cfg)
	old := []*session{s.start(t, startOpts{shard: []int{0, 2}}), s.start(t, startOpts{shard: []int{1, 2}})}
	var gen []*session
	for i := range 4 {
		gen = append(gen, s.start(t, startOpts{shard: []int{i, 4}}))
	}
	type seenEv struct {
		t     string
		guild discord.Snowflake
	}
	world := map[int64]seenEv{}
	record := func(ss *session, events []event) {
		for _, ev := range events {
			if w, ok := world[ev.id]; ok && (w.t != ev.f.T || w.guild != ev.guild) {
				t.Errorf("sim_event_id %d is %s in guild %v on one session and %s in guild %v on shard [%d %d]",
					ev.id, w.t, w.guild, ev.f.T, ev.guild, ss.shard, ss.n)
			}
			world[ev.id] = seenEv{ev.f.T, ev.guild}
		}
	}
	// Events each old session has delivered so far (the reads below consume
	// its queue, so later checks look here first).
	oldSeen := []map[int64]bool{{}, {}}
	var oldEvents [2][]event
	for _, ss := range gen {
		events, _ := ss.collectEvents(15)
		checkEvents(t, ss, events)
		record(ss, events)
		want := map[int64]bool{}
		for _, ev := range events {
			if ev.guild != 0 && !oldSeen[ss.shard%2][ev.id] {
				want[ev.id] = true
			}
		}
		parent := old[ss.shard%2]
		got := parent.waitEventIDs(want)
		record(parent, got)
		for _, ev := range got {
			oldSeen[ss.shard%2][ev.id] = true
		}
		oldEvents[ss.shard%2] = append(oldEvents[ss.shard%2], got...)
	}
	for i, ss := range old {
		checkEvents(t, ss, oldEvents[i])
	}
}

// TestIntentsFilterEvents: without GUILD_PRESENCES no PRESENCE_UPDATE;
// without MESSAGE_CONTENT messages arrive stripped; with all intents both
// arrive in full; with GUILDS only no message or typing events.
func TestIntentsFilterEvents(t *testing.T) {
	t.Parallel()
	cfg := baseConfig()
	cfg.Guilds = 10
	cfg.EventRate = 600
	s := startSim(t, cfg)
	full := s.start(t, startOpts{intents: discord.IntentsAll})
	plain := s.start(t, startOpts{intents: discord.IntentsNonPrivileged})
	guildsOnly := s.start(t, startOpts{intents: discord.IntentGuilds})

	evFull, _ := full.collectEvents(300)
	checkEvents(t, full, evFull)
	var presences, withContent int
	for _, ev := range evFull {
		switch ev.f.T {
		case "PRESENCE_UPDATE":
			presences++
		case "MESSAGE_CREATE":
			if ev.content.Content != nil && *ev.content.Content != "" {
				withContent++
			}
		}
	}
	if presences == 0 || withContent == 0 {
		t.Errorf("all intents, 300 events: %d PRESENCE_UPDATE, %d MESSAGE_CREATE with content; want some of each", presences, withContent)
	}

	evPlain, _ := plain.collectEvents(100)
	checkEvents(t, plain, evPlain)
	messages := 0
	for _, ev := range evPlain {
		if ev.f.T == "PRESENCE_UPDATE" {
			t.Errorf("session without GUILD_PRESENCES got PRESENCE_UPDATE")
			break
		}
		if ev.f.T == "MESSAGE_CREATE" {
			messages++
		}
	}
	if messages == 0 {
		t.Errorf("non-privileged intents, 100 events: no MESSAGE_CREATE, want the mix led by messages")
	}

	// GUILDS only: few generated events may match, so watch for a while.
	var evGuilds []event
	for _, f := range guildsOnly.expectNothing(quietPeriod, "an event outside GUILDS", func(f *frame) bool {
		ev, ok := eventOf(t, f)
		return ok && requiredIntent(ev) != 0 && !discord.IntentGuilds.Has(requiredIntent(ev))
	}) {
		if ev, ok := eventOf(t, f); ok {
			evGuilds = append(evGuilds, ev)
		}
	}
	checkEvents(t, guildsOnly, evGuilds)
}

// disconnect drops the TCP connection without a close frame.
func (ss *session) disconnect() { ss.ws.CloseNow() }

// TestResumeReplay: after a drop, RESUME on resume_gateway_url with the last
// s replays exactly the missed dispatches with their original s, then
// RESUMED with the next s; dispatches already received are replayed byte for
// byte when RESUME names an older s.
func TestResumeReplay(t *testing.T) {
	t.Parallel()
	for _, back := range []int64{0, 5} {
		t.Run(fmt.Sprintf("seq=last-%d", back), func(t *testing.T) {
			t.Parallel()
			cfg := baseConfig()
			cfg.Guilds = 10
			cfg.EventRate = 100
			s := startSim(t, cfg)
			// An observer on the same shard keeps the shard's guilds held.
			s.start(t, startOpts{})
			ss := s.start(t, startOpts{})
			events, _ := ss.collectEvents(20)
			received := map[int64][]byte{}
			for _, f := range append([]*frame{ss.readyF}, ss.creates...) {
				received[f.S] = f.Raw
			}
			for _, ev := range events {
				received[ev.f.S] = ev.f.Raw
			}
			last := ss.lastSeq.Load()
			ss.disconnect()
			time.Sleep(300 * time.Millisecond) // events keep flowing into the session
			before := s.stats(t).Resumes

			rc := ss.resume(t, ss.resumeURL(), last-back)
			want := last - back + 1
			replayed := 0
			for {
				f := rc.next()
				if f.Op != discord.OpDispatch {
					continue
				}
				if f.S != want {
					t.Fatalf("after RESUME seq %d: dispatch %v has s %d, want %d (replay in order, no gaps)", last-back, f, f.S, want)
				}
				want++
				if f.T == "RESUMED" {
					var d map[string]json.RawMessage
					if err := json.Unmarshal(f.D, &d); err != nil {
						t.Errorf("RESUMED d = %s: %v", f.D, err)
					}
					if _, ok := d["_trace"]; !ok {
						t.Errorf("RESUMED d = %s, want {\"_trace\":[…]}", f.D)
					}
					break
				}
				replayed++
				if old, ok := received[f.S]; ok && !bytes.Equal(old, f.Raw) {
					t.Errorf("replayed s %d = %.200s, want the original %.200s", f.S, f.Raw, old)
				}
			}
			if int64(replayed) <= back {
				t.Errorf("replayed %d dispatches after dropping for 300ms at 100 events/s (asked from %d back), want the missed ones too", replayed, back)
			}
			// Live events continue after RESUMED with the next s.
			next, _ := rc.collectEvents(1)
			if next[0].f.S != want {
				t.Errorf("first dispatch after RESUMED has s %d, want %d", next[0].f.S, want)
			}
			st := s.waitStats(t, "one more resume", func(st statsJSON) bool { return st.Resumes == before+1 })
			if st.Identifies != 2 || st.SessionStartsRemaining != 998 || st.Violations["resume_on_base_url"] != 0 {
				t.Errorf("stats identifies %d remaining %d violations %v; want 2, 998, no resume_on_base_url",
					st.Identifies, st.SessionStartsRemaining, st.Violations)
			}
		})
	}
}

// TestResumeAfterClose4000: a client close with 4000 keeps the session.
func TestResumeAfterClose4000(t *testing.T) {
	t.Parallel()
	s := startSim(t, baseConfig())
	ss := s.start(t, startOpts{})
	last := ss.lastSeq.Load()
	ss.ws.Close(4000, "resume")
	rc := ss.resume(t, strings.TrimSuffix(ss.resumeAt, "/")+"?v=10&encoding=json", last)
	f, _ := rc.waitFor("RESUMED", func(f *frame) bool { return f.T == "RESUMED" || f.Op == discord.OpInvalidSession })
	if f.T != "RESUMED" || f.S != last+1 {
		t.Errorf("RESUME after close 4000 got %v, want RESUMED with s %d", f, last+1)
	}
}

// TestResumeFailures: the cases where RESUME must be refused.
func TestResumeFailures(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		cfg   func(*simConfig)
		prep  func(t *testing.T, ss *session) // ends the first connection
		token string
		sid   string
		seq   func(last int64) int64
		code  websocket.StatusCode // 0: op 9 d:false expected
	}{
		{name: "unknown session", prep: func(t *testing.T, ss *session) { ss.disconnect() }, sid: "0123456789abcdef0123456789abcdef"},
		{name: "wrong token", prep: func(t *testing.T, ss *session) { ss.disconnect() }, token: "wrong-token"},
		{name: "seq ahead", prep: func(t *testing.T, ss *session) { ss.disconnect() }, seq: func(l int64) int64 { return l + 10 }, code: 4007},
		{name: "client closed 1000", prep: func(t *testing.T, ss *session) { ss.ws.Close(websocket.StatusNormalClosure, "") }},
		{name: "client closed 1001", prep: func(t *testing.T, ss *session) { ss.ws.Close(websocket.StatusGoingAway, "") }},
		{name: "session TTL passed", cfg: func(c *simConfig) { c.SessionTTL = 200 * time.Millisecond },
			prep: func(t *testing.T, ss *session) { ss.disconnect(); time.Sleep(600 * time.Millisecond) }},
		{name: "replay buffer overflowed", cfg: func(c *simConfig) { c.ReplayBuffer = 5; c.EventRate = 100; c.Guilds = 3 },
			prep: func(t *testing.T, ss *session) { ss.disconnect(); time.Sleep(500 * time.Millisecond) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := baseConfig()
			if tc.cfg != nil {
				tc.cfg(&cfg)
			}
			s := startSim(t, cfg)
			if cfg.EventRate > 0 {
				s.start(t, startOpts{}) // keeps the shard's guilds held
			}
			ss := s.start(t, startOpts{})
			last := ss.lastSeq.Load()
			tc.prep(t, ss)
			token, sid, seq := s.token(), ss.ready.SessionID, last
			if tc.token != "" {
				token = tc.token
			}
			if tc.sid != "" {
				sid = tc.sid
			}
			if tc.seq != nil {
				seq = tc.seq(last)
			}
			c := dialURL(t, ss.resumeURL(), ss.comp)
			c.hello()
			c.send(resumePayload(token, sid, seq))
			if tc.code != 0 {
				code, frames := c.expectClose()
				if code != tc.code {
					t.Fatalf("RESUME: close %d, want %d (frames %v)", code, tc.code, frames)
				}
				s.waitStats(t, "violation invalid_seq", func(st statsJSON) bool { return st.Violations["invalid_seq"] == 1 })
				return
			}
			if d, _ := invalidSessionD(t, c); d != "false" {
				t.Errorf("RESUME: op 9 d = %s, want false", d)
			}
			st := s.waitStats(t, "a resume failure", func(st statsJSON) bool { return st.ResumeFailures >= 1 })
			if st.Resumes != 0 {
				t.Errorf("stats resumes = %d after a refused RESUME, want 0", st.Resumes)
			}
		})
	}
}

// TestResumeOnBaseURL: RESUME on the base URL works but counts the violation
// resume_on_base_url.
func TestResumeOnBaseURL(t *testing.T) {
	t.Parallel()
	s := startSim(t, baseConfig())
	ss := s.start(t, startOpts{})
	last := ss.lastSeq.Load()
	ss.disconnect()
	rc := ss.resume(t, s.baseURL()+"/?v=10&encoding=json", last)
	f, _ := rc.waitFor("RESUMED", func(f *frame) bool { return f.T == "RESUMED" || f.Op == discord.OpInvalidSession })
	if f.T != "RESUMED" {
		t.Fatalf("RESUME on the base URL got %v, want RESUMED", f)
	}
	s.waitStats(t, "violation resume_on_base_url", func(st statsJSON) bool {
		return st.Violations["resume_on_base_url"] == 1 && st.Resumes == 1
	})
}

// TestResumeIsNotRateLimited: RESUMEs skip the identify limit and the
// session-start budget.
func TestResumeIsNotRateLimited(t *testing.T) {
	t.Parallel()
	cfg := baseConfig()
	cfg.IdentifyInterval = 10 * time.Second
	s := startSim(t, cfg)
	ss := s.start(t, startOpts{})
	for range 3 {
		last := ss.lastSeq.Load()
		ss.disconnect()
		rc := ss.resume(t, ss.resumeURL(), last)
		f, _ := rc.waitFor("RESUMED", func(f *frame) bool { return f.T == "RESUMED" || f.Op == discord.OpInvalidSession })
		if f.T != "RESUMED" {
			t.Fatalf("quick RESUME got %v, want RESUMED", f)
		}
		ss.conn = rc
	}
	st := s.waitStats(t, "3 resumes", func(st statsJSON) bool { return st.Resumes == 3 })
	if st.IdentifyViolations != 0 || st.SessionStartsRemaining != 999 {
		t.Errorf("identify_violations %d remaining %d, want 0 and 999", st.IdentifyViolations, st.SessionStartsRemaining)
	}
	if len(st.Shards) != 1 || st.Shards[0].Resumes != 3 {
		t.Errorf("stats shards %+v, want one with resumes 3", st.Shards)
	}
}

// TestSmallReplayBufferPromptClient: a ReplayBuffer smaller than the
// GUILD_CREATE stream must not cut a client that reads everything at once:
// the buffer bounds what RESUME can replay, and a client falls behind only
// by reading slower than the server sends.
func TestSmallReplayBufferPromptClient(t *testing.T) {
	t.Parallel()
	cfg := baseConfig()
	cfg.ReplayBuffer = 5
	cfg.Guilds = 20
	cfg.EventRate = 200
	s := startSim(t, cfg)
	for range 3 {
		ss := s.start(t, startOpts{})
		ss.collectEvents(20)
		ss.roundTrip()
	}
	if st := s.stats(t); st.Violations["slow_consumer"] != 0 {
		t.Errorf("violations %v, want no slow_consumer for a client reading at full speed", st.Violations)
	}
}
