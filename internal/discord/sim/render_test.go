package sim

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"

	"github.com/gatehouse-dev/gatehouse/internal/discord"
)

func testRenderer(t testing.TB, guilds int) *renderer {
	t.Helper()
	tm, err := parseEventTemplates()
	if err != nil {
		t.Fatal(err)
	}
	return &renderer{w: newWorld(1, guilds), tmpls: tm, epochMS: 1_780_000_000_000}
}

// checkKeyOrder checks that every object in the JSON document b lists its
// keys in Discord's order: reverse alphabetical, except guild_id and then
// sim_event_id which come last.
func checkKeyOrder(t *testing.T, what string, b []byte) {
	t.Helper()
	if !json.Valid(b) {
		t.Fatalf("%s: invalid JSON: %.300s", what, b)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	var walk func() error
	walk = func() error {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		switch tok {
		case json.Delim('{'):
			var keys []string
			for dec.More() {
				k, err := dec.Token()
				if err != nil {
					return err
				}
				keys = append(keys, k.(string))
				if err := walk(); err != nil {
					return err
				}
			}
			dec.Token()
			check := slices.Clone(keys)
			for _, tail := range []string{"sim_event_id", "guild_id"} {
				if n := len(check); n > 0 && check[n-1] == tail {
					check = check[:n-1]
				}
			}
			for i := 1; i < len(check); i++ {
				if check[i-1] <= check[i] {
					return fmt.Errorf("keys %v: %q before %q is not Discord's order", keys, check[i-1], check[i])
				}
			}
		case json.Delim('['):
			for dec.More() {
				if err := walk(); err != nil {
					return err
				}
			}
			dec.Token()
		}
		return nil
	}
	if err := walk(); err != nil && err != io.EOF {
		t.Errorf("%s: %v in %.300s", what, err, b)
	}
}

// TestEventTemplates renders every type, variant and content mode.
func TestEventTemplates(t *testing.T) {
	r := testRenderer(t, 200)
	full := sessView{intents: discord.IntentsAll}
	plain := sessView{intents: discord.IntentsNonPrivileged}
	for typ := range numEvTypes {
		for v := range evTypes[typ].variants {
			for _, view := range []sessView{full, plain} {
				gi := int32(typ) * 7
				if evTypes[typ].dm {
					gi = noGuild
				}
				e := makeEntry(kindEvent, typ, uint8(v), uint64(1000+int(typ)*10+v), gi, 12345)
				b := r.appendDispatch(nil, e, 42, &view, nil, nil)
				what := fmt.Sprintf("%s variant %d content %v", evTypes[typ].name, v, view.intents.Has(discord.IntentMessageContent))
				checkKeyOrder(t, what, b)
				var env struct {
					T  string          `json:"t"`
					S  int64           `json:"s"`
					Op int             `json:"op"`
					D  json.RawMessage `json:"d"`
				}
				if err := json.Unmarshal(b, &env); err != nil {
					t.Fatalf("%s: %v", what, err)
				}
				if !strings.HasPrefix(string(b), `{"t":"`+evTypes[typ].name+`","s":42,"op":0,"d":{`) || env.T != evTypes[typ].name {
					t.Errorf("%s: frame starts %.60s", what, b)
				}
				if !strings.HasSuffix(string(env.D), fmt.Sprintf(`,"sim_event_id":%d}`, e.id())) {
					t.Errorf("%s: d does not end with sim_event_id: %.80s", what, env.D[max(0, len(env.D)-80):])
				}
				var d struct {
					GuildID     *discord.Snowflake `json:"guild_id"`
					Content     *string            `json:"content"`
					Embeds      []json.RawMessage  `json:"embeds"`
					Attachments []json.RawMessage  `json:"attachments"`
					Components  []json.RawMessage  `json:"components"`
				}
				json.Unmarshal(env.D, &d)
				switch {
				case evTypes[typ].dm && d.GuildID != nil:
					t.Errorf("%s: DM-like event has guild_id", what)
				case !evTypes[typ].dm && (d.GuildID == nil || *d.GuildID != r.w.table.get(gi).id):
					t.Errorf("%s: guild_id %v, want %v", what, d.GuildID, r.w.table.get(gi).id)
				}
				stripped := evTypes[typ].content && !view.intents.Has(discord.IntentMessageContent)
				if stripped && (d.Content == nil || *d.Content != "" || len(d.Embeds)+len(d.Attachments)+len(d.Components) > 0) {
					t.Errorf("%s: not stripped: %.300s", what, env.D)
				}
				if typ == evMessageCreate && !stripped && (d.Content == nil || *d.Content == "") {
					t.Errorf("%s: no content with MESSAGE_CONTENT", what)
				}
				if again := r.appendDispatch(nil, e, 42, &view, nil, nil); !bytes.Equal(again, b) {
					t.Errorf("%s: rendering twice differs", what)
				}
			}
		}
	}
}

func TestMessageSizes(t *testing.T) {
	r := testRenderer(t, 100)
	view := sessView{intents: discord.IntentsAll}
	var total int
	const n = 1000
	for i := range n {
		h := mix64(uint64(i))
		e := makeEntry(kindEvent, evMessageCreate, pickVariant(evMessageCreate, h), uint64(i+1), int32(h%100), 0)
		total += len(r.appendDispatch(nil, e, 1, &view, nil, nil))
	}
	if avg := total / n; avg < 1000 || avg > 2500 {
		t.Errorf("MESSAGE_CREATE averages %d bytes, want about 1-2 KB", avg)
	}
}

func TestGuildCreate(t *testing.T) {
	r := testRenderer(t, 3000)
	var small, large, huge int32 = -1, -1, -1
	for i := range r.w.table.len() {
		switch m := r.w.table.get(i).members; {
		case m <= 50 && small < 0:
			small = i
		case m > 1000 && m < 20000 && large < 0:
			large = i
		case m > maxPresenceMembers && huge < 0:
			huge = i
		}
	}
	type gc struct {
		Large       bool              `json:"large"`
		MemberCount int               `json:"member_count"`
		Members     []json.RawMessage `json:"members"`
		Presences   []json.RawMessage `json:"presences"`
		Unavailable *bool             `json:"unavailable"`
		Name        string            `json:"name"`
	}
	tests := []struct {
		name        string
		guild       int32
		view        sessView
		wantLarge   bool
		wantMembers func(count int) bool
	}{
		{"small, no presences: only the bot", small, sessView{intents: discord.IntentsNonPrivileged, largeThreshold: 250}, false,
			func(c int) bool { return c == 1 }},
		{"small, presences: all members", small, sessView{intents: discord.IntentsAll, largeThreshold: 250}, false,
			func(c int) bool { return c == int(r.w.table.get(small).members) }},
		{"large, presences: online members only", large, sessView{intents: discord.IntentsAll, largeThreshold: 250}, true,
			func(c int) bool { return c > 1 && c <= largeOnlineCap+1 }},
		{"over 75k, presences: only the bot", huge, sessView{intents: discord.IntentsAll, largeThreshold: 250}, true,
			func(c int) bool { return c == 1 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.guild < 0 {
				t.Skip("no such guild in the test world")
			}
			b := r.appendDispatch(nil, makeEntry(kindGuildCreate, 0, 0, 0, tt.guild, 0), 2, &tt.view, nil, nil)
			checkKeyOrder(t, tt.name, b)
			var env struct {
				D gc `json:"d"`
			}
			if err := json.Unmarshal(b, &env); err != nil {
				t.Fatal(err)
			}
			d := env.D
			if d.Large != tt.wantLarge || d.Unavailable == nil || *d.Unavailable || d.Name == "" {
				t.Errorf("large %v unavailable %v name %q; want large %v, unavailable false, a name", d.Large, d.Unavailable, d.Name, tt.wantLarge)
			}
			if !tt.wantMembers(len(d.Members)) {
				t.Errorf("%d members listed (member_count %d)", len(d.Members), d.MemberCount)
			}
			if len(b) < 1024 {
				t.Errorf("GUILD_CREATE is %d bytes, want a realistic size", len(b))
			}
		})
	}
}

func TestReadyAndHello(t *testing.T) {
	r := testRenderer(t, 50)
	d := r.readyD(readyInfo{v: 10, shard: &[2]int{1, 2}, sessionID: strings.Repeat("ab", 16), resumeURL: "ws://h/resume",
		guilds: []int32{1, 2, 3}, appFlags: appFlags(0), botDiscrim: r.botDiscriminator()})
	checkKeyOrder(t, "READY", d)
	var ready discord.Ready
	if err := json.Unmarshal(d, &ready); err != nil {
		t.Fatal(err)
	}
	if ready.V != 10 || len(ready.Guilds) != 3 || !ready.Guilds[0].Unavailable || *ready.Shard != [2]int{1, 2} || ready.User.ID != r.w.botID {
		t.Errorf("READY = %+v", ready)
	}
	hello := r.helloFrame(41250)
	if want := `{"t":null,"s":null,"op":10,"d":{"heartbeat_interval":41250,"_trace":`; !strings.HasPrefix(string(hello), want) || !json.Valid(hello) {
		t.Errorf("HELLO = %s, want it to start %s", hello, want)
	}
	r.noTrace = true
	if got := string(r.helloFrame(1000)); got != `{"t":null,"s":null,"op":10,"d":{"heartbeat_interval":1000}}` {
		t.Errorf("HELLO without trace = %s", got)
	}
	for name, b := range map[string][]byte{"users/@me": r.userMeJSON(), "applications/@me": r.applicationMeJSON(appFlags(0), 50)} {
		if !json.Valid(b) {
			t.Errorf("%s: invalid JSON %s", name, b)
		}
	}
}

func TestChunkRender(t *testing.T) {
	r := testRenderer(t, 100)
	var gi int32
	for r.w.table.get(gi).members < 30 {
		gi++
	}
	req := &chunkReq{guild: gi, nonce: "abc", presences: true, all: 2500, chunks: 3, notFound: []discord.Snowflake{5}}
	view := sessView{intents: discord.IntentsAll}
	for i := range 3 {
		b := r.appendDispatch(nil, makeEntry(kindChunk, 0, 0, uint64(7)<<24|uint64(i), gi, 0), 10, &view, nil, req)
		checkKeyOrder(t, "GUILD_MEMBERS_CHUNK", b)
		var env struct {
			D struct {
				Members    []json.RawMessage `json:"members"`
				ChunkIndex int               `json:"chunk_index"`
				ChunkCount int               `json:"chunk_count"`
				Nonce      string            `json:"nonce"`
			} `json:"d"`
		}
		json.Unmarshal(b, &env)
		want := []int{1000, 1000, 500}[i]
		if len(env.D.Members) != want || env.D.ChunkIndex != i || env.D.ChunkCount != 3 || env.D.Nonce != "abc" {
			t.Errorf("chunk %d: %d members, index %d of %d, nonce %q", i, len(env.D.Members), env.D.ChunkIndex, env.D.ChunkCount, env.D.Nonce)
		}
	}
}

func TestRenderAllocs(t *testing.T) {
	r := testRenderer(t, 100)
	view := sessView{intents: discord.IntentsNonPrivileged}
	buf := make([]byte, 0, 64<<10)
	for typ := range numEvTypes {
		e := makeEntry(kindEvent, typ, 0, 99, 5, 100)
		if evTypes[typ].dm {
			e = makeEntry(kindEvent, typ, 0, 99, noGuild, 100)
		}
		allocs := testing.AllocsPerRun(100, func() {
			var start int
			b, start := frameStart(buf[:0])
			b = r.appendDispatch(b, e, 12345, &view, nil, nil)
			frameEnd(b, start, wsText)
		})
		if allocs != 0 {
			t.Errorf("rendering %s allocates %.0f times, want 0", evTypes[typ].name, allocs)
		}
	}
}

func TestAppendQuoted(t *testing.T) {
	for _, s := range []string{"", "plain", `q"uo\te`, "tab\tnl\ncr\r\x01", "ünïcödé 👍", "bad\xffutf8"} {
		b := appendQuoted(nil, s)
		var back string
		if err := json.Unmarshal(b, &back); err != nil {
			t.Errorf("appendQuoted(%q) = %s: %v", s, b, err)
			continue
		}
		if want := strings.ToValidUTF8(s, "\uFFFD"); back != want {
			t.Errorf("appendQuoted(%q) round trip = %q, want %q", s, back, want)
		}
	}
}
