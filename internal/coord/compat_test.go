package coord

import (
	"encoding/json"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/coord/coordapi"
	"github.com/google/go-cmp/cmp"
)

// TestShardmanContract follows Shardman's documented contract: /connect
// hands out shards with a session ID, 401 when none is free, 403 for a bad
// secret; /beat answers 204, 404 for an unknown session, 422 with FastAPI's
// detail list; a worker that stops beating loses its shard.
func TestShardmanContract(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newTest(t, func(c *Config) { c.ShardCount = 2; c.BeatTimeout = 30 * time.Second })
		type connectAnswer struct {
			ShardID   int    `json:"shard_id"`
			MaxShards int    `json:"max_shards"`
			SessionID string `json:"session_id"`
		}
		connect := func() (int, connectAnswer, string) {
			code, _, body := do(c, "GET", "/connect", testTokens.Worker, "", "")
			var a connectAnswer
			json.Unmarshal([]byte(body), &a)
			return code, a, body
		}
		code, a0, body := connect()
		if code != 200 || a0.ShardID != 0 || a0.MaxShards != 2 || len(a0.SessionID) != 32 || !strings.Contains(body, `"sleep_duration":0`) {
			t.Fatalf("first connect: %d %s", code, body)
		}
		code, a1, _ := connect()
		if code != 200 || a1.ShardID != 1 || a1.SessionID == a0.SessionID {
			t.Fatalf("second connect: %d %+v", code, a1)
		}
		if code, _, body := connect(); code != 401 || body != `{"detail":"No Shards Available"}`+"\n" {
			t.Errorf("connect with no shard free: %d %s, want 401 with detail", code, body)
		}
		if code, _, body := do(c, "GET", "/connect", "", "", ""); code != 422 || !strings.Contains(body, `"loc":["header","authorization"]`) {
			t.Errorf("connect without the header: %d %s, want 422", code, body)
		}
		if code, _, body := do(c, "GET", "/connect", "wrong", "", ""); code != 403 || body != `{"detail":"Invalid Token"}`+"\n" {
			t.Errorf("connect with a bad secret: %d %s, want 403", code, body)
		}
		if code, _, _ := do(c, "GET", "/connect", testTokens.Status, "", ""); code != 403 {
			t.Errorf("connect with the status token: %d, want 403", code)
		}

		// Beats, JSON and form.
		beat := `{"session_id":"` + a0.SessionID + `","guild_count":812,"latency":0.042,"extra":{"ram":"120MB"}}`
		if code, _, body := do(c, "POST", "/beat", testTokens.Worker, "application/json", beat); code != 204 {
			t.Errorf("JSON beat: %d %s", code, body)
		}
		// Lax like pydantic v1: numeric strings, no Content-Type; an absent
		// field is null.
		beat1 := `{"session_id":"` + a1.SessionID + `","guild_count":"5"}`
		if code, _, body := do(c, "POST", "/beat", testTokens.Worker, "", beat1); code != 204 {
			t.Errorf("lax beat: %d %s", code, body)
		}
		st := c.Status().Shardman
		if len(st) != 2 || *st[0].GuildCount != 812 || *st[0].Latency != 0.042 || string(st[0].Extra) != `{"ram":"120MB"}` ||
			*st[1].GuildCount != 5 || st[1].Latency != nil {
			t.Errorf("sessions after beats: %+v", st)
		}
		if code, _, body := do(c, "POST", "/beat", testTokens.Worker, "application/json", `{"session_id":"nope","guild_count":1,"latency":1}`); code != 404 || body != `{"detail":"Session Not Found"}`+"\n" {
			t.Errorf("beat of an unknown session: %d %s, want 404", code, body)
		}

		// Shard 1 keeps beating; shard 0 stops and is freed after 30 s.
		time.Sleep(20 * time.Second)
		do(c, "POST", "/beat", testTokens.Worker, "application/json", beat1)
		time.Sleep(10 * time.Second)
		c.sweep(time.Now())
		if code, _, body := do(c, "POST", "/beat", testTokens.Worker, "application/json", beat); code != 404 {
			t.Errorf("beat after the timeout: %d %s, want 404", code, body)
		}
		code, a2, _ := connect()
		if code != 200 || a2.ShardID != 0 {
			t.Errorf("connect after shard 0 was freed: %d %+v, want shard 0", code, a2)
		}
	})
}

