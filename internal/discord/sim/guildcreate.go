package sim

import (
	"slices"
	"strconv"
	"strings"

	"github.com/gatehouse-dev/gatehouse/internal/discord"
)

// This file renders the handshake and guild payloads: HELLO, READY, RESUMED,
// GUILD_CREATE and the REST bodies naming the bot. Objects list their keys
// in Discord's order (reverse alphabetical).

const botName = "Gatehouse Sim"

// maxPresenceMembers is the member count above which GUILD_CREATE carries
// only the bot and voice members even with GUILD_PRESENCES (Discord: 75k).
const maxPresenceMembers = 75000

// largeOnlineCap bounds the "online" members listed for a large guild.
const largeOnlineCap = 100

var (
	traceHello   = `["[\"gateway-prd-us-east1-c-7s4x\",{\"micros\":0.0}]"]`
	traceReady   = `["[\"gateway-prd-us-east1-c-7s4x\",{\"micros\":12841,\"calls\":[\"id_created\",{\"micros\":604,\"calls\":[]},\"session_lookup_time\",{\"micros\":318,\"calls\":[]},\"session_lookup_finished\",{\"micros\":13,\"calls\":[]},\"discord-sessions-prd-2-18\",{\"micros\":11200,\"calls\":[\"start_session\",{\"micros\":10988,\"calls\":[\"discord-api-rpc-5c9b7b6c6-x2q5w\",{\"micros\":6121,\"calls\":[\"get_user\",{\"micros\":1210},\"get_guilds\",{\"micros\":2044},\"send_scheduled_deletion_message\",{\"micros\":9},\"guild_join_requests\",{\"micros\":1}]}]}]}]}]"]`
	traceResumed = `["[\"gateway-prd-us-east1-c-7s4x\",{\"micros\":1582,\"calls\":[\"discord-sessions-prd-2-18\",{\"micros\":1425}]}]"]`
	rtcRegions   = `["frankfurt","milan","paris","rotterdam","london"]`
)

// helloFrame returns the HELLO payload.
func (r *renderer) helloFrame(intervalMS int64) []byte {
	d := []byte(`{"heartbeat_interval":`)
	d = strconv.AppendInt(d, intervalMS, 10)
	if !r.noTrace {
		d = append(d, `,"_trace":`...)
		d = append(d, traceHello...)
	}
	d = append(d, '}')
	return discord.AppendFrame(nil, "", 0, discord.OpHello, d)
}

// resumedD returns RESUMED's d.
func (r *renderer) resumedD() []byte {
	if r.noTrace {
		return []byte(`{}`)
	}
	return []byte(`{"_trace":` + traceResumed + `}`)
}

// botDiscriminator is the bot's four-digit discriminator.
func (r *renderer) botDiscriminator() string {
	return strconv.FormatUint(1000+r.w.seed%9000, 10)
}

// appFlags are the application flags: APPLICATION_COMMAND_BADGE plus the
// *_LIMITED flag of each privileged intent the app has enabled.
func appFlags(disallowed discord.Intents) int64 {
	f := int64(1 << 23)
	if disallowed&discord.IntentGuildPresences == 0 {
		f |= 1 << 13
	}
	if disallowed&discord.IntentGuildMembers == 0 {
		f |= 1 << 15
	}
	if disallowed&discord.IntentMessageContent == 0 {
		f |= 1 << 19
	}
	return f
}

// readyInfo is what READY says about one session.
type readyInfo struct {
	v          int
	shard      *[2]int
	sessionID  string
	resumeURL  string
	guilds     []int32
	appFlags   int64
	botDiscrim string
}

