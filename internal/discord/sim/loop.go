package sim

import (
	"slices"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/discord"
)

// The event loop is the server's one clock goroutine. Every EventTick while
// sessions live it expires disconnected sessions, ends guild outages and
// shard conditions, grows and shrinks the world, and generates the tick's
// events: it picks them under the server mutex (cheap) and then sequences
// each session's batch under that session's lock. It renders nothing: the
// connections' writers render from the rings, in parallel.

// genState is the generator's state, owned by the loop goroutine.
type genState struct {
	rates   rates
	rng     uint64
	nextID  uint64
	touched []*session
	joinAcc float64
	leftAcc float64
	held    map[int][]int32 // shard of the largest num_shards → held guilds, when other routes hold them
	heldVer int64
	routes  []*route // routes with live sessions, this tick
}

func (g *genState) next() uint64 {
	g.rng += 0x9e3779b97f4a7c15
	return mix64(g.rng)
}

// maxTickGap caps the time one tick catches up on, so a stalled process does
// not burst.
const maxTickGap = time.Second

func (s *Server) newGenState() *genState {
	return &genState{rates: rates{perShard: s.cfg.EventRate, seed: s.world.seed ^ 0x7a7e}, rng: s.world.seed ^ 0x6e6e}
}

func (s *Server) loop() {
	defer s.wg.Done()
	g := s.newGenState()
	last := time.Now()
	timer := time.NewTimer(s.cfg.EventTick)
	defer timer.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-timer.C:
		case <-s.loopWake:
		}
		now := time.Now()
		dt := min(now.Sub(last), maxTickGap)
		last = now
		next := s.tick(g, now, dt)
		timer.Stop()
		if !next.IsZero() {
			timer.Reset(max(next.Sub(now), time.Millisecond))
		}
	}
}

// tick does one round of the loop's work and returns when the next is due
// (zero: only when woken).
func (s *Server) tick(g *genState, now time.Time, dt time.Duration) time.Time {
	s.mu.Lock()
	var next time.Time

	// Disconnected sessions past their TTL end.
	for ss := range s.disconnected {
		ss.mu.Lock()
		attached, at := ss.conn != nil, ss.disconnectedAt
		ss.mu.Unlock()
		switch {
		case attached:
			delete(s.disconnected, ss)
		case !now.Before(at.Add(s.cfg.SessionTTL)):
			s.endSessionLocked(ss)
		default:
			next = earliest(next, at.Add(s.cfg.SessionTTL))
		}
	}

	// Guild outages end.
	kept := s.outages[:0]
	for _, o := range s.outages {
		if !now.Before(o.until) {
			s.endOutageLocked(o.guild, now)
			continue
		}
		kept = append(kept, o)
		next = earliest(next, o.until)
	}
	s.outages = kept

	// Shard conditions end.
	if len(s.faults) > 0 {
		s.rebuildFaultSetLocked(now)
		for _, af := range s.faults {
			if !af.until.IsZero() {
				next = earliest(next, af.until)
			}
		}
	}

	active := len(s.sessions) > 0
	if active && (s.cfg.GuildJoinsPerMinute > 0 || s.cfg.GuildLeavesPerMinute > 0) {
		s.growLocked(g, now, dt)
	}
	if active && s.cfg.EventRate > 0 {
		s.planLocked(g, now, dt)
	}
	s.mu.Unlock()

	g.clearRoutes()
	s.deliver(g)
	if active && (s.cfg.EventRate > 0 || s.cfg.GuildJoinsPerMinute > 0 || s.cfg.GuildLeavesPerMinute > 0) {
		next = earliest(next, now.Add(s.cfg.EventTick))
	}
	return next
}

// growLocked applies guild joins and leaves due in dt.
func (s *Server) growLocked(g *genState, now time.Time, dt time.Duration) {
	ms := s.sinceEpoch(now)
	g.joinAcc += s.cfg.GuildJoinsPerMinute * dt.Minutes()
	for ; g.joinAcc >= 1; g.joinAcc-- {
		gi := s.world.join(now)
		if gi < 0 {
			break
		}
		s.version++
		s.forEachHolderLocked(gi, func(ss *session) {
			if ss.wants("GUILD_CREATE") && !s.silenced(ss, "GUILD_CREATE") {
				ss.push(makeEntry(kindGuildCreate, 0, 0, 0, gi, ms), nil)
			}
		})
	}
	g.leftAcc += s.cfg.GuildLeavesPerMinute * dt.Minutes()
	for ; g.leftAcc >= 1; g.leftAcc-- {
		gi := s.world.leave()
		if gi < 0 {
			break
		}
		s.version++
		s.forEachHolderLocked(gi, func(ss *session) {
			delete(ss.unavail, gi)
			if ss.wants("GUILD_DELETE") && !s.silenced(ss, "GUILD_DELETE") {
				ss.push(makeEntry(kindGuildDelete, 0, 0, 0, gi, ms), nil)
			}
		})
	}
}

