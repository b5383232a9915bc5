package discord

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// Real-shaped frames, in Discord's key order unless named otherwise.
const (
	helloFrame    = `{"t":null,"s":null,"op":10,"d":{"heartbeat_interval":41250,"_trace":["[\"gateway-prd-us-east1-b-0568\",{\"micros\":0.0}]"]}}`
	ackFrame      = `{"t":null,"s":null,"op":11,"d":null}`
	reconnect     = `{"t":null,"s":null,"op":7,"d":null}`
	invalidFrame  = `{"t":null,"s":null,"op":9,"d":false}`
	resumedFrame  = `{"t":"RESUMED","s":1234,"op":0,"d":{"_trace":["[\"gateway-prd-us-east1-c-7k2p\",{\"micros\":1204,\"calls\":[\"id_lookup\"]}]"]}}`
	readyFrame    = `{"t":"READY","s":1,"op":0,"d":{"v":10,"user_settings":{},"user":{"verified":true,"username":"gatehouse","mfa_enabled":false,"id":"1100000000000000007","global_name":null,"flags":0,"email":null,"discriminator":"0000","bot":true,"avatar":null},"session_type":"normal","session_id":"9a3f1c0e5b7d4e2a8c6b0d1f3e5a7c9b","resume_gateway_url":"wss://gateway-us-east1-c.discord.gg","relationships":[],"private_channels":[],"presences":[],"guilds":[{"unavailable":true,"id":"1100000000000000001"},{"unavailable":true,"id":"1100000000000000002"}],"guild_join_requests":[],"geo_ordered_rtc_regions":["us-east","us-central"],"auth":{},"application":{"id":"1100000000000000007","flags":565248},"_trace":["[\"gateway-prd-us-east1-c-7k2p\",{\"micros\":40151}]"]}}`
	presenceFrame = `{"t":"PRESENCE_UPDATE","s":77,"op":0,"d":{"user":{"id":"1000000000000000042"},"status":"online","guild_id":"1100000000000000003","client_status":{"desktop":"online"},"broadcast":null,"activities":[{"type":0,"name":"Factorio","id":"ec0b28a579ecb4bd","created_at":1764000000000,"timestamps":{"start":1764000000000}}]}}`
	guildDelete   = `{"t":"GUILD_DELETE","s":9,"op":0,"d":{"unavailable":true,"id":"1100000000000000004"}}`
	guildUpdate   = `{"t":"GUILD_UPDATE","s":10,"op":0,"d":{"name":"Renamed","guild_id":"1","id":"1100000000000000005"}}`
	// guildCreateSmall has "guild_id" and "id" keys in nested objects before
	// and after d's own id, and a stray top-level guild_id that GUILD_CREATE
	// does not route by.
	guildCreateSmall = `{"t":"GUILD_CREATE","s":2,"op":0,"d":{"voice_states":[{"user_id":"1000000000000000001","guild_id":"111","channel_id":"222"}],"threads":[{"id":"333","guild_id":"111"}],"members":[{"user":{"id":"444"},"guild_id":"111"}],"guild_id":"555","id":"1100000000000000006","channels":[{"id":"666","guild_id":"111"}]}}`
)

// messageCreateFrame returns a MESSAGE_CREATE dispatch of exactly size bytes
// (at least 1000) whose d.guild_id is its last member, as Discord
// sends it, after a nested message_reference.guild_id. With dFirst, d comes
// first and op, s and t after it.
func messageCreateFrame(size int, dFirst bool) []byte {
	d := func(content string) string {
		return `{"type":0,"tts":false,"timestamp":"2026-11-22T14:51:07.123000+00:00","referenced_message":null,` +
			`"pinned":false,"nonce":"1310000000000000000","mentions":[],"mention_roles":[],"mention_everyone":false,` +
			`"member":{"roles":["1100000000000000101","1100000000000000102"],"premium_since":null,"pending":false,"nick":null,` +
			`"mute":false,"joined_at":"2024-03-01T10:00:00.000000+00:00","flags":0,"deaf":false,"communication_disabled_until":null,` +
			`"banner":null,"avatar":null},"id":"1310000000000000001","flags":0,"embeds":[],"edited_timestamp":null,` +
			`"content":"` + content + `","components":[],"channel_id":"1200000000000000001",` +
			`"author":{"username":"someone","public_flags":0,"id":"1000000000000000001","global_name":"Some \"One\"",` +
			`"discriminator":"0","avatar":"a1b2c3d4e5f60718293a4b5c6d7e8f90"},` +
			`"attachments":[],"message_reference":{"type":0,"message_id":"1309999999999999999","guild_id":"999","channel_id":"1200000000000000001"},` +
			`"guild_id":"1100000000000000000"}`
	}
	frame := func(content string) string {
		if dFirst {
			return `{"d":` + d(content) + `,"op":0,"s":42,"t":"MESSAGE_CREATE"}`
		}
		return `{"t":"MESSAGE_CREATE","s":42,"op":0,"d":` + d(content) + `}`
	}
	content := `hi \"world\" \\ \u00e9 `
	pad := size - len(frame(content))
	if pad > 0 {
		content += strings.Repeat("lorem ipsum ", pad/12+1)[:pad]
	}
	return []byte(frame(content))
}

