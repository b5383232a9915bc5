package sim

import (
	"fmt"
	"strconv"
	"strings"
)

// Generated events are rendered from templates parsed once at start: runs of
// pre-encoded JSON with holes for the per-event values. Objects list their
// keys in Discord's order (reverse alphabetical, as its Erlang maps encode,
// with guild_id added last); sim_event_id follows as d's last key.

// hole is a per-event value in a template.
type hole uint8

const (
	hNone hole = iota
	hGuildID
	hChannelID
	hVoiceChannelID
	hDMChannelID
	hMessageID
	hRefMessageID
	hUserID
	hUsername
	hGlobalName
	hAvatar
	hUser2ID
	hBotID
	hAppID
	hTimestamp    // the event's time, ISO 8601
	hTimestamp2   // an earlier time (the edited message's creation)
	hUnix         // the event's time, Unix seconds
	hUnixMS       // the event's time, Unix milliseconds
	hUnixMSStart  // an earlier time, Unix milliseconds
	hUnixMSEnd    // a later time, Unix milliseconds
	hNonce        // a snowflake-like nonce
	hRoleID       // a role of the guild
	hJoinedAt     // the member's joined_at
	hStatus       // online, idle or dnd
	hPlatform     // desktop, mobile or web
	hGame         // a game name
	hSong         // a song title
	hArtist       // an artist
	hStatusText   // a custom status
	hSession      // 32 hex digits
	hHex16        // 16 hex digits
	hEmoji        // a unicode emoji
	hNick         // a nickname
	hContentShort // message text
	hContentMedium
	hContentLong
	hSelfMute // true or false
	numHoles
)

var holeNames = map[string]hole{
	"guild_id": hGuildID, "channel_id": hChannelID, "voice_channel_id": hVoiceChannelID, "dm_channel_id": hDMChannelID,
	"message_id": hMessageID, "ref_message_id": hRefMessageID, "user_id": hUserID, "username": hUsername,
	"global_name": hGlobalName, "avatar": hAvatar, "user2_id": hUser2ID, "bot_id": hBotID, "app_id": hAppID,
	"ts": hTimestamp, "ts2": hTimestamp2, "unix": hUnix, "unix_ms": hUnixMS, "unix_ms_start": hUnixMSStart,
	"unix_ms_end": hUnixMSEnd, "nonce": hNonce, "role_id": hRoleID, "joined_at": hJoinedAt, "status": hStatus,
	"platform": hPlatform, "game": hGame, "song": hSong, "artist": hArtist, "status_text": hStatusText,
	"session": hSession, "hex16": hHex16, "emoji": hEmoji, "nick": hNick, "content_short": hContentShort,
	"content_medium": hContentMedium, "content_long": hContentLong, "self_mute": hSelfMute,
}

// seg is a literal run followed by a hole (hNone for the last run).
type seg struct {
	lit  []byte
	hole hole
}

// tmpl is a parsed template.
type tmpl struct {
	segs []seg
	size int // literal bytes, a lower bound of the rendered size
}

// parseTmpl parses a template in which {{name}} marks a hole.
func parseTmpl(src string) (tmpl, error) {
	var t tmpl
	for {
		i := strings.Index(src, "{{")
		if i < 0 {
			t.segs = append(t.segs, seg{lit: []byte(src)})
			t.size += len(src)
			return t, nil
		}
		j := strings.Index(src[i:], "}}")
		if j < 0 {
			return t, fmt.Errorf("unclosed hole in %q", src[i:])
		}
		name := src[i+2 : i+j]
		h, ok := holeNames[name]
		if !ok {
			return t, fmt.Errorf("unknown hole %q", name)
		}
		t.segs = append(t.segs, seg{lit: []byte(src[:i]), hole: h})
		t.size += i
		src = src[i+j+2:]
	}
}

