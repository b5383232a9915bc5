package sim

import (
	"strconv"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/discord"
)

// renderer renders dispatches from ring entries. It is read-only after
// construction and safe for concurrent use: every connection's writer
// renders its own frames.
type renderer struct {
	w       *world
	tmpls   eventTemplates
	epochMS int64 // entry times count milliseconds from here
	noTrace bool
}

// sessView is what rendering needs to know about the receiving session.
type sessView struct {
	intents        discord.Intents
	largeThreshold int
	compress       bool // IDENTIFY's compress: payload compression
}

// rawDispatch is a dispatch rendered once and kept whole (READY, RESUMED,
// answers to client requests).
type rawDispatch struct {
	t string
	d []byte
}

// appendDispatch appends the frame of the dispatch e with sequence number s.
// raw is the stored dispatch of a kindRaw entry.
func (r *renderer) appendDispatch(dst []byte, e entry, s int64, sv *sessView, raw *rawDispatch, chunk *chunkReq) []byte {
	switch e.kind() {
	case kindEvent:
		return r.appendEvent(dst, e, s, sv)
	case kindGuildCreate:
		dst = append(dst, `{"t":"GUILD_CREATE","s":`...)
		dst = strconv.AppendInt(dst, s, 10)
		dst = append(dst, `,"op":0,"d":`...)
		dst = r.appendGuildCreate(dst, r.w.table.get(e.guild()), sv)
		return append(dst, '}')
	case kindGuildDelete:
		dst = append(dst, `{"t":"GUILD_DELETE","s":`...)
		dst = strconv.AppendInt(dst, s, 10)
		dst = append(dst, `,"op":0,"d":{`...)
		if e.variant() == 1 {
			dst = append(dst, `"unavailable":true,`...)
		}
		dst = append(dst, `"id":`...)
		dst = appendSnowflake(dst, uint64(r.w.table.get(e.guild()).id))
		return append(dst, "}}"...)
	case kindChunk:
		dst = append(dst, `{"t":"GUILD_MEMBERS_CHUNK","s":`...)
		dst = strconv.AppendInt(dst, s, 10)
		dst = append(dst, `,"op":0,"d":`...)
		dst = r.appendChunk(dst, e, chunk, sv)
		return append(dst, '}')
	case kindRaw:
		if raw == nil {
			raw = &rawDispatch{t: "UNKNOWN", d: []byte("null")}
		}
		return discord.AppendFrame(dst, raw.t, s, discord.OpDispatch, raw.d)
	}
	return dst
}

// evCtx holds the per-event values the holes of a template take.
type evCtx struct {
	w       *world
	g       *guild // nil for DM-like events
	h       uint64
	ms      int64 // Unix milliseconds of the event
	user    uint32
	userID  uint64
	user2ID uint64
	channel int
}

// appendEvent renders a generated event: {"t":…,"s":s,"op":0,"d":{…,"sim_event_id":id}}.
func (r *renderer) appendEvent(dst []byte, e entry, s int64, sv *sessView) []byte {
	typ := e.typ()
	if int(typ) >= int(numEvTypes) {
		return dst
	}
	vs := r.tmpls[typ]
	v := int(e.variant())
	if v >= len(vs) {
		v = 0
	}
	stripped := 0
	if evTypes[typ].content && !sv.intents.Has(discord.IntentMessageContent) {
		stripped = 1
	}
	t := &vs[v][stripped]
	c := evCtx{w: r.w, h: hash2(r.w.seed^0xe7e7, e.id()), ms: r.epochMS + e.ms()}
	if gi := e.guild(); gi != noGuild {
		c.g = r.w.table.get(gi)
		c.user = r.w.memberUser(c.g, uint32(c.h>>8)%uint32(max(1, min(c.g.members, 1<<20))))
		c.user2ID = r.w.userID(r.w.memberUser(c.g, uint32(c.h>>32)%uint32(max(1, min(c.g.members, 1<<20)))))
		c.channel = int(c.h>>40) % int(max(1, c.g.text))
	} else {
		c.user = uint32(c.h>>8) % userPool
		c.user2ID = uint64(r.w.botID)
	}
	c.userID = r.w.userID(c.user)

	dst = append(dst, typePrefixes[typ]...)
	dst = strconv.AppendInt(dst, s, 10)
	dst = append(dst, `,"op":0,"d":`...)
	for i := range t.segs {
		sg := &t.segs[i]
		dst = append(dst, sg.lit...)
		if sg.hole != hNone {
			dst = c.appendHole(dst, sg.hole, e)
		}
	}
	dst = append(dst, `,"sim_event_id":`...)
	dst = strconv.AppendUint(dst, e.id(), 10)
	return append(dst, "}}"...)
}

func pickStr(pool []string, h uint64) string { return pool[h%uint64(len(pool))] }