// guildCreateFrame returns a GUILD_CREATE dispatch of at least size bytes,
// its members in reverse alphabetical order as Discord sends them: the big
// arrays (presences, members, each with nested guild_id keys) come before
// d.id, the channels after it.
func guildCreateFrame(size int) []byte {
	var b bytes.Buffer
	b.WriteString(`{"t":"GUILD_CREATE","s":3,"op":0,"d":{"voice_states":[],"version":1764000000000,"verification_level":1,`)
	b.WriteString(`"threads":[{"id":"1300000000000000001","guild_id":"7","name":"thread \"one\"","type":11}],`)
	b.WriteString(`"system_channel_id":"1200000000000000001","stickers":[],"roles":[{"id":"1100000000000000008","name":"@everyone","permissions":"104320577","color":0}],`)
	member := func(n int) string {
		return fmt.Sprintf(`{"user":{"username":"user%d","id":"%d","global_name":null,"discriminator":"0","avatar":null},`+
			`"roles":[],"premium_since":null,"pending":false,"nick":"nick \\ %d","mute":false,"joined_at":"2024-03-01T10:00:00.000000+00:00",`+
			`"guild_id":"7","flags":0,"deaf":false}`, n, 1000000000000000000+n, n)
	}
	b.WriteString(`"presences":[{"user":{"id":"1000000000000000001"},"status":"online","guild_id":"7","client_status":{"web":"online"},"activities":[]}],`)
	b.WriteString(`"members":[`)
	for n := 0; b.Len() < size*3/4; n++ {
		if n > 0 {
			b.WriteByte(',')
		}
		b.WriteString(member(n))
	}
	b.WriteString(`],"member_count":1000,"large":true,"joined_at":"2024-03-01T10:00:00.000000+00:00",`)
	b.WriteString(`"id":"1100000000000000000","icon":null,"features":["COMMUNITY"],"emojis":[],"channels":[`)
	for n := 0; b.Len() < size-4; n++ {
		if n > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"type":0,"topic":null,"position":%d,"permission_overwrites":[],"name":"channel-%d","id":"%d","guild_id":"7"}`, n, n, 1200000000000000000+n)
	}
	b.WriteString(`]}}`)
	return b.Bytes()
}

// hdr builds a Header for the tables; t "" means nil and d "" means absent.
func hdr(op Opcode, s int64, t string, guild Snowflake, d string) Header {
	h := Header{Op: op, S: s, GuildID: guild}
	if t != "" {
		h.T = []byte(t)
	}
	if d != "" {
		h.D = []byte(d)
	}
	return h
}

// dOf returns the d value of a Discord-ordered frame: everything after
// "d": up to the final brace.
func dOf(frame string) string {
	i := strings.Index(frame, `"op":`)
	i += strings.Index(frame[i:], `"d":`) + len(`"d":`)
	return strings.TrimSpace(frame[i : len(frame)-1])
}

func TestScanHeaderFrames(t *testing.T) {
	msg := string(messageCreateFrame(1024, false))
	msgDFirst := string(messageCreateFrame(1024, true))
	guild := string(guildCreateFrame(20 << 10))
	tests := []struct {
		name string
		in   string
		want Header
	}{
		{"HELLO", helloFrame, hdr(OpHello, 0, "", 0, dOf(helloFrame))},
		{"HEARTBEAT_ACK", ackFrame, hdr(OpHeartbeatACK, 0, "", 0, "null")},
		{"RECONNECT", reconnect, hdr(OpReconnect, 0, "", 0, "null")},
		{"INVALID_SESSION", invalidFrame, hdr(OpInvalidSession, 0, "", 0, "false")},
		{"READY", readyFrame, hdr(OpDispatch, 1, "READY", 0, dOf(readyFrame))},
		{"RESUMED", resumedFrame, hdr(OpDispatch, 1234, "RESUMED", 0, dOf(resumedFrame))},
		{"PRESENCE_UPDATE", presenceFrame, hdr(OpDispatch, 77, "PRESENCE_UPDATE", 1100000000000000003, dOf(presenceFrame))},
		{"GUILD_DELETE", guildDelete, hdr(OpDispatch, 9, "GUILD_DELETE", 1100000000000000004, dOf(guildDelete))},
		{"GUILD_UPDATE", guildUpdate, hdr(OpDispatch, 10, "GUILD_UPDATE", 1100000000000000005, dOf(guildUpdate))},
		{"GUILD_CREATE small", guildCreateSmall, hdr(OpDispatch, 2, "GUILD_CREATE", 1100000000000000006, dOf(guildCreateSmall))},
		{"GUILD_CREATE 20KB", guild, hdr(OpDispatch, 3, "GUILD_CREATE", 1100000000000000000, dOf(guild))},
		{"MESSAGE_CREATE", msg, hdr(OpDispatch, 42, "MESSAGE_CREATE", 1100000000000000000, dOf(msg))},
		{"MESSAGE_CREATE d first", msgDFirst, hdr(OpDispatch, 42, "MESSAGE_CREATE", 1100000000000000000,
			msgDFirst[len(`{"d":`):strings.LastIndex(msgDFirst, `,"op"`)])},
		{"client heartbeat", `{"op":1,"d":251}`, hdr(OpHeartbeat, 0, "", 0, "251")},
		{"client identify", `{"op":2,"d":{"token":"t","properties":{"os":"linux"},"intents":513,"shard":[0,1]}}`,
			hdr(OpIdentify, 0, "", 0, `{"token":"t","properties":{"os":"linux"},"intents":513,"shard":[0,1]}`)},
		{"no d", `{"op":1}`, hdr(OpHeartbeat, 0, "", 0, "")},
		{"AppendFrame", string(AppendFrame(nil, "MESSAGE_REACTION_ADD", 5, OpDispatch, []byte(`{"user_id":"1","guild_id":"2"}`))),
			hdr(OpDispatch, 5, "MESSAGE_REACTION_ADD", 2, `{"user_id":"1","guild_id":"2"}`)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkScan(t, tt.in, tt.want)
		})
	}
}

// checkScan checks ScanHeader(in) against want, and that T and D alias in
// with their capacity cut.
func checkScan(t *testing.T, in string, want Header) {
	t.Helper()
	p := []byte(in)
	got, err := ScanHeader(p)
	if err != nil {
		t.Fatalf("ScanHeader(%.200s) = %v, want %s", in, err, fmtHeader(want))
	}
	if diff := cmp.Diff(fmtHeader(want), fmtHeader(got)); diff != "" {
		t.Errorf("ScanHeader(%.200s) mismatch (-want +got):\n%s", in, diff)
	}
	for name, b := range map[string][]byte{"T": got.T, "D": got.D} {
		if b == nil {
			continue
		}
		if cap(b) != len(b) {
			t.Errorf("ScanHeader(%.200s): cap(%s) = %d, want %d", in, name, cap(b), len(b))
		}
		if !aliases(p, b) {
			t.Errorf("ScanHeader(%.200s): %s does not alias the payload", in, name)
		}
	}
}

// fmtHeader shows a Header with its byte fields as strings, and nil apart
// from empty.
func fmtHeader(h Header) string {
	str := func(b []byte) string {
		if b == nil {
			return "nil"
		}
		return fmt.Sprintf("%q", b)
	}
	return fmt.Sprintf("op=%d s=%d t=%s guild=%d d=%s", h.Op, h.S, str(h.T), h.GuildID, str(h.D))
}

// aliases reports whether b is a subslice of p's memory.
func aliases(p, b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for i := range p {
		if &p[i] == &b[0] {
			return len(p)-i >= len(b)
		}
	}
	return false
}

// semanticsTests are the cases of TestScanHeaderSemantics, shared with the
// fuzz test as seeds.
var semanticsTests = []struct {
	name string
	in   string
	want Header
}{
	// Key order and whitespace.
	{"op s t d", `{"op":0,"s":3,"t":"A","d":{"guild_id":"9"}}`, hdr(0, 3, "A", 9, `{"guild_id":"9"}`)},
	{"d op t s", `{"d":{"guild_id":"9"},"op":0,"t":"A","s":3}`, hdr(0, 3, "A", 9, `{"guild_id":"9"}`)},
	{"t after d picks id", `{"op":0,"d":{"guild_id":"5","id":"6"},"s":1,"t":"GUILD_CREATE"}`, hdr(0, 1, "GUILD_CREATE", 6, `{"guild_id":"5","id":"6"}`)},
	{"whitespace", " \t\r\n{ \"t\" :\n\"A\" ,\t\"s\" : 3 , \"op\"\r: 0 , \"d\" : { \"guild_id\" : \"9\" , \"x\" : [ 1 , { } ] } } \n",
		hdr(0, 3, "A", 9, `{ "guild_id" : "9" , "x" : [ 1 , { } ] }`)},
	{"other members skipped", `{"x":{"op":5,"t":"B","d":{"guild_id":"1"}},"op":0,"y":[{"s":2}],"t":"A","s":1,"z":"op"}`, hdr(0, 1, "A", 0, "")},
	{"top-level guild_id ignored", `{"guild_id":"7","op":0,"t":"A","s":1,"d":{}}`, hdr(0, 1, "A", 0, "{}")},
	{"empty d", `{"t":"A","s":1,"op":0,"d":{}}`, hdr(0, 1, "A", 0, "{}")},
	{"d array", `{"t":"A","s":1,"op":0,"d":[{"guild_id":"1"}]}`, hdr(0, 1, "A", 0, `[{"guild_id":"1"}]`)},
	{"d string", `{"t":"A","s":1,"op":0,"d":"x\"}"}`, hdr(0, 1, "A", 0, `"x\"}"`)},

	// Duplicates: the last wins.
	{"dup op", `{"op":1,"d":null,"op":11}`, hdr(11, 0, "", 0, "null")},
	{"dup t", `{"t":"A","op":0,"t":"B"}`, hdr(0, 0, "B", 0, "")},
	{"dup t null", `{"t":"A","op":0,"t":null}`, hdr(0, 0, "", 0, "")},
	{"dup s", `{"s":1,"op":0,"s":null}`, hdr(0, 0, "", 0, "")},
	{"dup d", `{"d":{"guild_id":"1"},"op":0,"d":{"x":1}}`, hdr(0, 0, "", 0, `{"x":1}`)},
	{"dup d scalar", `{"d":{"guild_id":"1"},"op":0,"d":3}`, hdr(0, 0, "", 0, `3`)},
	{"dup guild_id without early exit", `{"op":0,"d":{"guild_id":"1","guild_id":"2"},"t":"A","s":1}`, hdr(0, 1, "A", 2, `{"guild_id":"1","guild_id":"2"}`)},
	{"dup guild_id null", `{"op":0,"d":{"guild_id":"1","guild_id":null}}`, hdr(0, 0, "", 0, `{"guild_id":"1","guild_id":null}`)},
	{"op null then op", `{"op":null,"op":3}`, hdr(3, 0, "", 0, "")},
	{"bad values replaced", `{"op":"x","t":0,"s":1.5,"d":{"guild_id":"1"},"op":0,"t":"A","s":2}`, hdr(0, 2, "A", 1, `{"guild_id":"1"}`)},
	{"bad t then null", `{"op":0,"t":"a","t":null}`, hdr(0, 0, "", 0, "")},

	// Escaped keys match after unescaping; keys are case-sensitive.
	{"escaped op", `{"o\u0070":2,"\u0074":"A","\/s":5}`, hdr(2, 0, "A", 0, "")},
	{"escaped guild_id", `{"op":0,"d":{"guild\u005fid":"5"}}`, hdr(0, 0, "", 5, `{"guild\u005fid":"5"}`)},
	{"escaped d", `{"op":0,"\u0064":{"guild_id":"5"}}`, hdr(0, 0, "", 5, `{"guild_id":"5"}`)},
	{"key with escaped nul", `{"op":0,"op\u0000":9,"d\n":1}`, hdr(0, 0, "", 0, "")},
	{"key with non-ASCII escape", `{"op":0,"\u00f8p":9,"\u016fp":9,"\u0164":1,"\ud83d\ude00":1}`, hdr(0, 0, "", 0, "")},
	{"uppercase keys ignored", `{"op":1,"OP":2,"T":"A","S":3,"D":4}`, hdr(1, 0, "", 0, "")},
	{"long key", `{"op":1,"guild_id_x":2,"\u0067uild_idx":3}`, hdr(1, 0, "", 0, "")},

	// Guild IDs.
	{"guild_id number", `{"op":0,"d":{"guild_id":41771983423143937}}`, hdr(0, 0, "", 41771983423143937, `{"guild_id":41771983423143937}`)},
	{"guild_id max", `{"op":0,"d":{"guild_id":"18446744073709551615"}}`, hdr(0, 0, "", 1<<64-1, `{"guild_id":"18446744073709551615"}`)},
	{"guild_id max number", `{"op":0,"d":{"guild_id":18446744073709551615}}`, hdr(0, 0, "", 1<<64-1, `{"guild_id":18446744073709551615}`)},
	{"guild_id overflow", `{"op":0,"d":{"guild_id":"18446744073709551616"}}`, hdr(0, 0, "", 0, `{"guild_id":"18446744073709551616"}`)},
	{"guild_id overflow number", `{"op":0,"d":{"guild_id":99999999999999999999}}`, hdr(0, 0, "", 0, `{"guild_id":99999999999999999999}`)},
	{"guild_id leading zeros", `{"op":0,"d":{"guild_id":"007"}}`, hdr(0, 0, "", 7, `{"guild_id":"007"}`)},
	{"guild_id empty", `{"op":0,"d":{"guild_id":""}}`, hdr(0, 0, "", 0, `{"guild_id":""}`)},
	{"guild_id negative", `{"op":0,"d":{"guild_id":"-1"}}`, hdr(0, 0, "", 0, `{"guild_id":"-1"}`)},
	{"guild_id negative number", `{"op":0,"d":{"guild_id":-1}}`, hdr(0, 0, "", 0, `{"guild_id":-1}`)},
	{"guild_id fraction", `{"op":0,"d":{"guild_id":1.5}}`, hdr(0, 0, "", 0, `{"guild_id":1.5}`)},
	{"guild_id exponent", `{"op":0,"d":{"guild_id":1e3}}`, hdr(0, 0, "", 0, `{"guild_id":1e3}`)},
	{"guild_id escaped", `{"op":0,"d":{"guild_id":"\u0031"}}`, hdr(0, 0, "", 0, `{"guild_id":"\u0031"}`)},
	{"guild_id letters", `{"op":0,"d":{"guild_id":"12a"}}`, hdr(0, 0, "", 0, `{"guild_id":"12a"}`)},
	{"guild_id null", `{"op":0,"d":{"guild_id":null}}`, hdr(0, 0, "", 0, `{"guild_id":null}`)},
	{"guild_id object", `{"op":0,"d":{"guild_id":{"guild_id":"1"}}}`, hdr(0, 0, "", 0, `{"guild_id":{"guild_id":"1"}}`)},
	{"guild_id true", `{"op":0,"d":{"guild_id":true}}`, hdr(0, 0, "", 0, `{"guild_id":true}`)},
	{"id ignored outside guild events", `{"t":"A","s":1,"op":0,"d":{"id":"5"}}`, hdr(0, 1, "A", 0, `{"id":"5"}`)},
	{"guild_id ignored in guild events", `{"t":"GUILD_DELETE","s":1,"op":0,"d":{"guild_id":"5"}}`, hdr(0, 1, "GUILD_DELETE", 0, `{"guild_id":"5"}`)},
	{"nested only", `{"t":"A","s":1,"op":0,"d":{"x":{"guild_id":"5"},"y":[{"guild_id":"6"}]}}`, hdr(0, 1, "A", 0, `{"x":{"guild_id":"5"},"y":[{"guild_id":"6"}]}`)},
	{"key text inside strings", `{"t":"A","s":1,"op":0,"d":{"c":"\"guild_id\":\"5\"","e":"\\","f":"\\\"guild_id\":\"6\\","guild_id":"7"}}`,
		hdr(0, 1, "A", 7, `{"c":"\"guild_id\":\"5\"","e":"\\","f":"\\\"guild_id\":\"6\\","guild_id":"7"}`)},

	// op, s and t values.
	{"op negative", `{"op":-1}`, hdr(-1, 0, "", 0, "")},
	{"op -0", `{"op":-0}`, hdr(0, 0, "", 0, "")},
	{"op max", `{"op":9223372036854775807}`, hdr(1<<63-1, 0, "", 0, "")},
	{"op min", `{"op":-9223372036854775808}`, hdr(-1<<63, 0, "", 0, "")},
	{"s negative", `{"op":0,"s":-5}`, hdr(0, -5, "", 0, "")},
	{"s max", `{"op":0,"s":9223372036854775807}`, hdr(0, 1<<63-1, "", 0, "")},
	{"t with digits", `{"op":0,"t":"VOICE_CHANNEL_STATUS_UPDATE_2"}`, hdr(0, 0, "VOICE_CHANNEL_STATUS_UPDATE_2", 0, "")},

	// Early exit: the rest of d is not read once the guild ID is found.
	{"early exit skips a malformed rest", `{"t":"A","s":1,"op":0,"d":{"guild_id":"5","x":[}}`, hdr(0, 1, "A", 5, `{"guild_id":"5","x":[}`)},
	{"early exit takes the first guild_id", `{"t":"A","s":1,"op":0,"d":{"guild_id":"5","guild_id":"6","x":{}}}`, hdr(0, 1, "A", 5, `{"guild_id":"5","guild_id":"6","x":{}}`)},
	// Reading d's last members backward.
	{"tail: last member", `{"t":"A","s":1,"op":0,"d":{"x":[}],"guild_id":"5"}}`, hdr(0, 1, "A", 5, `{"x":[}],"guild_id":"5"}`)},
	{"tail: the last duplicate wins", `{"t":"A","s":1,"op":0,"d":{"guild_id":"5","guild_id":"6"}}`, hdr(0, 1, "A", 6, `{"guild_id":"5","guild_id":"6"}`)},
	{"tail: behind scalars", `{"t":"A","s":1,"op":0,"d":{"x":{},"guild_id":"5","n":-1.5e3,"b":true,"z":null,"s":"a b"}}`, hdr(0, 1, "A", 5, `{"x":{},"guild_id":"5","n":-1.5e3,"b":true,"z":null,"s":"a b"}`)},
	{"tail: as a number", `{"t":"A","s":1,"op":0,"d":{"guild_id":7}}`, hdr(0, 1, "A", 7, `{"guild_id":7}`)},
	{"tail: with spaces", `{"t":"A","s":1,"op":0,"d":{ "guild_id" : "5" , "k" : 1 } } `, hdr(0, 1, "A", 5, `{ "guild_id" : "5" , "k" : 1 }`)},
	{"tail: id for guild events", `{"t":"GUILD_UPDATE","s":1,"op":0,"d":{"guild_id":"9","id":"5"}}`, hdr(0, 1, "GUILD_UPDATE", 5, `{"guild_id":"9","id":"5"}`)},
	{"tail: escaped member stops it", `{"t":"A","s":1,"op":0,"d":{"guild_id":"5","s":"a\"b"}}`, hdr(0, 1, "A", 5, `{"guild_id":"5","s":"a\"b"}`)},
	{"tail: quote in a string", `{"t":"A","s":1,"op":0,"d":{"c":"\",\"guild_id\":\"6","guild_id":"5"}}`, hdr(0, 1, "A", 5, `{"c":"\",\"guild_id\":\"6","guild_id":"5"}`)},
	{"tail: nested key is not d's", `{"t":"A","s":1,"op":0,"d":{"guild_id":"5","m":{"guild_id":"6"}}}`, hdr(0, 1, "A", 5, `{"guild_id":"5","m":{"guild_id":"6"}}`)},
	{"member after d read in full", `{"t":"A","s":1,"op":0,"d":{"guild_id":"5"},"x":1}`, hdr(0, 1, "A", 5, `{"guild_id":"5"}`)},
	{"member after d overrides", `{"t":"A","s":1,"op":0,"d":{"guild_id":"5"},"s":2,"t":"B" }`, hdr(0, 2, "B", 5, `{"guild_id":"5"}`)},
	{"second d after failed tail", `{"t":"A","s":1,"op":0,"d":{"guild_id":"1"},"d":{"guild_id":"2"},"x":1}`, hdr(0, 1, "A", 2, `{"guild_id":"2"}`)},
	{"early exit with spaces", `{"t":"A","s":1,"op":0,"d":{"guild_id":"5" } } `, hdr(0, 1, "A", 5, `{"guild_id":"5" }`)},
}

func TestScanHeaderSemantics(t *testing.T) {
	for _, tt := range semanticsTests {
		t.Run(tt.name, func(t *testing.T) {
			checkScan(t, tt.in, tt.want)
		})
	}
}

// errorTests are the cases of TestScanHeaderErrors, shared with the fuzz
// test as seeds.
var errorTests = []struct {
	name string
	in   string
}{
	{"empty", ``},
	{"spaces", " \n"},
	{"null", `null`},
	{"array", `[{"op":1}]`},
	{"string", `"op"`},
	{"number", `1`},
	{"empty object", `{}`},
	{"unclosed", `{"op":1`},
	{"unclosed after comma", `{"op":1,`},
	{"trailing comma", `{"op":1,}`},
	{"missing colon", `{"op" 1}`},
	{"missing comma", `{"op":1 "s":2}`},
	{"missing value", `{"op":}`},
	{"unquoted key", `{op:1}`},
	{"single quotes", `{'op':1}`},
	{"trailing garbage", `{"op":1}x`},
	{"two objects", `{"op":1}{"op":2}`},
	{"BOM", "\ufeff{\"op\":1}"},
	{"NUL after", "{\"op\":1}\x00"},
	{"vertical tab", "{\"op\":1,\v\"s\":1}"},

	{"no op", `{"t":"A","s":1,"d":{}}`},
	{"op null", `{"op":null}`},
	{"op null last", `{"op":1,"op":null}`},
	{"op bad last", `{"op":1,"op":1.5}`},
	{"s bad last", `{"op":1,"s":1,"s":"1"}`},
	{"t bad last", `{"op":1,"t":"A","t":"a"}`},
	{"t bad before d", `{"t":"a","s":1,"op":0,"d":{"guild_id":"1"}}`},
	{"s bad before d", `{"t":"A","s":"1","op":0,"d":{"guild_id":"1"}}`},
	{"op bad before d", `{"t":"A","s":1,"op":[],"d":{"guild_id":"1"}}`},
	{"bad value malformed", `{"op":1,"t":"a]}`},
	{"op string", `{"op":"1"}`},
	{"op fraction", `{"op":1.0}`},
	{"op exponent", `{"op":1e0}`},
	{"op bool", `{"op":true}`},
	{"op object", `{"op":{}}`},
	{"op overflow", `{"op":9223372036854775808}`},
	{"op underflow", `{"op":-9223372036854775809}`},
	{"op leading zero", `{"op":01}`},
	{"op plus", `{"op":+1}`},
	{"op minus only", `{"op":-}`},
	{"op nul", `{"op":nul}`},
	{"op nullx", `{"op":nullx}`},

	{"s fraction", `{"op":0,"s":1.5}`},
	{"s string", `{"op":0,"s":"1"}`},
	{"s overflow", `{"op":0,"s":9223372036854775808}`},
	{"s bool", `{"op":0,"s":false}`},

	{"t empty", `{"op":0,"t":""}`},
	{"t lowercase", `{"op":0,"t":"message_create"}`},
	{"t escaped", `{"op":0,"t":"MESSAGE\u005fCREATE"}`},
	{"t escaped quote", `{"op":0,"t":"A\"B"}`},
	{"t space", `{"op":0,"t":"A B"}`},
	{"t dot", `{"op":0,"t":"A.B"}`},
	{"t number", `{"op":0,"t":1}`},
	{"t bool", `{"op":0,"t":false}`},
	{"t object", `{"op":0,"t":{}}`},
	{"t unterminated", `{"op":0,"t":"A`},

	{"string control char", "{\"op\":0,\"x\":\"a\nb\"}"},
	{"string bad escape", `{"op":0,"x":"\x41"}`},
	{"string short unicode", `{"op":0,"x":"\u12"}`},
	{"string bad hex", `{"op":0,"x":"\u12g4"}`},
	{"string unterminated", `{"op":0,"x":"abc`},
	{"string ends in backslash", `{"op":0,"x":"abc\`},
	{"key control char", "{\"op\":0,\"x\ty\":1}"},
	{"number leading zero", `{"op":0,"x":00}`},
	{"number dot", `{"op":0,"x":1.}`},
	{"number exponent", `{"op":0,"x":1e}`},
	{"number exponent sign", `{"op":0,"x":1e+}`},
	{"number starts with dot", `{"op":0,"x":.5}`},
	{"number hex", `{"op":0,"x":0x10}`},
	{"number inf", `{"op":0,"x":Infinity}`},
	{"literal", `{"op":0,"x":tru}`},
	{"literal case", `{"op":0,"x":nulL}`},

	{"d unclosed", `{"op":0,"d":{"a":1}`},
	{"d mismatched", `{"op":0,"d":{"a":[1,2}}}`},
	{"d array mismatched", `{"op":0,"d":[{"a":1]]}`},
	{"d trailing comma", `{"op":0,"d":{"a":1,}}`},
	{"d array trailing comma", `{"op":0,"d":[1,]}`},
	{"d nested trailing comma", `{"op":0,"d":{"a":{"b":1,}}}`},
	{"d missing colon", `{"op":0,"d":{"a" 1}}`},
	{"d key not string", `{"op":0,"d":{1:1}}`},
	{"d nested key not string", `{"op":0,"d":{"a":{1:1}}}`},
	{"d bad guild_id string", `{"op":0,"d":{"guild_id":"1}}`},
	{"d bad guild_id number", `{"op":0,"d":{"guild_id":1.}}`},
	{"d guild_id missing value", `{"op":0,"d":{"guild_id":}}`},
	{"d guild_id bad object", `{"op":0,"d":{"guild_id":{]}}`},
	{"d missing", `{"op":0,"d":}`},
	{"d garbage", `{"op":0,"d":x}`},

	// Early exit needs the tail to be two closing braces.
	{"early exit truncated", `{"t":"A","s":1,"op":0,"d":{"guild_id":"5"}`},
	{"early exit one brace", `{"t":"A","s":1,"op":0,"d":{"guild_id":"5"`},
	{"early exit guild object truncated", `{"t":"A","s":1,"op":0,"d":{"guild_id":{}`},
	{"early exit bad tail", `{"t":"A","s":1,"op":0,"d":{"guild_id":"5"}]`},
}

func TestScanHeaderErrors(t *testing.T) {
	for _, tt := range errorTests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ScanHeader([]byte(tt.in))
			if !errors.Is(err, ErrBadPayload) {
				t.Errorf("ScanHeader(%q) = %s, %v, want %v", tt.in, fmtHeader(got), err, ErrBadPayload)
			}
			if err != nil && !cmp.Equal(got, Header{}) {
				t.Errorf("ScanHeader(%q) = %s with an error, want a zero Header", tt.in, fmtHeader(got))
			}
		})
	}
}

// nested returns {"op":1,"d":…} with d nested so that the payload holds
// depth arrays and objects in all, the envelope included.
func nested(depth int) string {
	inner := depth - 1
	var b strings.Builder
	b.WriteString(`{"op":1,"d":`)
	for i := range inner {
		if i%2 == 0 {
			b.WriteString(`[`)
		} else {
			b.WriteString(`{"a":`)
		}
	}
	b.WriteString(`0`)
	for i := inner - 1; i >= 0; i-- {
		if i%2 == 0 {
			b.WriteString(`]`)
		} else {
			b.WriteString(`}`)
		}
	}
	b.WriteString(`}`)
	return b.String()
}

func TestScanHeaderNesting(t *testing.T) {
	for _, depth := range []int{2, 3, 64, 65, 66, 129, 130, maxNesting - 1, maxNesting} {
		in := nested(depth)
		if _, err := ScanHeader([]byte(in)); err != nil {
			t.Errorf("ScanHeader(depth %d) = %v, want nil", depth, err)
		}
		if _, err := ScanHeader([]byte(in[:len(in)-2] + "}")); !errors.Is(err, ErrBadPayload) {
			t.Errorf("ScanHeader(depth %d, unclosed) = %v, want %v", depth, err, ErrBadPayload)
		}
	}
	if _, err := ScanHeader([]byte(nested(maxNesting + 1))); !errors.Is(err, ErrBadPayload) {
		t.Errorf("ScanHeader(depth %d) = %v, want %v", maxNesting+1, err, ErrBadPayload)
	}
	// encoding/json draws the line at the same depth.
	for _, depth := range []int{maxNesting, maxNesting + 1} {
		_, err := ScanHeader([]byte(nested(depth)))
		_, refErr := reference([]byte(nested(depth)))
		if (err == nil) != (refErr == nil) {
			t.Errorf("depth %d: ScanHeader = %v, encoding/json = %v", depth, err, refErr)
		}
	}
}

func TestScanHeaderEarlyExit(t *testing.T) {
	guild := guildCreateFrame(100 << 10)
	tests := []struct {
		name  string
		in    []byte
		early bool
	}{
		{"MESSAGE_CREATE", messageCreateFrame(1024, false), true},
		{"MESSAGE_CREATE d first", messageCreateFrame(1024, true), false},
		{"GUILD_CREATE", guild, true},
		{"PRESENCE_UPDATE", []byte(presenceFrame), true},
		{"HELLO", []byte(helloFrame), false},
		{"no s", []byte(`{"t":"A","op":0,"d":{"guild_id":"1"}}`), false},
		{"op null", []byte(`{"t":"A","s":1,"op":null,"d":{"guild_id":"1"},"op":0}`), false},
		{"id outside guild events", []byte(`{"t":"A","s":1,"op":0,"d":{"id":"1"}}`), false},
	}
	for _, tt := range tests {
		h, n, _, err := scanHeader(tt.in)
		if err != nil {
			t.Errorf("scanHeader(%s) = %v", tt.name, err)
			continue
		}
		if early := n < len(tt.in); early != tt.early {
			t.Errorf("scanHeader(%s) read %d of %d bytes, want early exit %v", tt.name, n, len(tt.in), tt.early)
		}
		if tt.early && &h.D[len(h.D)-1] != &tt.in[len(tt.in)-2] {
			t.Errorf("scanHeader(%s): D ends with %q, want it to end before the payload's last byte", tt.name, h.D[max(0, len(h.D)-20):])
		}
	}
	// In a GUILD_CREATE, d.id follows the members and their nested guild_ids.
	if h, n, _, _ := scanHeader(guild); n < len(guild)/2 || h.GuildID != 1100000000000000000 {
		t.Errorf("scanHeader(GUILD_CREATE) = guild %d after %d bytes, want guild 1100000000000000000 after more than half", h.GuildID, n)
	}
	// Discord's MESSAGE_CREATE ends with guild_id: only the envelope and the
	// last member are read.
	msg := messageCreateFrame(1024, false)
	if h, n, tail, _ := scanHeader(msg); tail == 0 || len(msg)-tail > 40 || n > 60 || h.GuildID == 0 {
		t.Errorf("scanHeader(MESSAGE_CREATE) = guild %d, read %d bytes forward and from %d of %d backward; want the tail only", h.GuildID, n, tail, len(msg))
	}
}

func TestHeaderMethods(t *testing.T) {
	h, err := ScanHeader([]byte(presenceFrame))
	if err != nil {
		t.Fatal(err)
	}
	if !h.IsDispatch() || !h.TypeIs("PRESENCE_UPDATE") || h.TypeIs("PRESENCE") || h.TypeIs("") {
		t.Errorf("ScanHeader(PRESENCE_UPDATE): IsDispatch = %v, TypeIs(PRESENCE_UPDATE, PRESENCE, \"\") = %v %v %v, want true, true false false",
			h.IsDispatch(), h.TypeIs("PRESENCE_UPDATE"), h.TypeIs("PRESENCE"), h.TypeIs(""))
	}
	h, err = ScanHeader([]byte(ackFrame))
	if err != nil {
		t.Fatal(err)
	}
	if h.IsDispatch() || !h.TypeIs("") {
		t.Errorf("ScanHeader(ACK): IsDispatch, TypeIs(\"\") = %v, %v, want false, true", h.IsDispatch(), h.TypeIs(""))
	}
	if n := testing.AllocsPerRun(100, func() { _ = h.TypeIs("MESSAGE_CREATE") }); n != 0 {
		t.Errorf("TypeIs allocates %v times, want 0", n)
	}
}

func TestScanHeaderAllocs(t *testing.T) {
	for _, tt := range []struct {
		name string
		in   []byte
	}{
		{"MESSAGE_CREATE 1KB", messageCreateFrame(1024, false)},
		{"MESSAGE_CREATE 1KB d first", messageCreateFrame(1024, true)},
		{"GUILD_CREATE 100KB", guildCreateFrame(100 << 10)},
		{"deep", []byte(nested(maxNesting))},
		{"error", []byte(`{"op":0,"d":{"a":[1,2}}}`)},
	} {
		n := testing.AllocsPerRun(20, func() { _, _ = ScanHeader(tt.in) })
		if n != 0 {
			t.Errorf("ScanHeader(%s) allocates %v times, want 0", tt.name, n)
		}
	}
}

func BenchmarkScanHeader(b *testing.B) {
	for _, bb := range []struct {
		name string
		in   []byte
	}{
		{"HELLO", []byte(helloFrame)},
		{"MESSAGE_CREATE_1KB", messageCreateFrame(1024, false)},
		{"MESSAGE_CREATE_1KB_d_first", messageCreateFrame(1024, true)},
		{"GUILD_CREATE_100KB", guildCreateFrame(100 << 10)},
	} {
		b.Run(bb.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(bb.in)))
			for b.Loop() {
				if _, err := ScanHeader(bb.in); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