// Reusable pieces of templates. [[x]] marks a static part that differs
// between the full and the MESSAGE_CONTENT-stripped version of a template.
const (
	tUserFull = `{"username":"{{username}}","public_flags":0,"primary_guild":null,"id":"{{user_id}}","global_name":"{{global_name}}","display_name":"{{global_name}}","discriminator":"0","collectibles":null,"clan":null,"bot":false,"avatar_decoration_data":null,"avatar":"{{avatar}}"}`
	tAuthor   = `{"username":"{{username}}","public_flags":0,"primary_guild":null,"id":"{{user_id}}","global_name":"{{global_name}}","discriminator":"0","collectibles":null,"clan":null,"avatar_decoration_data":null,"avatar":"{{avatar}}"}`
	tMember   = `{"roles":["{{role_id}}"],"premium_since":null,"pending":false,"nick":null,"mute":false,"joined_at":"{{joined_at}}","flags":0,"deaf":false,"communication_disabled_until":null,"banner":null,"avatar":null}`
	tMemberU  = `{"user":` + tUserFull + `,"roles":["{{role_id}}"],"premium_since":null,"pending":false,"nick":null,"mute":false,"joined_at":"{{joined_at}}","flags":0,"deaf":false,"communication_disabled_until":null,"banner":null,"avatar":null}`
	tEmbed    = `[{"url":"https://example.com/articles/{{hex16}}","type":"article","title":"What we learned running ten thousand shards on a single weekend","thumbnail":{"width":1200,"url":"https://example.com/images/{{hex16}}.jpg","proxy_url":"https://images-ext-1.discordapp.net/external/{{session}}/https/example.com/images/{{hex16}}.jpg","placeholder_version":1,"placeholder":"3PcNDwLGpneJd4h3eIiHd3eId3B3iHc=","height":630,"flags":0},"provider":{"name":"Example Engineering"},"description":"A long weekend, a lot of reconnects and one very patient identify queue: notes from moving a large bot to a new gateway proxy, with graphs.","content_scan_version":1}]`
	tAttach   = `[{"width":1920,"url":"https://cdn.discordapp.com/attachments/{{channel_id}}/{{ref_message_id}}/screenshot.png?ex=6a1b2c3d&is=6a19dabd&hm={{session}}{{session}}&","size":482113,"proxy_url":"https://media.discordapp.net/attachments/{{channel_id}}/{{ref_message_id}}/screenshot.png?ex=6a1b2c3d&is=6a19dabd&hm={{session}}{{session}}&","placeholder_version":1,"placeholder":"WAgKFwRneHd3h4d4h4iIeHeIaA==","id":"{{ref_message_id}}","height":1080,"filename":"screenshot.png","content_type":"image/png","content_scan_version":2}]`
	tButtons  = `[{"type":1,"id":1,"components":[{"url":"https://example.com/docs","type":2,"style":5,"label":"Read the docs","id":2}]}]`

	tMessageHead = `{"type":0,"tts":false,"timestamp":"{{ts}}","pinned":false,"nonce":"{{nonce}}","mentions":[],"mention_roles":[],"mention_everyone":false,"member":` + tMember + `,"id":"{{message_id}}","flags":0,`
	tMessageTail = `"channel_id":"{{channel_id}}","author":` + tAuthor + `,"attachments":[[attachments]],"guild_id":"{{guild_id}}"`
)

