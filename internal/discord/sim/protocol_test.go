package sim

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/gatehouse-dev/gatehouse/internal/discord"
)

func codeOf(ce *closeErr) int {
	if ce == nil {
		return 0
	}
	return int(ce.code)
}

func TestDecodeEnvelope(t *testing.T) {
	tests := []struct {
		in   string
		op   discord.Opcode
		code int
	}{
		{`{"op":1,"d":null}`, 1, 0},
		{` {"d":5,"op":2} `, 2, 0},
		{`{"op":1}`, 1, 0},
		{`{"op":1,"d":nul`, 0, 4002},
		{`[1]`, 0, 4002},
		{`"op"`, 0, 4002},
		{``, 0, 4002},
		{`{"op":1}{}`, 0, 4002},
		{`{"d":null}`, 0, 4001},
		{`{"op":"1"}`, 0, 4001},
		{`{"op":1.5}`, 0, 4001},
		{`{"op":-1}`, 0, 4001},
	}
	for _, tt := range tests {
		env, ce := decodeEnvelope([]byte(tt.in))
		if codeOf(ce) != tt.code || ce == nil && env.op != tt.op {
			t.Errorf("decodeEnvelope(%s) = op %d, close %d; want op %d, close %d", tt.in, env.op, codeOf(ce), tt.op, tt.code)
		}
	}
}

func TestAdmit(t *testing.T) {
	tests := []struct {
		p    phase
		op   discord.Opcode
		code int
	}{
		{phaseConnected, discord.OpHeartbeat, 0},
		{phaseConnected, discord.OpIdentify, 0},
		{phaseConnected, discord.OpResume, 0},
		{phaseConnected, discord.OpPresenceUpdate, 4003},
		{phaseConnected, discord.OpRequestGuildMembers, 4003},
		{phaseConnected, discord.OpRequestChannelInfo, 4003},
		{phaseConnected, 5, 4001},
		{phaseConnected, discord.OpHello, 4001},
		{phaseActive, discord.OpHeartbeat, 0},
		{phaseActive, discord.OpPresenceUpdate, 0},
		{phaseActive, discord.OpVoiceStateUpdate, 0},
		{phaseActive, discord.OpRequestGuildMembers, 0},
		{phaseActive, discord.OpRequestSoundboardSounds, 0},
		{phaseActive, discord.OpRequestChannelInfo, 0},
		{phaseActive, discord.OpIdentify, 4005},
		{phaseActive, discord.OpResume, 4005},
		{phaseActive, 99, 4001},
		{phaseActive, discord.OpDispatch, 4001},
	}
	for _, tt := range tests {
		if got := codeOf(admit(tt.p, tt.op)); got != tt.code {
			t.Errorf("admit(%d, %v) = %d, want %d", tt.p, tt.op, got, tt.code)
		}
	}
}