// planLocked picks the events of dt: EventRate per shard of the largest
// num_shards among live sessions, each in a random guild of that shard that
// some session holds, and adds each to the batch of every session holding
// its guild (DM-like events: every session on shard 0).
func (s *Server) planLocked(g *genState, now time.Time, dt time.Duration) {
	var top *route
	g.routes = g.routes[:0]
	for _, r := range s.world.route {
		if r.live > 0 {
			g.routes = append(g.routes, r)
			if top == nil || r.n > top.n {
				top = r
			}
		}
	}
	if top == nil {
		return
	}
	live := len(g.routes)
	ms := s.sinceEpoch(now)
	table := &s.world.table
	g.rates.counts(top.n, dt.Seconds(), func(k, count int) {
		list := top.shards[k]
		if len(top.sessions[k]) == 0 {
			if live == 1 {
				return // nobody holds this shard's guilds
			}
			list = s.heldLocked(g, top, k)
		}
		if len(list) == 0 {
			return
		}
		for range count {
			h := g.next()
			typ, ok := s.mix.pick(h, k == 0)
			if !ok {
				return
			}
			variant := pickVariant(typ, h>>20)
			if evTypes[typ].dm {
				g.nextID++
				e := makeEntry(kindEvent, typ, variant, g.nextID, noGuild, ms)
				for _, r := range g.routes {
					g.add(r.sessions[0], e)
				}
				continue
			}
			gi := list[(h>>32)%uint64(len(list))]
			gd := table.get(gi)
			if gd.state.Load() != 0 {
				continue
			}
			g.nextID++
			e := makeEntry(kindEvent, typ, variant, g.nextID, gi, ms)
			for _, r := range g.routes {
				kk := k
				if r != top {
					kk = discord.ShardForGuild(gd.id, r.n)
				}
				g.add(r.sessions[kk], e)
			}
		}
	})
}

// add puts e in the batch of each session.
func (g *genState) add(sessions []*session, e entry) {
	for _, ss := range sessions {
		if len(ss.batch) == 0 {
			g.touched = append(g.touched, ss)
		}
		ss.batch = append(ss.batch, e)
	}
}

// heldLocked returns the guilds of shard k of route top that a session of
// another route holds (while a reshard runs, say), cached until the set of
// sessions changes.
func (s *Server) heldLocked(g *genState, top *route, k int) []int32 {
	if g.heldVer != s.version || g.held == nil {
		g.held, g.heldVer = map[int][]int32{}, s.version
	}
	if list, ok := g.held[k]; ok {
		return list
	}
	var list []int32
	for _, gi := range top.shards[k] {
		id := s.world.table.get(gi).id
		for _, r := range s.world.route {
			if r != top && r.live > 0 && len(r.sessions[discord.ShardForGuild(id, r.n)]) > 0 {
				list = append(list, gi)
				break
			}
		}
	}
	g.held[k] = list
	return list
}

// clearRoutes drops the tick's route snapshot.
func (g *genState) clearRoutes() {
	clear(g.routes)
	g.routes = g.routes[:0]
}

// deliver sequences each touched session's batch: the events its intents
// allow, for guilds it believes available and not silenced.
func (s *Server) deliver(g *genState) {
	table := &s.world.table
	s.ctr.eventIDs.Store(int64(g.nextID))
	record := s.cfg.RecordDeliveries && len(g.touched) > 0
	if record {
		s.deliveredMu.Lock()
		defer s.deliveredMu.Unlock()
		if need := int(g.nextID/64) + 1; len(s.delivered) < need {
			s.delivered = append(s.delivered, make([]uint64, need-len(s.delivered))...)
		}
	}
	for _, ss := range g.touched {
		n := int64(0)
		ss.mu.Lock()
		if !ss.ended {
			intents := ss.view.intents
			for _, e := range ss.batch {
				t := &evTypes[e.typ()]
				if !intents.Has(t.intent) {
					continue
				}
				if gi := e.guild(); gi != noGuild && (table.get(gi).state.Load() != 0 || ss.guildUnavailable(gi)) {
					continue
				}
				if s.faultSet.Load() != nil && s.silenced(ss, t.name) {
					continue
				}
				ss.push(e, nil)
				n++
				if record {
					s.delivered[e.id()/64] |= 1 << (e.id() % 64)
				}
			}
			if n > 0 {
				// Counted before the writer can send them.
				ss.stat.events.Add(n)
				s.ctr.events.Add(n)
				ss.wakeLocked()
			}
		}
		ss.mu.Unlock()
		ss.batch = ss.batch[:0]
	}
	clear(g.touched)
	g.touched = g.touched[:0]
}

// DeliveredSet is a set of sim_event_ids (a bitset).
type DeliveredSet []uint64

// Has reports whether id is in the set.
func (d DeliveredSet) Has(id uint64) bool {
	return id/64 < uint64(len(d)) && d[id/64]&(1<<(id%64)) != 0
}

// Delivered returns the sim_event_ids sequenced so far to at least one
// session: events a client holding every session was due. Empty unless
// Config.RecordDeliveries is set.
func (s *Server) Delivered() DeliveredSet {
	s.deliveredMu.Lock()
	defer s.deliveredMu.Unlock()
	return DeliveredSet(slices.Clone(s.delivered))
}