// evTemplates holds the template sources of each event type's variants.
var evTemplates = [numEvTypes][]string{
	evMessageCreate: {
		tMessageHead + `"embeds":[],"edited_timestamp":null,"content":"[[content_short]]","components":[],` + strings.ReplaceAll(tMessageTail, "[[attachments]]", "[]"),
		tMessageHead + `"embeds":[],"edited_timestamp":null,"content":"[[content_medium]]","components":[],` + strings.ReplaceAll(tMessageTail, "[[attachments]]", "[]"),
		tMessageHead + `"embeds":[[embeds]],"edited_timestamp":null,"content":"[[content_short]] https://example.com/articles/{{hex16}}","components":[],` + strings.ReplaceAll(tMessageTail, "[[attachments]]", "[]"),
		tMessageHead + `"embeds":[],"edited_timestamp":null,"content":"[[content_short]]","components":[[components]],` + tMessageTail,
		// A reply: type 19 with the referenced message.
		`{"type":19,"tts":false,"timestamp":"{{ts}}","referenced_message":{"type":0,"tts":false,"timestamp":"{{ts2}}","pinned":false,"mentions":[],"mention_roles":[],"mention_everyone":false,"id":"{{ref_message_id}}","flags":0,"embeds":[],"edited_timestamp":null,"content":"[[content_long]]","components":[],"channel_id":"{{channel_id}}","author":` + tAuthor + `,"attachments":[]},"pinned":false,"nonce":"{{nonce}}","message_reference":{"type":0,"message_id":"{{ref_message_id}}","guild_id":"{{guild_id}}","channel_id":"{{channel_id}}"},"mentions":[],"mention_roles":[],"mention_everyone":false,"member":` + tMember + `,"id":"{{message_id}}","flags":0,"embeds":[],"edited_timestamp":null,"content":"[[content_medium]]","components":[],` + strings.ReplaceAll(tMessageTail, "[[attachments]]", "[]"),
	},
	evMessageUpdate: {
		`{"type":0,"tts":false,"timestamp":"{{ts2}}","pinned":false,"mentions":[],"mention_roles":[],"mention_everyone":false,"member":` + tMember + `,"id":"{{ref_message_id}}","flags":0,"embeds":[],"edited_timestamp":"{{ts}}","content":"[[content_short]] (edited)","components":[],` + strings.ReplaceAll(tMessageTail, "[[attachments]]", "[]"),
		`{"type":0,"tts":false,"timestamp":"{{ts2}}","pinned":false,"mentions":[],"mention_roles":[],"mention_everyone":false,"member":` + tMember + `,"id":"{{ref_message_id}}","flags":0,"embeds":[[embeds]],"edited_timestamp":"{{ts}}","content":"[[content_medium]]","components":[],` + strings.ReplaceAll(tMessageTail, "[[attachments]]", "[]"),
	},
	evMessageDelete: {
		`{"id":"{{ref_message_id}}","channel_id":"{{channel_id}}","guild_id":"{{guild_id}}"`,
	},
	evReactionAdd: {
		`{"user_id":"{{user_id}}","type":0,"message_id":"{{ref_message_id}}","message_author_id":"{{user2_id}}","member":` + tMemberU + `,"emoji":{"name":"{{emoji}}","id":null},"channel_id":"{{channel_id}}","burst":false,"guild_id":"{{guild_id}}"`,
	},
	evReactionRemove: {
		`{"user_id":"{{user_id}}","type":0,"message_id":"{{ref_message_id}}","emoji":{"name":"{{emoji}}","id":null},"channel_id":"{{channel_id}}","burst":false,"guild_id":"{{guild_id}}"`,
	},
	evTypingStart: {
		`{"user_id":"{{user_id}}","timestamp":{{unix}},"member":` + tMemberU + `,"channel_id":"{{channel_id}}","guild_id":"{{guild_id}}"`,
	},
	evPresenceUpdate: {
		`{"user":{"id":"{{user_id}}"},"status":"{{status}}","client_status":{"{{platform}}":"{{status}}"},"broadcast":null,"activities":[],"guild_id":"{{guild_id}}"`,
		`{"user":{"id":"{{user_id}}"},"status":"{{status}}","client_status":{"{{platform}}":"{{status}}"},"broadcast":null,"activities":[{"type":0,"timestamps":{"start":{{unix_ms_start}}},"session_id":"{{session}}","name":"{{game}}","id":"{{hex16}}","created_at":{{unix_ms}},"application_id":"{{nonce}}"}],"guild_id":"{{guild_id}}"`,
		`{"user":{"id":"{{user_id}}"},"status":"{{status}}","client_status":{"{{platform}}":"{{status}}"},"broadcast":null,"activities":[{"type":4,"state":"{{status_text}}","name":"Custom Status","id":"custom","emoji":{"name":"{{emoji}}"},"created_at":{{unix_ms}}},{"type":2,"timestamps":{"start":{{unix_ms_start}},"end":{{unix_ms_end}}},"sync_id":"{{hex16}}","state":"{{artist}}","session_id":"{{session}}","party":{"id":"spotify:{{user_id}}"},"name":"Spotify","id":"spotify:1","flags":48,"details":"{{song}}","created_at":{{unix_ms}},"assets":{"large_text":"{{song}}","large_image":"spotify:ab67616d0000b273{{session}}"}}],"guild_id":"{{guild_id}}"`,
		`{"user":{"id":"{{user_id}}"},"status":"offline","client_status":{},"broadcast":null,"activities":[],"guild_id":"{{guild_id}}"`,
	},
	evMemberUpdate: {
		`{"user":` + tUserFull + `,"roles":["{{role_id}}"],"premium_since":null,"pending":false,"nick":null,"mute":false,"joined_at":"{{joined_at}}","flags":0,"deaf":false,"communication_disabled_until":null,"banner":null,"avatar":null,"guild_id":"{{guild_id}}"`,
		`{"user":` + tUserFull + `,"roles":["{{role_id}}"],"premium_since":null,"pending":false,"nick":"{{nick}}","mute":false,"joined_at":"{{joined_at}}","flags":0,"deaf":false,"communication_disabled_until":null,"banner":null,"avatar":null,"guild_id":"{{guild_id}}"`,
	},
	evVoiceStateUpdate: {
		`{"user_id":"{{user_id}}","suppress":false,"session_id":"{{session}}","self_video":false,"self_mute":{{self_mute}},"self_deaf":false,"request_to_speak_timestamp":null,"mute":false,"member":` + tMemberU + `,"deaf":false,"channel_id":"{{voice_channel_id}}","guild_id":"{{guild_id}}"`,
		`{"user_id":"{{user_id}}","suppress":false,"session_id":"{{session}}","self_video":false,"self_mute":false,"self_deaf":false,"request_to_speak_timestamp":null,"mute":false,"member":` + tMemberU + `,"deaf":false,"channel_id":null,"guild_id":"{{guild_id}}"`,
	},
	evMemberAdd: {
		`{"user":` + tUserFull + `,"roles":[],"premium_since":null,"pending":false,"nick":null,"mute":false,"joined_at":"{{ts}}","flags":0,"deaf":false,"communication_disabled_until":null,"banner":null,"avatar":null,"guild_id":"{{guild_id}}"`,
	},
	evDMMessageCreate: {
		`{"type":0,"tts":false,"timestamp":"{{ts}}","pinned":false,"nonce":"{{nonce}}","mentions":[],"mention_roles":[],"mention_everyone":false,"id":"{{message_id}}","flags":0,"embeds":[],"edited_timestamp":null,"content":"{{content_short}}","components":[],"channel_type":1,"channel_id":"{{dm_channel_id}}","author":` + tAuthor + `,"attachments":[]`,
		`{"type":0,"tts":false,"timestamp":"{{ts}}","pinned":false,"nonce":"{{nonce}}","mentions":[],"mention_roles":[],"mention_everyone":false,"id":"{{message_id}}","flags":0,"embeds":[],"edited_timestamp":null,"content":"{{content_medium}}","components":[],"channel_type":1,"channel_id":"{{dm_channel_id}}","author":` + tAuthor + `,"attachments":[]`,
	},
	evDMTypingStart: {
		`{"user_id":"{{user_id}}","timestamp":{{unix}},"channel_id":"{{dm_channel_id}}"`,
	},
	evDMReactionAdd: {
		`{"user_id":"{{user_id}}","type":0,"message_id":"{{ref_message_id}}","message_author_id":"{{bot_id}}","emoji":{"name":"{{emoji}}","id":null},"channel_id":"{{dm_channel_id}}","burst":false`,
	},
}

