package discord

import (
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"
)

func TestCloseCodeAction(t *testing.T) {
	tests := []struct {
		code CloseCode
		want CloseAction
	}{
		{4000, ActionResume}, {4001, ActionResume}, {4002, ActionResume},
		{4003, ActionReidentify}, {4004, ActionStop}, {4005, ActionReidentify},
		{4006, ActionReidentify}, {4007, ActionReidentify}, {4008, ActionResume},
		{4009, ActionReidentify}, {4010, ActionStop}, {4011, ActionStop},
		{4012, ActionStop}, {4013, ActionStop}, {4014, ActionStop},
		{1000, ActionReidentify}, {1001, ActionReidentify}, {1006, ActionResume},
		{1012, ActionResume}, {4999, ActionResume}, {3000, ActionResume},
	}
	for _, tt := range tests {
		if got := tt.code.Action(); got != tt.want {
			t.Errorf("CloseCode(%d).Action() = %v, want %v", tt.code, got, tt.want)
		}
	}
	fatal := map[CloseCode]bool{4004: true, 4010: true, 4011: true, 4012: true, 4013: true, 4014: true}
	for c := CloseCode(4000); c <= 4014; c++ {
		if got := c.Fatal(); got != fatal[c] {
			t.Errorf("CloseCode(%d).Fatal() = %v, want %v", c, got, fatal[c])
		}
		if c.Reason() == "" {
			t.Errorf("CloseCode(%d).Reason() is empty", c)
		}
	}
}

func TestCloseEndsSession(t *testing.T) {
	for _, c := range []CloseCode{1000, 1001} {
		if !c.EndsSession() {
			t.Errorf("CloseCode(%d).EndsSession() = false, want true", c)
		}
	}
	for _, c := range []CloseCode{1006, 1012, 4000, 4200, 4900} {
		if c.EndsSession() {
			t.Errorf("CloseCode(%d).EndsSession() = true, want false", c)
		}
	}
}

func TestCloseError(t *testing.T) {
	err := fmt.Errorf("shard 3: %w", &CloseError{Code: CloseRateLimited})
	if got := CloseStatus(err); got != CloseRateLimited {
		t.Errorf("CloseStatus(%v) = %d, want 4008", err, got)
	}
	if got := CloseStatus(errors.New("x")); got != -1 {
		t.Errorf("CloseStatus(plain) = %d, want -1", got)
	}
	if got, want := (&CloseError{Code: 4004}).Error(), "gateway closed with 4004: Authentication failed."; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	if got, want := (&CloseError{Code: 4321}).Error(), "gateway closed with 4321"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
}

func TestSnowflake(t *testing.T) {
	// Example from Discord's docs.
	s := Snowflake(175928847299117063)
	if got, want := s.Time().UnixMilli(), int64(1462015105796); got != want {
		t.Errorf("Time() = %d, want %d", got, want)
	}
	ts := time.Date(2021, 3, 4, 5, 6, 7, 8e6, time.UTC)
	n := NewSnowflake(ts, 1, 2, 3)
	if !n.Time().Equal(ts) {
		t.Errorf("NewSnowflake(%v).Time() = %v", ts, n.Time())
	}
	if got := uint64(n) & (1<<22 - 1); got != 1<<17|2<<12|3 {
		t.Errorf("low bits = %#x", got)
	}
	b, _ := json.Marshal(s)
	if string(b) != `"175928847299117063"` {
		t.Errorf("Marshal = %s", b)
	}
	for _, in := range []string{`"175928847299117063"`, `175928847299117063`} {
		var got Snowflake
		if err := json.Unmarshal([]byte(in), &got); err != nil || got != s {
			t.Errorf("Unmarshal(%s) = %d, %v", in, got, err)
		}
	}
	for _, bad := range []string{`""`, `"x1"`, `"-1"`, `"18446744073709551616"`} {
		var got Snowflake
		if err := json.Unmarshal([]byte(bad), &got); err == nil {
			t.Errorf("Unmarshal(%s) = %d, want error", bad, got)
		}
	}
}

func TestShardForGuild(t *testing.T) {
	// Example from Discord's docs: guild 41771983423143937 is on shard 6 of 16.
	if got := ShardForGuild(41771983423143937, 16); got != 6 {
		t.Errorf("ShardForGuild(41771983423143937, 16) = %d, want 6", got)
	}
	if got := ShardForGuild(41771983423143937, 0); got != 0 {
		t.Errorf("ShardForGuild(_, 0) = %d, want 0", got)
	}
	// Largest snowflake must not overflow into a negative shard.
	if got := ShardForGuild(^Snowflake(0), 7); got < 0 || got >= 7 {
		t.Errorf("ShardForGuild(max, 7) = %d", got)
	}
	for _, tt := range []struct{ shard, mc, want int }{{0, 16, 0}, {16, 16, 0}, {17, 16, 1}, {5, 1, 0}, {5, 0, 0}} {
		if got := ShardBucket(tt.shard, tt.mc); got != tt.want {
			t.Errorf("ShardBucket(%d, %d) = %d, want %d", tt.shard, tt.mc, got, tt.want)
		}
	}
}