func TestParseIdentify(t *testing.T) {
	rules := identifyRules{
		tokenOK:       func(s string) bool { return s == "tok" },
		apiVersion:    10,
		disallowed:    discord.IntentGuildPresences,
		shardMultiple: 0,
	}
	props := `"properties":{"os":"linux","browser":"b","device":"d"}`
	tests := []struct {
		name  string
		d     string
		rules func(*identifyRules)
		code  int
		check func(identifyReq) bool
	}{
		{name: "minimal", d: `{"token":"tok",` + props + `,"intents":513}`,
			check: func(r identifyReq) bool {
				return r.intents == 513 && r.n == 1 && !r.shardGiven && r.largeThreshold == 50
			}},
		{name: "shard and threshold", d: `{"token":"tok",` + props + `,"intents":1,"shard":[3,4],"large_threshold":900,"compress":true}`,
			check: func(r identifyReq) bool {
				return r.shard == 3 && r.n == 4 && r.shardGiven && r.largeThreshold == 250 && r.compress
			}},
		{name: "d not an object", d: `null`, code: 4001},
		{name: "bad token", d: `{"token":"nope",` + props + `,"intents":1}`, code: 4004},
		{name: "Bot prefix accepted", d: `{"token":"Bot tok",` + props + `,"intents":1}`,
			check: func(r identifyReq) bool { return r.token == "tok" }},
		{name: "Bot prefix, bad token", d: `{"token":"Bot nope",` + props + `,"intents":1}`, code: 4004},
		{name: "missing token", d: `{` + props + `,"intents":1}`, code: 4004},
		{name: "token before intents", d: `{"token":"nope",` + props + `,"intents":131072}`, code: 4004},
		{name: "missing properties", d: `{"token":"tok","intents":1}`, code: 4001},
		{name: "missing intents", d: `{"token":"tok",` + props + `}`, code: 4013},
		{name: "missing intents on v6", d: `{"token":"tok",` + props + `}`, rules: func(r *identifyRules) { r.apiVersion = 6 },
			check: func(r identifyReq) bool { return r.intents == discord.IntentsNonPrivileged }},
		{name: "string intents", d: `{"token":"tok",` + props + `,"intents":"513"}`, code: 4013},
		{name: "negative intents", d: `{"token":"tok",` + props + `,"intents":-1}`, code: 4013},
		{name: "undefined bit", d: `{"token":"tok",` + props + `,"intents":131072}`, code: 4013},
		{name: "undefined before disallowed", d: `{"token":"tok",` + props + `,"intents":131328}`, code: 4013},
		{name: "disallowed", d: `{"token":"tok",` + props + `,"intents":256}`, code: 4014},
		{name: "disallowed before shard", d: `{"token":"tok",` + props + `,"intents":256,"shard":[5,2]}`, code: 4014},
		{name: "shard id = count", d: `{"token":"tok",` + props + `,"intents":1,"shard":[2,2]}`, code: 4010},
		{name: "shard count 0", d: `{"token":"tok",` + props + `,"intents":1,"shard":[0,0]}`, code: 4010},
		{name: "negative shard", d: `{"token":"tok",` + props + `,"intents":1,"shard":[-1,2]}`, code: 4010},
		{name: "shard of 3", d: `{"token":"tok",` + props + `,"intents":1,"shard":[0,1,2]}`, code: 4010},
		{name: "shard not an array", d: `{"token":"tok",` + props + `,"intents":1,"shard":"0,1"}`, code: 4010},
		{name: "not a multiple", d: `{"token":"tok",` + props + `,"intents":1,"shard":[0,6]}`,
			rules: func(r *identifyRules) { r.shardMultiple = 4 }, code: 4010},
		{name: "a multiple", d: `{"token":"tok",` + props + `,"intents":1,"shard":[7,8]}`,
			rules: func(r *identifyRules) { r.shardMultiple = 4 }, check: func(r identifyReq) bool { return r.n == 8 }},
		{name: "bad large_threshold type", d: `{"token":"tok",` + props + `,"intents":1,"large_threshold":"x"}`, code: 4001},
		{name: "bad compress type", d: `{"token":"tok",` + props + `,"intents":1,"compress":1}`, code: 4001},
		{name: "bad presence type", d: `{"token":"tok",` + props + `,"intents":1,"presence":[]}`, code: 4001},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := rules
			if tt.rules != nil {
				tt.rules(&r)
			}
			req, ce := parseIdentify(json.RawMessage(tt.d), r)
			if got := codeOf(ce); got != tt.code {
				t.Fatalf("parseIdentify(%s) close = %d, want %d", tt.d, got, tt.code)
			}
			if tt.check != nil && !tt.check(req) {
				t.Errorf("parseIdentify(%s) = %+v", tt.d, req)
			}
		})
	}
}