func (c *evCtx) appendHole(dst []byte, h hole, e entry) []byte {
	w := c.w
	switch h {
	case hGuildID:
		if c.g != nil {
			return strconv.AppendUint(dst, uint64(c.g.id), 10)
		}
		return append(dst, '0')
	case hChannelID:
		if c.g != nil {
			return strconv.AppendUint(dst, w.channelID(c.g, c.channel), 10)
		}
		return strconv.AppendUint(dst, c.dmChannel(), 10)
	case hVoiceChannelID:
		if c.g != nil {
			return strconv.AppendUint(dst, w.channelID(c.g, int(c.g.text)+int(c.h>>20)%int(max(1, c.g.voice))), 10)
		}
		return strconv.AppendUint(dst, c.dmChannel(), 10)
	case hDMChannelID:
		return strconv.AppendUint(dst, c.dmChannel(), 10)
	case hMessageID:
		return strconv.AppendUint(dst, uint64(discord.NewSnowflake(time.UnixMilli(c.ms), 1, e.id()>>12&31, e.id()&0xfff)), 10)
	case hRefMessageID:
		return strconv.AppendUint(dst, uint64(discord.NewSnowflake(time.UnixMilli(c.ms-int64(c.h%86_400_000)), 1, c.h>>50&31, c.h>>20&0xfff)), 10)
	case hUserID:
		return strconv.AppendUint(dst, c.userID, 10)
	case hUser2ID:
		return strconv.AppendUint(dst, c.user2ID, 10)
	case hBotID, hAppID:
		return strconv.AppendUint(dst, uint64(w.botID), 10)
	case hUsername:
		return username(dst, c.user)
	case hGlobalName:
		return globalName(dst, c.user)
	case hAvatar:
		return appendHex(appendHex(dst, mix64(uint64(c.user)^0xa1)), mix64(uint64(c.user)^0xa2))
	case hTimestamp:
		return appendISO(dst, c.ms)
	case hTimestamp2:
		return appendISO(dst, c.ms-int64(c.h%86_400_000))
	case hUnix:
		return strconv.AppendInt(dst, c.ms/1000, 10)
	case hUnixMS:
		return strconv.AppendInt(dst, c.ms, 10)
	case hUnixMSStart:
		return strconv.AppendInt(dst, c.ms-int64(c.h%7_200_000), 10)
	case hUnixMSEnd:
		return strconv.AppendInt(dst, c.ms+int64(c.h%240_000)+30_000, 10)
	case hNonce:
		return strconv.AppendUint(dst, uint64(discord.NewSnowflake(time.UnixMilli(c.ms), 7, 0, c.h&0xfff)), 10)
	case hRoleID:
		if c.g != nil {
			return strconv.AppendUint(dst, w.roleID(c.g, 1+int(c.h>>12)%int(max(1, c.g.roles-1))), 10)
		}
		return append(dst, '0')
	case hJoinedAt:
		created := int64(1431000000000)
		if c.g != nil {
			created = c.g.id.Time().UnixMilli()
		}
		return appendISO(dst, created+int64(uint64(c.user)*7919%uint64(max(1, c.ms-created))))
	case hStatus:
		return append(dst, pickStr(statusNames, c.h>>5)...)
	case hPlatform:
		return append(dst, pickStr(platformName, c.h>>9)...)
	case hGame:
		return append(dst, pickStr(gameNames, c.h>>13)...)
	case hSong:
		return append(dst, pickStr(songNames, c.h>>17)...)
	case hArtist:
		return append(dst, pickStr(artistNames, c.h>>17)...)
	case hStatusText:
		return append(dst, pickStr(statusTexts, c.h>>21)...)
	case hSession:
		return appendHex(appendHex(dst, mix64(c.h^1)), mix64(c.h^2))
	case hHex16:
		return appendHex(dst, mix64(c.h^3))
	case hEmoji:
		return append(dst, pickStr(emojiNames, c.h>>25)...)
	case hNick:
		dst = append(dst, pickStr(nameNouns, c.h>>29)...)
		if c.h>>33&1 == 1 {
			dst = append(dst, " (she/her)"...)
		}
		return dst
	case hContentShort:
		return append(dst, pickStr(contentShort, c.h>>37)...)
	case hContentMedium:
		return append(dst, pickStr(contentMedium, c.h>>41)...)
	case hContentLong:
		return append(dst, pickStr(contentLong, c.h>>45)...)
	case hSelfMute:
		return appendBool(dst, c.h>>49&1 == 1)
	}
	return dst
}

// dmChannel is the DM channel between the event's user and the bot.
func (c *evCtx) dmChannel() uint64 {
	return uint64(discord.NewSnowflake(time.UnixMilli(1600000000000+int64(c.user)*60_000), 5, 0, uint64(c.user)&0xfff))
}