func TestIntents(t *testing.T) {
	if IntentsAll != 53608447 || IntentsPrivileged != 0x8102 || IntentsNonPrivileged != 53575421 {
		t.Fatalf("masks: all=%d privileged=%#x non=%d", IntentsAll, IntentsPrivileged, IntentsNonPrivileged)
	}
	var sum Intents
	for _, n := range intentNames {
		sum |= n.bit
	}
	if sum != IntentsAll {
		t.Errorf("named intents = %#x, want %#x", sum, IntentsAll)
	}
	for _, bit := range []int{17, 18, 19, 22, 23, 26} {
		if (Intents(1) << bit).Valid() {
			t.Errorf("bit %d Valid() = true", bit)
		}
	}
	if got, want := (IntentGuilds | IntentGuildMessages | 1<<17).String(), "GUILDS|GUILD_MESSAGES|0x20000"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	if got, ok := IntentByName("MESSAGE_CONTENT"); !ok || got != IntentMessageContent {
		t.Errorf("IntentByName(MESSAGE_CONTENT) = %v, %v", got, ok)
	}
	for ev, want := range map[string]Intents{
		"MESSAGE_CREATE": IntentGuildMessages, "MESSAGE_REACTION_ADD": IntentGuildMessageReactions,
		"PRESENCE_UPDATE": IntentGuildPresences, "TYPING_START": IntentGuildMessageTyping,
		"GUILD_MEMBER_UPDATE": IntentGuildMembers, "GUILD_CREATE": IntentGuilds,
		"VOICE_STATE_UPDATE": IntentGuildVoiceStates, "VOICE_CHANNEL_EFFECT_SEND": IntentGuildVoiceStates,
		"VOICE_CHANNEL_STATUS_UPDATE": IntentGuilds, "THREAD_MEMBERS_UPDATE": IntentGuildMembers,
		"MESSAGE_POLL_VOTE_ADD": IntentGuildMessagePolls, "GUILD_BAN_ADD": IntentGuildModeration,
	} {
		if got, ok := IntentForEvent(ev); !ok || got != want {
			t.Errorf("IntentForEvent(%s) = %v, %v, want %v", ev, got, ok, want)
		}
	}
	for _, ev := range []string{"READY", "RESUMED", "INTERACTION_CREATE", "GUILD_MEMBERS_CHUNK"} {
		if got, ok := IntentForEvent(ev); ok {
			t.Errorf("IntentForEvent(%s) = %v, want none", ev, got)
		}
	}
}

func TestAppendFrame(t *testing.T) {
	tests := []struct {
		t    string
		s    int64
		op   Opcode
		d    []byte
		want string
	}{
		{"", 0, OpHeartbeatACK, nil, `{"t":null,"s":null,"op":11,"d":null}`},
		{"", 0, OpHello, []byte(`{"heartbeat_interval":41250}`), `{"t":null,"s":null,"op":10,"d":{"heartbeat_interval":41250}}`},
		{"READY", 1, OpDispatch, []byte(`{}`), `{"t":"READY","s":1,"op":0,"d":{}}`},
		{"", 0, OpInvalidSession, []byte(`false`), `{"t":null,"s":null,"op":9,"d":false}`},
	}
	for _, tt := range tests {
		got := string(AppendFrame(nil, tt.t, tt.s, tt.op, tt.d))
		if got != tt.want {
			t.Errorf("AppendFrame(%q, %d, %d) = %s, want %s", tt.t, tt.s, tt.op, got, tt.want)
		}
		var p Payload
		if err := json.Unmarshal([]byte(got), &p); err != nil || p.Op != tt.op || p.S != tt.s || p.T != tt.t {
			t.Errorf("round trip of %s = %+v, %v", got, p, err)
		}
	}
}

func TestOpcode(t *testing.T) {
	if OpHello.String() != "HELLO" || Opcode(5).String() != "OP(5)" {
		t.Errorf("String: %s %s", OpHello, Opcode(5))
	}
	if Opcode(5).Known() || !OpRequestChannelInfo.Known() {
		t.Error("Known")
	}
	for _, op := range []Opcode{OpDispatch, OpReconnect, OpInvalidSession, OpHello, OpHeartbeatACK} {
		if op.ClientSendable() {
			t.Errorf("%v.ClientSendable() = true", op)
		}
	}
}
