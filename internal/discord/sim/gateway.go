package sim

import (
	"encoding/json"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/discord"
)

// identify handles op 2 on a connection without a session.
func (c *conn) identify(d json.RawMessage, now time.Time) {
	s := c.s
	s.ctr.identifies.Add(1)
	s.mu.Lock()
	now = lockedNow(now)
	req, ce := parseIdentify(d, identifyRules{
		tokenOK: s.tokenOK, apiVersion: c.v, disallowed: s.cfg.DisallowedIntents, shardMultiple: s.cfg.ShardMultiple,
	})
	if ce != nil {
		s.mu.Unlock()
		c.fail(ce)
		return
	}
	if code := s.outage(req.shard, req.n, now); code != 0 {
		s.mu.Unlock()
		c.closeWith(code, "outage", false)
		return
	}
	r := s.world.routeFor(req.n)
	guilds := r.shards[req.shard]
	if len(guilds) > discord.MaxGuildsPerShard {
		s.world.dropIdleRoutes()
		s.mu.Unlock()
		c.fail(errShardingReq)
		return
	}
	bucket := discord.ShardBucket(req.shard, s.cfg.MaxConcurrency)
	if !s.limiter.allow(bucket, now) {
		s.mu.Unlock()
		s.violation(ruleIdentifyRate)
		s.ctr.identifyViolations.Add(1)
		c.addTask(task{at: now.Add(s.cfg.IdentifyRejectDelay), kind: taskInvalidSession})
		return
	}
	if !s.budget.spend(now) {
		s.violation(ruleSessionStartExhausted)
		switch s.cfg.Exhausted {
		case ExhaustInvalidSession:
			s.mu.Unlock()
			c.enqueue(ctlPayload, invalidSessionFalse)
			return
		case ExhaustResetToken:
			victims := s.resetTokenLocked()
			s.mu.Unlock()
			for _, v := range victims {
				v.closeWith(int(discord.CloseAuthenticationFailed), discord.CloseAuthenticationFailed.Reason(), true)
			}
			c.closeWith(int(discord.CloseAuthenticationFailed), discord.CloseAuthenticationFailed.Reason(), false)
			return
		}
		// ExhaustAllow: start the session anyway.
	}
	s.limiter.accept(bucket, now)

	ss := &session{
		id: s.newSessionIDLocked(), token: req.token, shard: req.shard, n: req.n, shardGiven: req.shardGiven,
		view:  sessView{intents: req.intents, largeThreshold: req.largeThreshold, compress: req.compress},
		route: r, stat: s.shardStatLocked(req.n, req.shard), ring: newReplayRing(s.cfg.ReplayBuffer),
	}
	if ss.wants("GUILD_CREATE") && len(guilds) > 0 {
		ss.stream = slices.Clone(guilds)
		ss.unavail = make(map[int32]uint8, len(guilds))
		for _, gi := range guilds {
			ss.unavail[gi] = unavailStream
		}
	}
	info := readyInfo{
		v: c.v, sessionID: ss.id, resumeURL: "ws://" + c.host + "/resume", guilds: guilds,
		appFlags: appFlags(s.cfg.DisallowedIntents), botDiscrim: s.rend.botDiscriminator(),
	}
	if req.shardGiven {
		info.shard = &[2]int{req.shard, req.n}
	}
	ss.pushRaw("READY", s.rend.readyD(info))
	s.attachLocked(c, ss, 1)
	s.registerLocked(ss)
	s.mu.Unlock()
	ss.stat.identifies.Add(1)
	s.ctr.readies.Add(1)
	c.wakeWriter()
}

// resetTokenLocked resets the token after the session-start budget ran out:
// every session ends and the connections holding one are returned to be
// closed with 4004. The caller holds mu.
func (s *Server) resetTokenLocked() []*conn {
	s.tokenReset = true
	var victims []*conn
	for _, ss := range s.sessions {
		ss.mu.Lock()
		if c := ss.conn; c != nil {
			victims = append(victims, c)
		}
		ss.mu.Unlock()
	}
	for _, ss := range s.sessions {
		s.endSessionLocked(ss)
	}
	s.log.Warn("session starts exhausted: token reset")
	return victims
}