// readyD renders READY's d in the captured key order.
func (r *renderer) readyD(in readyInfo) []byte {
	d := make([]byte, 0, 1024+len(in.guilds)*48)
	d = append(d, `{"v":`...)
	d = strconv.AppendInt(d, int64(in.v), 10)
	d = append(d, `,"user_settings":{},"user":{"verified":true,"username":"`+botName+`","primary_guild":null,"mfa_enabled":true,"id":`...)
	d = appendSnowflake(d, uint64(r.w.botID))
	d = append(d, `,"global_name":null,"flags":0,"email":null,"discriminator":"`...)
	d = append(d, in.botDiscrim...)
	d = append(d, `","clan":null,"bot":true,"avatar":null}`...)
	if in.shard != nil {
		d = append(d, `,"shard":[`...)
		d = strconv.AppendInt(d, int64(in.shard[0]), 10)
		d = append(d, ',')
		d = strconv.AppendInt(d, int64(in.shard[1]), 10)
		d = append(d, ']')
	}
	d = append(d, `,"session_type":"normal","session_id":"`...)
	d = append(d, in.sessionID...)
	d = append(d, `","resume_gateway_url":`...)
	d = appendQuoted(d, in.resumeURL)
	d = append(d, `,"relationships":[],"private_channels":[],"presences":[],"guilds":[`...)
	for i, gi := range in.guilds {
		if i > 0 {
			d = append(d, ',')
		}
		d = append(d, `{"unavailable":true,"id":`...)
		d = appendSnowflake(d, uint64(r.w.table.get(gi).id))
		d = append(d, '}')
	}
	d = append(d, `],"guild_join_requests":[],"geo_ordered_rtc_regions":`+rtcRegions+`,"game_relationships":[],"auth":{},"application":{"id":`...)
	d = appendSnowflake(d, uint64(r.w.botID))
	d = append(d, `,"flags":`...)
	d = strconv.AppendInt(d, in.appFlags, 10)
	d = append(d, '}')
	if !r.noTrace {
		d = append(d, `,"_trace":`...)
		d = append(d, traceReady...)
	}
	return append(d, '}')
}

// gcCtx is one GUILD_CREATE being rendered.
type gcCtx struct {
	r     *renderer
	g     *guild
	sv    *sessView
	large bool
}

type gcField struct {
	key string
	val func(c *gcCtx, dst []byte) []byte
}

func lit(s string) func(*gcCtx, []byte) []byte {
	return func(_ *gcCtx, dst []byte) []byte { return append(dst, s...) }
}

