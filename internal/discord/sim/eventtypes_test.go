package sim

import (
	"bytes"
	"errors"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gatehouse-dev/gatehouse/internal/discord"
)

func TestGeneratedEventTypes(t *testing.T) {
	want := []string{
		"MESSAGE_CREATE", "MESSAGE_UPDATE", "MESSAGE_DELETE", "MESSAGE_REACTION_ADD", "MESSAGE_REACTION_REMOVE",
		"TYPING_START", "PRESENCE_UPDATE", "GUILD_MEMBER_UPDATE", "VOICE_STATE_UPDATE", "GUILD_MEMBER_ADD",
	}
	if diff := cmp.Diff(want, GeneratedEventTypes()); diff != "" {
		t.Errorf("GeneratedEventTypes() mismatch (-want +got):\n%s", diff)
	}
}

func TestEventTypesConfig(t *testing.T) {
	for name, types := range map[string][]string{
		"unknown":       {"MESSAGE_CREATE", "GUILD_CREATE"},
		"lower case":    {"message_create"},
		"empty name":    {""},
		"padded":        {" MESSAGE_CREATE"},
		"not generated": {"INTERACTION_CREATE"},
	} {
		_, err := Config{EventTypes: types}.withDefaults()
		if !errors.Is(err, ErrConfig) {
			t.Errorf("%s: withDefaults(EventTypes %q) = %v, want ErrConfig", name, types, err)
			continue
		}
		if !strings.Contains(err.Error(), "EventTypes") || !strings.Contains(err.Error(), "MESSAGE_CREATE, MESSAGE_UPDATE") {
			t.Errorf("%s: error %q does not name the field and the accepted types", name, err)
		}
	}
	in := []string{"MESSAGE_CREATE", "TYPING_START", "MESSAGE_CREATE"}
	c, err := Config{EventTypes: in}.withDefaults()
	if err != nil {
		t.Fatalf("withDefaults(EventTypes %q) = %v", in, err)
	}
	in[0] = "changed"
	if c.EventTypes[0] != "MESSAGE_CREATE" {
		t.Errorf("Config.EventTypes aliases the caller's slice")
	}
}

// TestMixEventTypes checks that EventTypes restricts the mix, and that
// intents still apply.
func TestMixEventTypes(t *testing.T) {
	tests := []struct {
		name    string
		intents discord.Intents
		only    []string
		dm      bool
		want    []uint8 // the types picked; nil: none can be
	}{
		{"messages only", discord.IntentsNonPrivileged, []string{"MESSAGE_CREATE"}, false, []uint8{evMessageCreate}},
		{"DM messages on shard 0", discord.IntentGuildMessages | discord.IntentDirectMessages, []string{"MESSAGE_CREATE"}, true,
			[]uint8{evMessageCreate, evDMMessageCreate}},
		{"two types", discord.IntentsAll, []string{"TYPING_START", "PRESENCE_UPDATE"}, false, []uint8{evTypingStart, evPresenceUpdate}},
		{"intent missing", discord.IntentGuilds | discord.IntentGuildMessageReactions, []string{"MESSAGE_CREATE"}, true, nil},
		{"one of two allowed", discord.IntentGuildMessages, []string{"MESSAGE_CREATE", "PRESENCE_UPDATE"}, false, []uint8{evMessageCreate}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := newMix(tt.intents, tt.only)
			seen := map[uint8]bool{}
			for i := range uint64(5000) {
				typ, ok := m.pick(mix64(i), tt.dm)
				if !ok {
					if tt.want != nil {
						t.Fatalf("pick = !ok, want one of %v", tt.want)
					}
					return
				}
				seen[typ] = true
			}
			var got []uint8
			for typ := range seen {
				got = append(got, typ)
			}
			slices.Sort(got)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("types picked mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

// TestShellEventTypes runs a server restricted to MESSAGE_CREATE: a session
// with every intent gets only MESSAGE_CREATE, one without GUILD_MESSAGES
// gets no generated event at all.
func TestShellEventTypes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newTestServer(t, Config{Token: "tok", Guilds: 40, HeartbeatInterval: time.Hour, EventRate: 100,
			EventTypes: []string{"MESSAGE_CREATE"}})
		a := dialPipe(t, s, "/", "")
		a.send(identifyJSON("tok", 0, 2, discord.IntentsAll))
		time.Sleep(6 * time.Second)
		b := dialPipe(t, s, "/", "")
		b.send(identifyJSON("tok", 1, 2, discord.IntentGuilds|discord.IntentGuildMessageReactions|discord.IntentGuildMessageTyping))
		time.Sleep(5 * time.Second)
		synctest.Wait()
		if n := a.count(isEvent); n < 900 {
			t.Errorf("shard 0 got %d events in 11s at 100/s, want about 1100", n)
		}
		for _, f := range a.got() {
			if isEvent(f) && f.t != "MESSAGE_CREATE" {
				t.Fatalf("shard 0 got %s, want MESSAGE_CREATE only", f.t)
			}
		}
		if n := b.count(isEvent); n != 0 {
			t.Errorf("shard 1 without GUILD_MESSAGES got %d events, want 0", n)
		}
	})
}

// TestIngestWorkloadMessageSize checks the size of the ingest benchmark's
// events: MESSAGE_CREATE only, to sessions with GUILDS | GUILD_MESSAGES (no
// MESSAGE_CONTENT, so content, embeds, attachments and components are
// stripped as Discord does). They should average about 1 KB.
func TestIngestWorkloadMessageSize(t *testing.T) {
	r := testRenderer(t, 500)
	view := sessView{intents: discord.IntentGuilds | discord.IntentGuildMessages}
	m := newMix(view.intents, []string{"MESSAGE_CREATE"})
	var total, lo, hi int
	lo = 1 << 30
	const n = 5000
	for i := range n {
		h := mix64(uint64(i))
		typ, ok := m.pick(h, false)
		if !ok || typ != evMessageCreate {
			t.Fatalf("pick = %d, %v; want MESSAGE_CREATE", typ, ok)
		}
		e := makeEntry(kindEvent, typ, pickVariant(typ, h>>20), uint64(i+1), int32(h>>32%500), int64(i))
		b := r.appendDispatch(nil, e, int64(i+1), &view, nil, nil)
		if !bytes.HasPrefix(b, []byte(`{"t":"MESSAGE_CREATE"`)) {
			t.Fatalf("frame starts %.40s", b)
		}
		total += len(b)
		lo, hi = min(lo, len(b)), max(hi, len(b))
	}
	avg := total / n
	t.Logf("MESSAGE_CREATE without MESSAGE_CONTENT: average %d bytes, %d to %d", avg, lo, hi)
	if avg < 900 || avg > 1100 {
		t.Errorf("average %d bytes, want about 1 KB (900-1100)", avg)
	}
}