func TestParseOps(t *testing.T) {
	tests := []struct {
		name string
		fn   func(json.RawMessage) *closeErr
		d    string
		code int
	}{
		{"resume", func(d json.RawMessage) *closeErr { _, ce := parseResume(d); return ce }, `{"token":"t","session_id":"s","seq":5}`, 0},
		{"resume seq null", func(d json.RawMessage) *closeErr { _, ce := parseResume(d); return ce }, `{"token":"t","session_id":"s","seq":null}`, 0},
		{"resume no session", func(d json.RawMessage) *closeErr { _, ce := parseResume(d); return ce }, `{"token":"t","seq":5}`, 4001},
		{"resume string seq", func(d json.RawMessage) *closeErr { _, ce := parseResume(d); return ce }, `{"token":"t","session_id":"s","seq":"5"}`, 4001},
		{"heartbeat null", func(d json.RawMessage) *closeErr { _, ce := parseHeartbeat(d); return ce }, `null`, 0},
		{"heartbeat absent", func(d json.RawMessage) *closeErr { _, ce := parseHeartbeat(d); return ce }, ``, 0},
		{"heartbeat seq", func(d json.RawMessage) *closeErr { _, ce := parseHeartbeat(d); return ce }, `17`, 0},
		{"heartbeat object", func(d json.RawMessage) *closeErr { _, ce := parseHeartbeat(d); return ce }, `{}`, 4001},
		{"heartbeat negative", func(d json.RawMessage) *closeErr { _, ce := parseHeartbeat(d); return ce }, `-3`, 4001},
		{"presence", checkPresence, `{"since":null,"activities":[],"status":"online","afk":false}`, 0},
		{"presence since number", checkPresence, `{"since":91879201,"activities":[{"name":"x","type":0}],"status":"idle","afk":true}`, 0},
		{"presence without since", checkPresence, `{"activities":[],"status":"online","afk":false}`, 4001},
		{"presence bad status", checkPresence, `{"since":null,"activities":[],"status":"busy","afk":false}`, 4001},
		{"presence no afk", checkPresence, `{"since":null,"activities":[],"status":"online"}`, 4001},
		{"voice", func(d json.RawMessage) *closeErr { _, ce := parseVoice(d); return ce }, `{"guild_id":"41771983423143937","channel_id":null,"self_mute":false,"self_deaf":true}`, 0},
		{"voice no channel key", func(d json.RawMessage) *closeErr { _, ce := parseVoice(d); return ce }, `{"guild_id":"1","self_mute":false,"self_deaf":true}`, 4001},
		{"members query", func(d json.RawMessage) *closeErr { _, ce := parseMembers(d); return ce }, `{"guild_id":"1","query":"","limit":0}`, 0},
		{"members ids", func(d json.RawMessage) *closeErr { _, ce := parseMembers(d); return ce }, `{"guild_id":"1","user_ids":["2","3"],"nonce":"n"}`, 0},
		{"members both", func(d json.RawMessage) *closeErr { _, ce := parseMembers(d); return ce }, `{"guild_id":"1","query":"","limit":0,"user_ids":["2"]}`, 4001},
		{"members neither", func(d json.RawMessage) *closeErr { _, ce := parseMembers(d); return ce }, `{"guild_id":"1"}`, 4001},
		{"members query without limit", func(d json.RawMessage) *closeErr { _, ce := parseMembers(d); return ce }, `{"guild_id":"1","query":"a"}`, 4001},
		{"members guild list", func(d json.RawMessage) *closeErr { _, ce := parseMembers(d); return ce }, `{"guild_id":["1","2"],"query":"","limit":0}`, 4001},
		{"soundboard", func(d json.RawMessage) *closeErr { _, ce := parseGuildIDs(d); return ce }, `{"guild_ids":["1",2]}`, 0},
		{"soundboard not a list", func(d json.RawMessage) *closeErr { _, ce := parseGuildIDs(d); return ce }, `{"guild_ids":"1"}`, 4001},
		{"channel info", func(d json.RawMessage) *closeErr { _, ce := parseChannelInfo(d); return ce }, `{"guild_id":"1","fields":["status","voice_start_time"]}`, 0},
		{"channel info bad field", func(d json.RawMessage) *closeErr { _, ce := parseChannelInfo(d); return ce }, `{"guild_id":"1","fields":["topic"]}`, 4001},
	}
	for _, tt := range tests {
		var d json.RawMessage
		if tt.d != "" {
			d = json.RawMessage(tt.d)
		}
		if got := codeOf(tt.fn(d)); got != tt.code {
			t.Errorf("%s: %s → close %d, want %d", tt.name, tt.d, got, tt.code)
		}
	}
	req, _ := parseMembers(json.RawMessage(`{"guild_id":"1","user_ids":"5","nonce":"` + strings.Repeat("n", 33) + `"}`))
	if len(req.userIDs) != 1 || req.nonce != "" {
		t.Errorf("parseMembers: one id as a string and a 33-byte nonce = %+v, want one id and the nonce dropped", req)
	}
}

func TestParseAPIVersion(t *testing.T) {
	for in, want := range map[string]int{"10": 10, "9": 9, "6": 6, "": 6, "5": 0, "11": 0, "abc": 0, "10.0": 0} {
		got, ok := parseAPIVersion(in)
		if ok != (want != 0) || ok && got != want {
			t.Errorf("parseAPIVersion(%q) = %d, %v; want %d", in, got, ok, want)
		}
	}
}

// FuzzClientPayload feeds arbitrary payloads through every parser a client
// reaches: none may panic.
func FuzzClientPayload(f *testing.F) {
	for _, s := range []string{
		`{"op":2,"d":{"token":"t","properties":{},"intents":513,"shard":[0,1]}}`,
		`{"op":6,"d":{"token":"t","session_id":"s","seq":1}}`,
		`{"op":3,"d":{"since":null,"activities":[],"status":"online","afk":false}}`,
		`{"op":8,"d":{"guild_id":"1","user_ids":["1"]}}`,
		`{"op":43,"d":{"guild_id":"1","fields":["status"]}}`,
		`{"op":1,"d":null}`, `{"op":`, `[]`,
	} {
		f.Add([]byte(s))
	}
	rules := identifyRules{tokenOK: func(string) bool { return true }, apiVersion: 10, shardMultiple: 4}
	f.Fuzz(func(t *testing.T, b []byte) {
		env, ce := decodeEnvelope(b)
		if ce != nil {
			return
		}
		admit(phaseConnected, env.op)
		parseHeartbeat(env.d)
		parseIdentify(env.d, rules)
		parseResume(env.d)
		checkPresence(env.d)
		parseVoice(env.d)
		parseMembers(env.d)
		parseGuildIDs(env.d)
		parseChannelInfo(env.d)
	})
}