func TestShardmanValidation(t *testing.T) {
	c := newTest(t, nil)
	type detail struct {
		Detail []fieldError `json:"detail"`
	}
	for _, tc := range []struct {
		name, ct, body string
		want           []fieldError
	}{
		{"missing session", "application/json", `{"guild_count":1}`, []fieldError{
			{Loc: []any{"body", "session_id"}, Msg: "field required", Type: "value_error.missing"}}},
		{"null session", "application/json", `{"session_id":null}`, []fieldError{
			{Loc: []any{"body", "session_id"}, Msg: "none is not an allowed value", Type: "type_error.none.not_allowed"}}},
		{"object session", "application/json", `{"session_id":{}}`, []fieldError{
			{Loc: []any{"body", "session_id"}, Msg: "str type expected", Type: "type_error.str"}}},
		{"wrong types", "application/json", `{"session_id":"x","guild_count":"many","latency":"slow"}`, []fieldError{
			{Loc: []any{"body", "guild_count"}, Msg: "value is not a valid integer", Type: "type_error.integer"},
			{Loc: []any{"body", "latency"}, Msg: "value is not a valid float", Type: "type_error.float"}}},
		{"no body", "application/json", ``, []fieldError{
			{Loc: []any{"body"}, Msg: "field required", Type: "value_error.missing"}}},
		{"array body", "application/json", `[1]`, []fieldError{
			{Loc: []any{"body"}, Msg: "value is not a valid dict", Type: "type_error.dict"}}},
		{"form body", "application/x-www-form-urlencoded", `session_id=x`, []fieldError{
			{Loc: []any{"body"}, Msg: "value is not a valid dict", Type: "type_error.dict"}}},
	} {
		code, _, body := do(c, "POST", "/beat", testTokens.Worker, tc.ct, tc.body)
		var d detail
		if err := json.Unmarshal([]byte(body), &d); err != nil || code != 422 {
			t.Errorf("%s: %d %s (%v), want 422", tc.name, code, body, err)
			continue
		}
		if diff := cmp.Diff(tc.want, d.Detail); diff != "" {
			t.Errorf("%s: detail (-want +got):\n%s", tc.name, diff)
		}
	}
	code, _, body := do(c, "POST", "/beat", testTokens.Worker, "application/json", `{"session_id":`)
	if code != 422 || !strings.Contains(body, `"type":"value_error.jsondecode"`) {
		t.Errorf("malformed JSON: %d %s", code, body)
	}
}

func TestShardmanConnectLimit(t *testing.T) {
	c := newTest(t, func(c *Config) { c.ShardCount = 100; c.ConnectsPerMinute = 2 })
	for range 2 {
		if code, _, _ := do(c, "GET", "/connect", testTokens.Worker, "", ""); code != 200 {
			t.Fatalf("connect: %d", code)
		}
	}
	if code, h, _ := do(c, "GET", "/connect", testTokens.Worker, "", ""); code != 429 || h.Get("Retry-After") == "" {
		t.Errorf("third connect in a minute: %d Retry-After %q, want 429", code, h.Get("Retry-After"))
	}
}

// TestGlanceBoard: state and health reports, the health interval, and the
// return to online.
func TestGlanceBoard(t *testing.T) {
	t0 := time.Unix(1000, 0)
	b := glanceBoard{interval: time.Minute}
	a, z := glanceKey{"a", 0}, glanceKey{"a", 1}
	off := glanceKey{"b", 0}
	b.status(t0, a, GlanceOnline)
	b.status(t0, z, GlanceStarting)
	b.status(t0, off, GlanceOffline)
	b.health(t0.Add(50*time.Second), a)
	if got := b.sweep(t0.Add(59 * time.Second)); len(got) != 0 {
		t.Errorf("sweep at 59s: %v, want none", got)
	}
	if diff := cmp.Diff([]glanceKey{z}, b.sweep(t0.Add(60*time.Second)), cmp.AllowUnexported(glanceKey{})); diff != "" {
		t.Errorf("sweep at 60s (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]glanceKey{a}, b.sweep(t0.Add(110*time.Second)), cmp.AllowUnexported(glanceKey{})); diff != "" {
		t.Errorf("sweep at 110s (-want +got):\n%s", diff)
	}
	b.health(t0.Add(120*time.Second), a)
	got := map[glanceKey]GlanceState{}
	for k, s := range b.shards {
		got[k] = s.state
	}
	want := map[glanceKey]GlanceState{a: GlanceOnline, z: GlanceUnhealthy, off: GlanceOffline}
	if diff := cmp.Diff(want, got, cmp.AllowUnexported(glanceKey{})); diff != "" {
		t.Errorf("states (-want +got):\n%s", diff)
	}
}

func TestGlanceHTTP(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newTest(t, func(c *Config) { c.HealthInterval = 10 * time.Second })
		for _, tc := range []struct {
			path string
			want int
		}{
			{"/api/status/main/3/3", 204},
			{"/api/status/main/4/4", 204},
			{"/api/status/main/3/7", 400},
			{"/api/status/main/x/3", 400},
			{"/api/health/main/3", 204},
		} {
			if code, _, body := do(c, "POST", tc.path, bearer(testTokens.Worker), "", ""); code != tc.want {
				t.Errorf("POST %s: %d %s, want %d", tc.path, code, body, tc.want)
			}
		}
		time.Sleep(10 * time.Second)
		c.sweep(time.Now())
		_, _, body := do(c, "GET", "/api/status", bearer(testTokens.Status), "", "")
		var list []coordapi.GlanceShard
		json.Unmarshal([]byte(body), &list)
		if len(list) != 2 || list[0].StateName != "unhealthy" || list[1].StateName != "unhealthy" {
			t.Errorf("after the interval: %s", body)
		}
		do(c, "POST", "/api/health/main/3", bearer(testTokens.Worker), "", "")
		_, _, body = do(c, "GET", "/api/status", bearer(testTokens.Status), "", "")
		json.Unmarshal([]byte(body), &list)
		if list[0].ID != 3 || list[0].State != int(GlanceOnline) {
			t.Errorf("after a health report: %s", body)
		}
	})
}
