package gateway

import (
	"slices"
	"testing"

	"github.com/gatehouse-dev/gatehouse/internal/discord"
)

func TestGuildCount(t *testing.T) {
	ev := func(typ, d string) discord.Header {
		h, err := discord.ScanHeader([]byte(`{"op":0,"s":1,"t":"` + typ + `","d":` + d + `}`))
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	ready := ev("READY", `{"v":10,"guilds":[{"id":"1","unavailable":true},{"id":"2","unavailable":true},{"id":"3","unavailable":true}]}`)
	create := func(id string) discord.Header { return ev("GUILD_CREATE", `{"id":"`+id+`","name":"x"}`) }
	leave := func(id string) discord.Header { return ev("GUILD_DELETE", `{"id":"`+id+`"}`) }
	outage := func(id string) discord.Header { return ev("GUILD_DELETE", `{"id":"`+id+`","unavailable":true}`) }
	c1, c2, c3, c9 := create("1"), create("2"), create("3"), create("9")
	msg := ev("MESSAGE_CREATE", `{"guild_id":"2"}`)
	for _, tc := range []struct {
		name    string
		resume  int
		pending []uint64
		events  []discord.Header
		want    int
		due     []uint64
	}{
		{"ready alone", 0, nil, []discord.Header{ready}, 3, []uint64{1, 2, 3}},
		{"ready then its guilds", 0, nil, []discord.Header{ready, c1, c2, c3, msg}, 3, nil},
		{"a join after the stream", 0, nil, []discord.Header{ready, c1, c2, c3, c9}, 4, nil},
		{"a join during the stream", 0, nil, []discord.Header{ready, c1, c9, c2}, 4, []uint64{3}},
		{"a leave", 0, nil, []discord.Header{ready, c1, c2, c3, c9, leave("9")}, 3, nil},
		{"a leave during the stream", 0, nil, []discord.Header{ready, c1, leave("3"), c2}, 2, nil},
		{"an outage and its recovery", 0, nil, []discord.Header{ready, c1, c2, c3, outage("2"), c2}, 3, nil},
		{"an outage not over", 0, nil, []discord.Header{ready, c1, c2, c3, outage("2")}, 3, []uint64{2}},
		{"a leave during an outage, then a join", 0, nil, []discord.Header{ready, c1, c2, c3, outage("2"), leave("2"), c9}, 3, nil},
		{"a new session starts over", 0, nil, []discord.Header{ready, c1, c2, c3, c9, ready}, 3, []uint64{1, 2, 3}},
		{"resumed", 2500, nil, []discord.Header{msg, c9, leave("9"), leave("1")}, 2499, nil},
		{"resumed mid-outage", 10, []uint64{2}, []discord.Header{c2}, 10, nil},
		{"never below zero", 0, nil, []discord.Header{leave("1")}, 0, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var g guildCount
			g.resumed(tc.resume, tc.pending)
			for _, h := range tc.events {
				g.dispatch(h)
			}
			if g.n != tc.want {
				t.Errorf("count %d, want %d", g.n, tc.want)
			}
			if due := g.pendingIDs(); !slices.Equal(due, tc.due) {
				t.Errorf("due %v, want %v", due, tc.due)
			}
		})
	}
}

func TestGuildCountAllocs(t *testing.T) {
	h, _ := discord.ScanHeader([]byte(`{"op":0,"s":1,"t":"MESSAGE_CREATE","d":{"guild_id":"2"}}`))
	c, _ := discord.ScanHeader([]byte(`{"op":0,"s":1,"t":"GUILD_CREATE","d":{"id":"2"}}`))
	var g guildCount
	if n := testing.AllocsPerRun(100, func() { g.dispatch(h); g.dispatch(c) }); n != 0 {
		t.Errorf("%v allocations per event, want 0", n)
	}
}