// gcFields are GUILD_CREATE's fields, sorted in Discord's order by init.
var gcFields = []gcField{
	{"activity_instances", lit("[]")},
	{"afk_channel_id", func(c *gcCtx, dst []byte) []byte {
		if c.g.voice == 0 {
			return append(dst, "null"...)
		}
		return appendSnowflake(dst, c.r.w.channelID(c.g, int(c.g.text)+int(c.g.voice)-1))
	}},
	{"afk_timeout", lit("300")},
	{"application_command_counts", lit("{}")},
	{"application_id", lit("null")},
	{"banner", lit("null")},
	{"channels", (*gcCtx).channels},
	{"clan", lit("null")},
	{"default_message_notifications", func(c *gcCtx, dst []byte) []byte { return strconv.AppendUint(dst, c.g.h>>3&1, 10) }},
	{"description", lit("null")},
	{"discovery_splash", lit("null")},
	{"embedded_activities", lit("[]")},
	{"emojis", (*gcCtx).emojis},
	{"explicit_content_filter", func(c *gcCtx, dst []byte) []byte { return strconv.AppendUint(dst, c.g.h>>5%3, 10) }},
	{"features", func(c *gcCtx, dst []byte) []byte {
		if c.g.members > 5000 {
			return append(dst, `["COMMUNITY","NEWS","INVITE_SPLASH","ANIMATED_ICON","ROLE_ICONS"]`...)
		}
		return append(dst, "[]"...)
	}},
	{"guild_hashes", func(c *gcCtx, dst []byte) []byte {
		dst = append(dst, `{"version":1,"roles":{"omitted":false,"hash":"`...)
		dst = appendHex(dst, mix64(c.g.h^11))
		dst = append(dst, `"},"metadata":{"omitted":false,"hash":"`...)
		dst = appendHex(dst, mix64(c.g.h^12))
		dst = append(dst, `"},"channels":{"omitted":false,"hash":"`...)
		dst = appendHex(dst, mix64(c.g.h^13))
		return append(dst, `"}}`...)
	}},
	{"guild_scheduled_events", lit("[]")},
	{"home_header", lit("null")},
	{"hub_type", lit("null")},
	{"icon", func(c *gcCtx, dst []byte) []byte {
		if c.g.h>>7&3 == 0 {
			return append(dst, "null"...)
		}
		dst = append(dst, '"')
		dst = appendHex(appendHex(dst, mix64(c.g.h^14)), mix64(c.g.h^15))
		return append(dst, '"')
	}},
	{"id", func(c *gcCtx, dst []byte) []byte { return appendSnowflake(dst, uint64(c.g.id)) }},
	{"incidents_data", lit("null")},
	{"joined_at", func(c *gcCtx, dst []byte) []byte {
		dst = append(dst, '"')
		dst = appendISO(dst, c.g.joined)
		return append(dst, '"')
	}},
	{"large", func(c *gcCtx, dst []byte) []byte { return appendBool(dst, c.large) }},
	{"latest_onboarding_question_id", lit("null")},
	{"lazy", lit("true")},
	{"max_members", func(c *gcCtx, dst []byte) []byte {
		if c.g.members > 250000 {
			return append(dst, "25000000"...)
		}
		return append(dst, "500000"...)
	}},
	{"max_stage_video_channel_users", lit("50")},
	{"max_video_channel_users", lit("25")},
	{"member_count", func(c *gcCtx, dst []byte) []byte { return strconv.AppendInt(dst, int64(c.g.members), 10) }},
	{"members", (*gcCtx).members},
	{"mfa_level", func(c *gcCtx, dst []byte) []byte { return strconv.AppendUint(dst, c.g.h>>9&1, 10) }},
	{"name", func(c *gcCtx, dst []byte) []byte {
		dst = append(dst, '"')
		dst = guildName(dst, c.g.h)
		return append(dst, '"')
	}},
	{"nsfw", lit("false")},
	{"nsfw_level", lit("0")},
	{"owner_id", func(c *gcCtx, dst []byte) []byte {
		return appendSnowflake(dst, c.r.w.userID(c.r.w.memberUser(c.g, 0)))
	}},
	{"preferred_locale", lit(`"en-US"`)},
	{"premium_progress_bar_enabled", lit("false")},
	{"premium_subscription_count", func(c *gcCtx, dst []byte) []byte {
		return strconv.AppendInt(dst, int64(c.g.members)/200, 10)
	}},
	{"premium_tier", func(c *gcCtx, dst []byte) []byte {
		return strconv.AppendInt(dst, int64(min(3, c.g.members/200/7)), 10)
	}},
	{"presences", (*gcCtx).presences},
	{"public_updates_channel_id", lit("null")},
	{"region", lit(`"deprecated"`)},
	{"roles", (*gcCtx).roles},
	{"rules_channel_id", lit("null")},
	{"safety_alerts_channel_id", lit("null")},
	{"soundboard_sounds", lit("[]")},
	{"splash", lit("null")},
	{"stage_instances", lit("[]")},
	{"stickers", lit("[]")},
	{"system_channel_flags", lit("0")},
	{"system_channel_id", func(c *gcCtx, dst []byte) []byte { return appendSnowflake(dst, c.r.w.channelID(c.g, 0)) }},
	{"threads", lit("[]")},
	{"unavailable", lit("false")},
	{"vanity_url_code", lit("null")},
	{"verification_level", func(c *gcCtx, dst []byte) []byte { return strconv.AppendUint(dst, 1+c.g.h>>11%3, 10) }},
	{"version", func(c *gcCtx, dst []byte) []byte { return strconv.AppendInt(dst, c.g.joined, 10) }},
	{"voice_states", lit("[]")},
}

func init() {
	slices.SortFunc(gcFields, func(a, b gcField) int { return strings.Compare(b.key, a.key) })
}