// resume handles op 6 on a connection without a session.
func (c *conn) resume(d json.RawMessage, now time.Time) {
	s := c.s
	req, ce := parseResume(d)
	if ce != nil {
		c.fail(ce)
		return
	}
	refuse := func() {
		s.violation(ruleInvalidResume)
		s.ctr.resumeFailures.Add(1)
		c.enqueue(ctlPayload, invalidSessionFalse)
	}
	s.mu.Lock()
	now = lockedNow(now)
	ss := s.sessions[req.sessionID]
	if ss == nil || ss.token != req.token {
		s.mu.Unlock()
		refuse()
		return
	}
	if code := s.outage(ss.shard, ss.n, now); code != 0 {
		s.mu.Unlock()
		c.closeWith(code, "outage", false)
		return
	}
	ss.mu.Lock()
	old := ss.conn
	expired := old == nil && now.Sub(ss.disconnectedAt) >= s.cfg.SessionTTL
	last := ss.ring.last()
	held := ss.ring.holdsAfter(req.seq)
	ss.mu.Unlock()
	switch {
	case expired:
		s.endSessionLocked(ss)
		s.mu.Unlock()
		refuse()
		return
	case req.seq > last:
		s.mu.Unlock()
		s.ctr.resumeFailures.Add(1)
		c.fail(errInvalidSeq)
		return
	case !held:
		s.mu.Unlock()
		refuse()
		return
	}
	if old != nil && old != c {
		// The session moves: its old connection (a zombie, say) is cut.
		s.detachLocked(old, now)
		old.kill()
	}
	s.attachLocked(c, ss, req.seq+1)
	ss.mu.Lock()
	ss.pushRaw("RESUMED", s.rend.resumedD())
	ss.mu.Unlock()
	s.mu.Unlock()
	if !c.onResumeURL {
		s.violation(ruleResumeOnBaseURL)
	}
	s.ctr.resumes.Add(1)
	ss.stat.resumes.Add(1)
	c.wakeWriter()
}

// sessionGuild returns the index of guild id if the connection's session
// holds it.
func (c *conn) sessionGuild(id discord.Snowflake) (*session, int32, bool) {
	c.mu.Lock()
	ss := c.sess
	c.mu.Unlock()
	if ss == nil {
		return nil, 0, false
	}
	c.s.mu.Lock()
	gi, ok := c.s.world.byID[id]
	c.s.mu.Unlock()
	if !ok || discord.ShardForGuild(id, ss.n) != ss.shard {
		return ss, 0, false
	}
	return ss, gi, true
}

// pushTo sequences raw dispatches on a session and wakes its writer.
func (c *conn) pushTo(ss *session, t string, d []byte) {
	ss.mu.Lock()
	if !ss.ended && !c.s.silenced(ss, t) {
		ss.pushRaw(t, d)
		ss.wakeLocked()
	}
	ss.mu.Unlock()
}

// voiceState answers op 4 with the bot's VOICE_STATE_UPDATE and, when
// joining a channel, VOICE_SERVER_UPDATE, on the shard that holds the guild.
func (c *conn) voiceState(req voiceReq, now time.Time) {
	ss, gi, ok := c.sessionGuild(req.guild)
	if !ok {
		return
	}
	w := c.s.world
	g := w.table.get(gi)
	if ss.wants("VOICE_STATE_UPDATE") {
		d := []byte(`{"user_id":`)
		d = appendSnowflake(d, uint64(w.botID))
		d = append(d, `,"suppress":false,"session_id":"`...)
		d = append(d, ss.id...)
		d = append(d, `","self_video":false,"self_mute":`...)
		d = appendBool(d, req.mute)
		d = append(d, `,"self_deaf":`...)
		d = appendBool(d, req.deaf)
		d = append(d, `,"request_to_speak_timestamp":null,"mute":false,"member":`...)
		d = c.s.rend.appendBotMember(d, g)
		d = append(d, `,"deaf":false,"channel_id":`...)
		if req.channel == 0 {
			d = append(d, "null"...)
		} else {
			d = appendSnowflake(d, uint64(req.channel))
		}
		d = append(d, `,"guild_id":`...)
		d = appendSnowflake(d, uint64(g.id))
		c.pushTo(ss, "VOICE_STATE_UPDATE", append(d, '}'))
	}
	if req.channel != 0 {
		d := []byte(`{"token":"`)
		d = appendHex(d, hash2(uint64(g.id), uint64(now.UnixNano())))
		d = append(d, `","guild_id":`...)
		d = appendSnowflake(d, uint64(g.id))
		d = append(d, `,"endpoint":"us-east`...)
		d = strconv.AppendUint(d, 1000+uint64(g.id)%9000, 10)
		d = append(d, `.discord.media:443"}`...)
		c.pushTo(ss, "VOICE_SERVER_UPDATE", d)
	}
}

// Request Guild Members limits.
const (
	membersAllInterval = 30 * time.Second // all-members requests per guild
	maxChunkedMembers  = 100_000          // all-members answers are cut here
	memberScan         = 20_000           // members searched for a query or user_ids
)