// stripContent turns a template source into its full or its stripped
// (no MESSAGE_CONTENT) version.
func stripContent(src string, stripped bool) string {
	full := []string{
		"[[content_short]]", "{{content_short}}", "[[content_medium]]", "{{content_medium}}",
		"[[content_long]]", "{{content_long}}", "[[embeds]]", tEmbed, "[[attachments]]", tAttach,
		"[[components]]", tButtons,
	}
	if stripped {
		full = []string{
			"[[content_short]] https://example.com/articles/{{hex16}}", "",
			"[[content_short]] (edited)", "", "[[content_short]]", "", "[[content_medium]]", "", "[[content_long]]", "",
			"[[embeds]]", "[]", "[[attachments]]", "[]", "[[components]]", "[]",
		}
	}
	return strings.NewReplacer(full...).Replace(src)
}

// eventTemplates are the parsed templates: [type][variant][stripped].
type eventTemplates [numEvTypes][][2]tmpl

// typePrefixes are the pre-encoded frame openings {"t":"NAME","s": per type.
var typePrefixes [numEvTypes][]byte

func init() {
	for i, t := range evTypes {
		typePrefixes[i] = []byte(`{"t":` + strconv.Quote(t.name) + `,"s":`)
		if len(t.variants) != len(evTemplates[i]) {
			panic(fmt.Sprintf("sim: %s has %d variant weights and %d templates", t.name, len(t.variants), len(evTemplates[i])))
		}
	}
}

// parseEventTemplates parses every event template, full and stripped.
func parseEventTemplates() (eventTemplates, error) {
	var et eventTemplates
	for typ, variants := range evTemplates {
		et[typ] = make([][2]tmpl, len(variants))
		for v, src := range variants {
			for i, stripped := range []bool{false, true} {
				t, err := parseTmpl(stripContent(src, stripped))
				if err != nil {
					return et, fmt.Errorf("%s variant %d: %w", evTypes[typ].name, v, err)
				}
				et[typ][v][i] = t
			}
		}
	}
	return et, nil
}