// appendGuildCreate renders GUILD_CREATE's d for guild g as session sv sees
// it: members follow Discord's rules for GUILD_PRESENCES, large_threshold
// and the 75k cut-off.
func (r *renderer) appendGuildCreate(dst []byte, g *guild, sv *sessView) []byte {
	c := gcCtx{r: r, g: g, sv: sv, large: int(g.members) > sv.largeThreshold}
	dst = append(dst, '{')
	for i, f := range gcFields {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, '"')
		dst = append(dst, f.key...)
		dst = append(dst, `":`...)
		dst = f.val(&c, dst)
	}
	return append(dst, '}')
}

// guildName derives a guild's name.
func guildName(dst []byte, h uint64) []byte {
	a, n, wd := nameAdjs[h>>20%uint64(len(nameAdjs))], nameNouns[h>>28%uint64(len(nameNouns))], guildWords[h>>36%uint64(len(guildWords))]
	dst = append(dst, "The "...)
	dst = append(dst, a[0]-'a'+'A')
	dst = append(dst, a[1:]...)
	dst = append(dst, ' ')
	dst = append(dst, n[0]-'a'+'A')
	dst = append(dst, n[1:]...)
	dst = append(dst, ' ')
	return append(dst, wd...)
}

var channelNames = []string{"general", "announcements", "rules", "off-topic", "memes", "help", "introductions", "media", "bot-commands", "events", "suggestions", "art", "music", "gaming", "dev-chat", "support"}

func (c *gcCtx) channels(dst []byte) []byte {
	w, g := c.r.w, c.g
	dst = append(dst, '[')
	n := int(g.text) + int(g.voice)
	for j := range n {
		if j > 0 {
			dst = append(dst, ',')
		}
		voice := j >= int(g.text)
		dst = append(dst, `{"version":`...)
		dst = strconv.AppendInt(dst, g.joined+int64(j), 10)
		if voice {
			dst = append(dst, `,"user_limit":0,"type":2,"rtc_region":null,"rate_limit_per_user":0,"position":`...)
			dst = strconv.AppendInt(dst, int64(j-int(g.text)), 10)
		} else {
			dst = append(dst, `,"type":0,"topic":`...)
			if j%3 == 0 {
				dst = append(dst, `"Be nice. Read the pinned messages before asking."`...)
			} else {
				dst = append(dst, "null"...)
			}
			dst = append(dst, `,"rate_limit_per_user":0,"position":`...)
			dst = strconv.AppendInt(dst, int64(j), 10)
		}
		dst = append(dst, `,"permission_overwrites":[`...)
		if j%4 == 1 {
			dst = append(dst, `{"type":0,"id":`...)
			dst = appendSnowflake(dst, w.roleID(g, 0))
			dst = append(dst, `,"deny":"2048","allow":"0"}`...)
		}
		dst = append(dst, `],"parent_id":null,"nsfw":false,"name":"`...)
		if voice {
			dst = append(dst, "Voice "...)
			dst = strconv.AppendInt(dst, int64(j-int(g.text)+1), 10)
		} else {
			dst = append(dst, channelNames[j%len(channelNames)]...)
			if j >= len(channelNames) {
				dst = append(dst, '-')
				dst = strconv.AppendInt(dst, int64(j/len(channelNames)+1), 10)
			}
		}
		dst = append(dst, `","last_message_id":`...)
		if voice {
			dst = append(dst, "null"...)
		} else {
			dst = appendSnowflake(dst, w.channelID(g, j)+uint64(g.h>>30&0xffff)<<22)
		}
		dst = append(dst, `,"id":`...)
		dst = appendSnowflake(dst, w.channelID(g, j))
		dst = append(dst, `,"icon_emoji":null,"flags":0`...)
		if voice {
			dst = append(dst, `,"bitrate":64000`...)
		}
		dst = append(dst, '}')
	}
	return append(dst, ']')
}

var roleNames = []string{"Moderator", "Member", "Admin", "Booster", "Bots", "Events", "Artist", "Helper", "Veteran", "Muted", "VIP", "Streamer"}