// requestMembers answers op 8 with GUILD_MEMBERS_CHUNKs, or RATE_LIMITED
// for a repeated all-members request within 30 s.
func (c *conn) requestMembers(req membersReq, now time.Time) {
	s := c.s
	ss, gi, ok := c.sessionGuild(req.guild)
	if !ok {
		return
	}
	g := s.world.table.get(gi)
	all := req.hasQuery && req.query == "" && req.limit == 0
	if all {
		if !ss.view.intents.Has(discord.IntentGuildMembers) {
			return // Discord answers nothing (reference §9.3)
		}
		s.mu.Lock()
		if s.membersAt == nil {
			s.membersAt = map[int32]time.Time{}
		}
		lastAt, seen := s.membersAt[gi]
		limited := seen && now.Sub(lastAt) < membersAllInterval
		if !limited {
			s.membersAt[gi] = now
		}
		s.mu.Unlock()
		if limited {
			retry := membersAllInterval - now.Sub(lastAt)
			d := []byte(`{"retry_after":`)
			d = strconv.AppendFloat(d, retry.Seconds(), 'f', 3, 64)
			d = append(d, `,"opcode":8,"meta":{`...)
			if req.nonce != "" {
				d = append(d, `"nonce":`...)
				d = appendQuoted(d, req.nonce)
				d = append(d, ',')
			}
			d = append(d, `"guild_id":`...)
			d = appendSnowflake(d, uint64(g.id))
			c.pushTo(ss, "RATE_LIMITED", append(d, "}}"...))
			return
		}
	}
	cr := &chunkReq{guild: gi, nonce: req.nonce, presences: req.presences}
	switch {
	case all:
		cr.all = min(int(g.members), maxChunkedMembers)
	case req.hasQuery:
		limit := req.limit
		if limit == 0 {
			limit = 100
		}
		q := strings.ToLower(req.query)
		cr.members = []int{}
		if strings.HasPrefix(strings.ToLower(botName), q) {
			cr.members = append(cr.members, 0)
		}
		var name []byte
		for m := 1; m < min(int(g.members), memberScan) && len(cr.members) < limit; m++ {
			name = username(name[:0], s.world.memberUser(g, uint32(m)))
			if strings.HasPrefix(string(name), q) {
				cr.members = append(cr.members, m)
			}
		}
	default:
		cr.members = []int{}
		for _, id := range req.userIDs {
			if id == s.world.botID {
				cr.members = append(cr.members, 0)
				continue
			}
			found := false
			for m := 1; m < min(int(g.members), memberScan); m++ {
				if s.world.userID(s.world.memberUser(g, uint32(m))) == uint64(id) {
					cr.members = append(cr.members, m)
					found = true
					break
				}
			}
			if !found {
				cr.notFound = append(cr.notFound, id)
			}
		}
	}
	total := cr.all
	if cr.members != nil {
		total = len(cr.members)
	}
	cr.chunks = max(1, (total+chunkSize-1)/chunkSize)
	ms := s.sinceEpoch(now)
	ss.mu.Lock()
	if !ss.ended && !s.silenced(ss, "GUILD_MEMBERS_CHUNK") {
		if ss.chunks == nil {
			ss.chunks = map[uint32]*chunkReq{}
		}
		ss.chunkSeq = (ss.chunkSeq + 1) & 0xffffff
		id := ss.chunkSeq
		ss.chunks[id] = cr
		for i := range cr.chunks {
			ss.push(makeEntry(kindChunk, 0, 0, uint64(id)<<24|uint64(i), gi, ms), nil)
		}
		ss.wakeLocked()
	}
	ss.mu.Unlock()
}

// soundboardSounds answers op 31 with one SOUNDBOARD_SOUNDS per guild the
// session holds.
func (c *conn) soundboardSounds(ids []discord.Snowflake, _ time.Time) {
	for _, id := range ids {
		ss, gi, ok := c.sessionGuild(id)
		if !ok {
			continue
		}
		d := []byte(`{"soundboard_sounds":[],"guild_id":`)
		d = appendSnowflake(d, uint64(c.s.world.table.get(gi).id))
		c.pushTo(ss, "SOUNDBOARD_SOUNDS", append(d, '}'))
	}
}

// channelInfo answers op 43 with CHANNEL_INFO for the guild's voice
// channels.
func (c *conn) channelInfo(req channelInfoReq, _ time.Time) {
	ss, gi, ok := c.sessionGuild(req.guild)
	if !ok {
		return
	}
	w := c.s.world
	g := w.table.get(gi)
	d := []byte(`{"guild_id":`)
	d = appendSnowflake(d, uint64(g.id))
	d = append(d, `,"channels":[`...)
	for j := range int(g.voice) {
		if j > 0 {
			d = append(d, ',')
		}
		d = append(d, '{')
		if req.vstart {
			d = append(d, `"voice_start_time":null,`...)
		}
		if req.status {
			d = append(d, `"status":null,`...)
		}
		d = append(d, `"id":`...)
		d = appendSnowflake(d, w.channelID(g, int(g.text)+j))
		d = append(d, '}')
	}
	c.pushTo(ss, "CHANNEL_INFO", append(d, "]}"...))
}

// lockedNow returns the later of now (read when the frame arrived) and the
// clock read under the server lock. Identify and resume are judged in lock
// order; a time read before the lock could run backwards between two
// connections racing for the same bucket and count a false violation.
func lockedNow(now time.Time) time.Time {
	if t := time.Now(); t.After(now) {
		return t
	}
	return now
}