// Pools of per-event strings. They are plain ASCII or UTF-8 without
// characters JSON must escape.
var (
	contentShort = []string{
		"gm everyone", "anyone around for a raid tonight?", "lol", "that patch broke my build again",
		"!rank", "thanks, that fixed it", "brb", "has anyone tried the new update yet?",
		"can a mod pin the rules please", "ok that was actually hilarious", "/play lofi beats", "same here",
	}
	contentMedium = []string{
		"Quick question for the server: when the bot reconnects after a network blip, should it resume the session or start a new one? I keep seeing it identify again and it eats into the daily limit.",
		"Reminder that the community event starts Saturday at 18:00 UTC. Bring your best builds, there are prizes for the top three and a special role for everyone who takes part. Check the announcements channel.",
		"I benchmarked both approaches on a 2-core box: the batched writer used about a third of the CPU of the per-message one, mostly because of fewer syscalls. Numbers and the script are in the thread.",
		"Welcome to all the new members who joined this week! Please read the rules, pick your roles in the roles channel and say hi. If you need help, ping a helper rather than DMing the mods directly.",
	}
	contentLong = []string{
		"Long post incoming. We moved the bot to a sharded setup last month and learned a few things the hard way. First, identify concurrency is per bucket and the bucket is shard id modulo max concurrency, so starting shards in order is not enough: you need a queue per bucket. Second, resuming is nearly free while identifying spends the daily budget, so treat every close code carefully and only start a new session when the session is really gone. Third, heartbeat jitter matters more than you think when a thousand shards reconnect at once. Fourth, keep an eye on your send budget: 120 payloads per minute sounds like a lot until presence updates and member requests pile up.",
		"Patch notes, version 4.2: reworked the matchmaking queue so parties of different sizes no longer wait forever; fixed a crash when two players opened the same chest in the same tick; the inventory now remembers its sort order between sessions; lowered the cost of the second prestige tier; new cosmetics in the shop rotation; several translation fixes for the German and Brazilian Portuguese clients; the daily quest board refreshes at midnight UTC instead of server local time. Known issue: the leaderboard may show stale ranks for up to an hour after the reset.",
	}
	gameNames    = []string{"Minecraft", "Valorant", "League of Legends", "Counter-Strike 2", "Fortnite", "Rocket League", "Stardew Valley", "Apex Legends", "Overwatch 2", "Terraria"}
	songNames    = []string{"Midnight City", "Blinding Lights", "Levitating", "As It Was", "Starboy", "Heat Waves", "Take On Me", "Dreams"}
	artistNames  = []string{"M83", "The Weeknd", "Dua Lipa", "Harry Styles", "Glass Animals", "a-ha", "Fleetwood Mac", "Daft Punk"}
	statusTexts  = []string{"working on it", "do not disturb pls", "exam season", "streaming later", "touching grass", "back at 6"}
	emojiNames   = []string{"👍", "❤️", "😂", "🔥", "🎉", "✅", "👀", "🙏"}
	statusNames  = []string{"online", "online", "online", "idle", "dnd"}
	platformName = []string{"desktop", "desktop", "mobile", "web"}
	nameAdjs     = []string{"swift", "cozy", "lucky", "silent", "brave", "fuzzy", "cosmic", "sleepy", "golden", "rusty", "pixel", "neon", "quiet", "wild", "frosty", "sunny"}
	nameNouns    = []string{"otter", "falcon", "badger", "comet", "maple", "harbor", "raven", "lynx", "cactus", "ember", "walrus", "willow", "tiger", "moth", "pebble", "nova"}
	guildWords   = []string{"Lounge", "Guild", "Collective", "Hangout", "Den", "Club", "Society", "Arcade", "Workshop", "Tavern", "Hub", "Crew"}
)

// username returns pool user u's username (lowercase, no spaces).
func username(dst []byte, u uint32) []byte {
	h := mix64(uint64(u) ^ 0xabcdef)
	dst = append(dst, nameAdjs[h%uint64(len(nameAdjs))]...)
	dst = append(dst, '_')
	dst = append(dst, nameNouns[h>>8%uint64(len(nameNouns))]...)
	return strconv.AppendUint(dst, h>>16%1000, 10)
}

// globalName returns pool user u's display name.
func globalName(dst []byte, u uint32) []byte {
	h := mix64(uint64(u) ^ 0xabcdef)
	a, n := nameAdjs[h%uint64(len(nameAdjs))], nameNouns[h>>8%uint64(len(nameNouns))]
	dst = append(dst, a[0]-'a'+'A')
	dst = append(dst, a[1:]...)
	dst = append(dst, ' ')
	dst = append(dst, n[0]-'a'+'A')
	return append(dst, n[1:]...)
}