func (c *gcCtx) roles(dst []byte) []byte {
	w, g := c.r.w, c.g
	dst = append(dst, '[')
	for ri := range int(g.roles) {
		if ri > 0 {
			dst = append(dst, ',')
		}
		h := mix64(g.h ^ uint64(ri)<<8)
		dst = append(dst, `{"version":`...)
		dst = strconv.AppendInt(dst, g.joined+int64(ri), 10)
		dst = append(dst, `,"unicode_emoji":null,"tags":{},"position":`...)
		dst = strconv.AppendInt(dst, int64(ri), 10)
		dst = append(dst, `,"permissions":"`...)
		if ri == 0 {
			dst = append(dst, "2222085186637376"...)
		} else {
			dst = strconv.AppendUint(dst, h&0x1ffffffffff, 10)
		}
		dst = append(dst, `","name":"`...)
		if ri == 0 {
			dst = append(dst, "@everyone"...)
		} else {
			dst = append(dst, roleNames[(ri-1)%len(roleNames)]...)
		}
		color := h >> 40 & 0xffffff
		if ri == 0 {
			color = 0
		}
		dst = append(dst, `","mentionable":false,"managed":false,"id":`...)
		dst = appendSnowflake(dst, w.roleID(g, ri))
		dst = append(dst, `,"icon":null,"hoist":`...)
		dst = appendBool(dst, ri > 0 && h&1 == 1)
		dst = append(dst, `,"flags":0,"description":null,"colors":{"tertiary_color":null,"secondary_color":null,"primary_color":`...)
		dst = strconv.AppendUint(dst, color, 10)
		dst = append(dst, `},"color":`...)
		dst = strconv.AppendUint(dst, color, 10)
		dst = append(dst, '}')
	}
	return append(dst, ']')
}

func (c *gcCtx) emojis(dst []byte) []byte {
	w, g := c.r.w, c.g
	dst = append(dst, '[')
	for e := range int(g.emojis) {
		if e > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, `{"version":0,"roles":[],"require_colons":true,"name":"`...)
		dst = append(dst, nameNouns[(int(g.h>>16)+e)%len(nameNouns)]...)
		dst = strconv.AppendInt(dst, int64(e), 10)
		dst = append(dst, `","managed":false,"id":`...)
		dst = appendSnowflake(dst, w.emojiID(g, e))
		dst = append(dst, `,"available":true,"animated":`...)
		dst = appendBool(dst, e%5 == 4)
		dst = append(dst, '}')
	}
	return append(dst, ']')
}

// listedMembers returns how many members besides the bot GUILD_CREATE
// lists: none without GUILD_PRESENCES or above 75k members, the online ones
// (capped) in a large guild, all of them otherwise.
func (c *gcCtx) listedMembers() int {
	m := int(c.g.members) - 1
	switch {
	case !c.sv.intents.Has(discord.IntentGuildPresences) || c.g.members > maxPresenceMembers || m <= 0:
		return 0
	case c.large:
		return min(m/25+1, largeOnlineCap)
	}
	return m
}

// memberStatus is member m's presence status ("" when offline).
func memberStatus(g *guild, m int) string {
	switch mix64(g.h^uint64(m)<<20) % 5 {
	case 0, 1:
		return ""
	case 2:
		return "idle"
	case 3:
		return "dnd"
	}
	return "online"
}

func (c *gcCtx) members(dst []byte) []byte {
	dst = append(dst, '[')
	dst = c.r.appendBotMember(dst, c.g)
	n := c.listedMembers()
	for m := 1; m <= n; m++ {
		dst = append(dst, ',')
		dst = c.r.appendMember(dst, c.g, m)
	}
	return append(dst, ']')
}

// appendBotMember appends the bot's member object in guild g.
func (r *renderer) appendBotMember(dst []byte, g *guild) []byte {
	w := r.w
	dst = append(dst, `{"user":{"username":"`+botName+`","public_flags":0,"primary_guild":null,"id":`...)
	dst = appendSnowflake(dst, uint64(w.botID))
	dst = append(dst, `,"global_name":null,"display_name":null,"discriminator":"`...)
	dst = append(dst, r.botDiscriminator()...)
	dst = append(dst, `","collectibles":null,"clan":null,"bot":true,"avatar_decoration_data":null,"avatar":null},"roles":[`...)
	if g.roles > 1 {
		dst = appendSnowflake(dst, w.roleID(g, int(g.roles)-1))
	}
	dst = append(dst, `],"premium_since":null,"pending":false,"nick":null,"mute":false,"joined_at":"`...)
	dst = appendISO(dst, g.joined)
	return append(dst, `","flags":0,"deaf":false,"communication_disabled_until":null,"banner":null,"avatar":null}`...)
}

