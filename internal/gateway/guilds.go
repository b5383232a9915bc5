package gateway

import (
	"encoding/json"
	"maps"
	"slices"

	"github.com/gatehouse-dev/gatehouse/internal/discord"
)

// guildCount follows how many guilds a shard session holds from its
// dispatches. READY lists the session's guilds, unavailable; each then
// arrives as a GUILD_CREATE, which changes nothing. GUILD_DELETE with
// unavailable set is an outage: the guild stays held and comes back with
// another GUILD_CREATE. GUILD_DELETE without it means the bot left, and
// any other GUILD_CREATE is a guild it joined. The guilds still due a
// GUILD_CREATE are kept by ID (all of READY's during the initial stream,
// a few during an outage, none most of the time), so the count is exact
// however the events interleave. It is pure: the runner feeds it.
type guildCount struct {
	n        int                 // guilds held
	pending  map[uint64]struct{} // held guilds still due a GUILD_CREATE; nil when none
	observed bool
}

// ready starts a new session holding ids.
func (g *guildCount) ready(ids []discord.Snowflake) {
	*g = guildCount{n: len(ids), observed: true}
	for _, id := range ids {
		g.due(uint64(id))
	}
}

// resumed continues a session saved with n guilds and pending still due a
// GUILD_CREATE (by this node or another).
func (g *guildCount) resumed(n int, pending []uint64) {
	*g = guildCount{n: n, observed: n > 0}
	for _, id := range pending {
		g.due(id)
	}
}

func (g *guildCount) due(id uint64) {
	if g.pending == nil {
		g.pending = map[uint64]struct{}{}
	}
	g.pending[id] = struct{}{}
}

// arrived reports whether id was due, and forgets it.
func (g *guildCount) arrived(id uint64) bool {
	if _, ok := g.pending[id]; !ok {
		return false
	}
	delete(g.pending, id)
	if len(g.pending) == 0 {
		g.pending = nil // READY's stream is over: give the memory back
	}
	return true
}

func (g *guildCount) create(id uint64) {
	if !g.arrived(id) {
		g.n++
	}
	g.observed = true
}

func (g *guildCount) delete(id uint64, unavailable bool) {
	if unavailable {
		g.due(id)
		return
	}
	g.arrived(id)
	if g.n > 0 {
		g.n--
	}
}

// pendingIDs returns the guilds still due a GUILD_CREATE, sorted, to save.
func (g *guildCount) pendingIDs() []uint64 {
	if len(g.pending) == 0 {
		return nil
	}
	return slices.Sorted(maps.Keys(g.pending))
}

// dispatch feeds one event. It allocates nothing for the events it
// ignores, and decodes d only for READY and GUILD_DELETE.
func (g *guildCount) dispatch(h discord.Header) {
	switch {
	case h.TypeIs("GUILD_CREATE"):
		g.create(uint64(h.GuildID))
	case h.TypeIs("GUILD_DELETE"):
		var d struct {
			Unavailable bool `json:"unavailable"`
		}
		_ = json.Unmarshal(h.D, &d) // unreadable: counts as a leave
		g.delete(uint64(h.GuildID), d.Unavailable)
	case h.TypeIs("READY"):
		var d struct {
			Guilds []struct {
				ID discord.Snowflake `json:"id"`
			} `json:"guilds"`
		}
		if json.Unmarshal(h.D, &d) == nil {
			ids := make([]discord.Snowflake, len(d.Guilds))
			for i, gd := range d.Guilds {
				ids[i] = gd.ID
			}
			g.ready(ids)
		}
	}
}