// appendMember appends member m (1 and up) of guild g.
func (r *renderer) appendMember(dst []byte, g *guild, m int) []byte {
	w := r.w
	u := w.memberUser(g, uint32(m))
	dst = append(dst, `{"user":{"username":"`...)
	dst = username(dst, u)
	dst = append(dst, `","public_flags":0,"primary_guild":null,"id":`...)
	dst = appendSnowflake(dst, w.userID(u))
	dst = append(dst, `,"global_name":"`...)
	dst = globalName(dst, u)
	dst = append(dst, `","display_name":"`...)
	dst = globalName(dst, u)
	dst = append(dst, `","discriminator":"0","collectibles":null,"clan":null,"avatar_decoration_data":null,"avatar":"`...)
	dst = appendHex(appendHex(dst, mix64(uint64(u)^0xa1)), mix64(uint64(u)^0xa2))
	dst = append(dst, `"},"roles":[`...)
	if g.roles > 1 && m%2 == 0 {
		dst = appendSnowflake(dst, w.roleID(g, 1+m%int(g.roles-1)))
	}
	dst = append(dst, `],"premium_since":null,"pending":false,"nick":null,"mute":false,"joined_at":"`...)
	created := g.id.Time().UnixMilli()
	dst = appendISO(dst, created+int64(uint64(m)*7919)%max(1, g.joined-created+1))
	return append(dst, `","flags":0,"deaf":false,"communication_disabled_until":null,"banner":null,"avatar":null}`...)
}

// appendPresence appends member m's presence with status st.
func (r *renderer) appendPresence(dst []byte, g *guild, m int, st string) []byte {
	dst = append(dst, `{"user":{"id":`...)
	dst = appendSnowflake(dst, r.w.userID(r.w.memberUser(g, uint32(m))))
	dst = append(dst, `},"status":"`...)
	dst = append(dst, st...)
	dst = append(dst, `","client_status":{"desktop":"`...)
	dst = append(dst, st...)
	return append(dst, `"},"broadcast":null,"activities":[]}`...)
}

// chunkReq is a Request Guild Members being answered.
type chunkReq struct {
	guild     int32
	nonce     string
	presences bool
	members   []int // member indices (0: the bot); nil when all is set
	all       int   // all members: indices 0 to all-1
	notFound  []discord.Snowflake
	chunks    int
}

// chunkSize is the most members per GUILD_MEMBERS_CHUNK.
const chunkSize = 1000

// appendChunk renders GUILD_MEMBERS_CHUNK number e.id()&0xffffff of req.
func (r *renderer) appendChunk(dst []byte, e entry, req *chunkReq, sv *sessView) []byte {
	if req == nil {
		return append(dst, "null"...)
	}
	g := r.w.table.get(req.guild)
	i := int(e.id() & 0xffffff)
	lo, hi := i*chunkSize, (i+1)*chunkSize
	total := req.all
	if req.members != nil {
		total = len(req.members)
	}
	hi = min(hi, total)
	lo = min(lo, hi)
	member := func(j int) int {
		if req.members != nil {
			return req.members[j]
		}
		return j
	}
	dst = append(dst, '{')
	if req.presences && sv.intents.Has(discord.IntentGuildPresences) {
		dst = append(dst, `"presences":[`...)
		first := true
		for j := lo; j < hi; j++ {
			m := member(j)
			if m == 0 {
				continue
			}
			if st := memberStatus(g, m); st != "" {
				if !first {
					dst = append(dst, ',')
				}
				first = false
				dst = r.appendPresence(dst, g, m, st)
			}
		}
		dst = append(dst, "],"...)
	}
	if len(req.notFound) > 0 && i == 0 {
		dst = append(dst, `"not_found":[`...)
		for j, id := range req.notFound {
			if j > 0 {
				dst = append(dst, ',')
			}
			dst = appendSnowflake(dst, uint64(id))
		}
		dst = append(dst, "],"...)
	}
	if req.nonce != "" {
		dst = append(dst, `"nonce":`...)
		dst = appendQuoted(dst, req.nonce)
		dst = append(dst, ',')
	}
	dst = append(dst, `"members":[`...)
	for j := lo; j < hi; j++ {
		if j > lo {
			dst = append(dst, ',')
		}
		if m := member(j); m == 0 {
			dst = r.appendBotMember(dst, g)
		} else {
			dst = r.appendMember(dst, g, m)
		}
	}
	dst = append(dst, `],"guild_id":`...)
	dst = appendSnowflake(dst, uint64(g.id))
	dst = append(dst, `,"chunk_index":`...)
	dst = strconv.AppendInt(dst, int64(i), 10)
	dst = append(dst, `,"chunk_count":`...)
	dst = strconv.AppendInt(dst, int64(req.chunks), 10)
	return append(dst, '}')
}

func (c *gcCtx) presences(dst []byte) []byte {
	dst = append(dst, '[')
	n, first := c.listedMembers(), true
	for m := 1; m <= n; m++ {
		st := memberStatus(c.g, m)
		if st == "" {
			if !c.large {
				continue
			}
			st = "online" // a large guild lists online members only
		}
		if !first {
			dst = append(dst, ',')
		}
		first = false
		dst = c.r.appendPresence(dst, c.g, m, st)
	}
	return append(dst, ']')
}

// userMeJSON is GET /users/@me's body.
func (r *renderer) userMeJSON() []byte {
	b := []byte(`{"id": `)
	b = appendSnowflake(b, uint64(r.w.botID))
	b = append(b, `, "username": "`+botName+`", "avatar": null, "discriminator": "`...)
	b = append(b, r.botDiscriminator()...)
	b = append(b, `", "public_flags": 0, "flags": 0, "bot": true, "banner": null, "accent_color": null, "global_name": null, "avatar_decoration_data": null, "collectibles": null, "banner_color": null, "clan": null, "primary_guild": null, "mfa_enabled": true, "locale": "en-US", "premium_type": 0, "email": null, "verified": true, "bio": ""}`...)
	return b
}

// applicationMeJSON is GET /applications/@me's body.
func (r *renderer) applicationMeJSON(flags int64, guilds int) []byte {
	b := []byte(`{"id": `)
	b = appendSnowflake(b, uint64(r.w.botID))
	b = append(b, `, "name": "`+botName+`", "icon": null, "description": "A bot served by the Gatehouse Discord simulator.", "type": null, "bot": {"id": `...)
	b = appendSnowflake(b, uint64(r.w.botID))
	b = append(b, `, "username": "`+botName+`", "avatar": null, "discriminator": "`...)
	b = append(b, r.botDiscriminator()...)
	b = append(b, `", "public_flags": 0, "flags": 0, "bot": true, "banner": null, "accent_color": null, "global_name": null}, "summary": "", "bot_public": true, "bot_require_code_grant": false, "verify_key": "`...)
	b = appendHex(appendHex(appendHex(appendHex(b, mix64(r.w.seed^21)), mix64(r.w.seed^22)), mix64(r.w.seed^23)), mix64(r.w.seed^24))
	b = append(b, `", "flags": `...)
	b = strconv.AppendInt(b, flags, 10)
	b = append(b, `, "hook": true, "is_monetized": false, "approximate_guild_count": `...)
	b = strconv.AppendInt(b, int64(guilds), 10)
	b = append(b, `, "redirect_uris": [], "interactions_endpoint_url": null, "owner": {"id": "1", "username": "owner", "avatar": null, "discriminator": "0", "public_flags": 0, "flags": 0, "global_name": "Owner"}}`...)
	return b
}
