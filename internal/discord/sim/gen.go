package sim

import (
	"slices"
	"strings"

	"github.com/gatehouse-dev/gatehouse/internal/discord"
)

// Generated event types. The DM variants go to shard 0 only and need the
// DIRECT_MESSAGE_* intents.
const (
	evMessageCreate uint8 = iota
	evMessageUpdate
	evMessageDelete
	evReactionAdd
	evReactionRemove
	evTypingStart
	evPresenceUpdate
	evMemberUpdate
	evVoiceStateUpdate
	evMemberAdd
	evDMMessageCreate
	evDMTypingStart
	evDMReactionAdd
	numEvTypes
)

// evType describes one generated event type.
type evType struct {
	name    string
	intent  discord.Intents // needed to receive it
	dm      bool            // DM-like: no guild, shard 0 only
	weight  uint32          // share of the mix, per 10,000 (guild types) or of DM events
	content bool            // carries message content (stripped without MESSAGE_CONTENT)
	// variants are the size variants' weights, summing to 100.
	variants []uint32
}

// evTypes is the event mix. With GUILD_PRESENCES, PRESENCE_UPDATE dominates
// as on real bots (reference §17); without it, messages lead, then typing
// and reactions.
var evTypes = [numEvTypes]evType{
	evMessageCreate:    {name: "MESSAGE_CREATE", intent: discord.IntentGuildMessages, weight: 1500, content: true, variants: []uint32{40, 25, 15, 10, 10}},
	evMessageUpdate:    {name: "MESSAGE_UPDATE", intent: discord.IntentGuildMessages, weight: 300, content: true, variants: []uint32{60, 40}},
	evMessageDelete:    {name: "MESSAGE_DELETE", intent: discord.IntentGuildMessages, weight: 200, variants: []uint32{100}},
	evReactionAdd:      {name: "MESSAGE_REACTION_ADD", intent: discord.IntentGuildMessageReactions, weight: 600, variants: []uint32{100}},
	evReactionRemove:   {name: "MESSAGE_REACTION_REMOVE", intent: discord.IntentGuildMessageReactions, weight: 150, variants: []uint32{100}},
	evTypingStart:      {name: "TYPING_START", intent: discord.IntentGuildMessageTyping, weight: 900, variants: []uint32{100}},
	evPresenceUpdate:   {name: "PRESENCE_UPDATE", intent: discord.IntentGuildPresences, weight: 5500, variants: []uint32{40, 30, 15, 15}},
	evMemberUpdate:     {name: "GUILD_MEMBER_UPDATE", intent: discord.IntentGuildMembers, weight: 400, variants: []uint32{70, 30}},
	evVoiceStateUpdate: {name: "VOICE_STATE_UPDATE", intent: discord.IntentGuildVoiceStates, weight: 200, variants: []uint32{75, 25}},
	evMemberAdd:        {name: "GUILD_MEMBER_ADD", intent: discord.IntentGuildMembers, weight: 50, variants: []uint32{100}},
	evDMMessageCreate:  {name: "MESSAGE_CREATE", intent: discord.IntentDirectMessages, dm: true, weight: 50, variants: []uint32{70, 30}},
	evDMTypingStart:    {name: "TYPING_START", intent: discord.IntentDirectMessageTyping, dm: true, weight: 35, variants: []uint32{100}},
	evDMReactionAdd:    {name: "MESSAGE_REACTION_ADD", intent: discord.IntentDirectMessageReactions, dm: true, weight: 15, variants: []uint32{100}},
}

// GeneratedEventTypes returns the dispatch types the event generator makes,
// in the order of its mix, each once: the names Config.EventTypes accepts.
func GeneratedEventTypes() []string {
	var names []string
	for _, t := range evTypes {
		if !slices.Contains(names, t.name) {
			names = append(names, t.name)
		}
	}
	return names
}

// checkEventTypes validates Config.EventTypes.
func checkEventTypes(names []string) error {
	known := GeneratedEventTypes()
	for _, n := range names {
		if !slices.Contains(known, n) {
			return configError("EventTypes: unknown event type %q; the generator makes %s", n, strings.Join(known, ", "))
		}
	}
	return nil
}

// dmShare is the share of shard 0's events that are DM-like, per 10,000,
// when some session may receive them.
const dmShare = 800

// mix is the event mix restricted to the types some session can receive.
type mix struct {
	guild, dm []mixItem // cumulative weights
}

type mixItem struct {
	cum uint32
	typ uint8
}

// newMix builds the mix of the types whose intent is in union and, when only
// is not empty, whose name is in only (Config.EventTypes). A name covers the
// guild and the DM-like variant of a type.
func newMix(union discord.Intents, only []string) mix {
	var m mix
	var gsum, dsum uint32
	for i, t := range evTypes {
		if !union.Has(t.intent) || (len(only) > 0 && !slices.Contains(only, t.name)) {
			continue
		}
		if t.dm {
			dsum += t.weight
			m.dm = append(m.dm, mixItem{dsum, uint8(i)})
		} else {
			gsum += t.weight
			m.guild = append(m.guild, mixItem{gsum, uint8(i)})
		}
	}
	return m
}

// pick chooses an event type from h. dmAllowed says whether the event may be
// DM-like (shard 0). ok is false when no type can be received.
func (m *mix) pick(h uint64, dmAllowed bool) (typ uint8, ok bool) {
	if dmAllowed && len(m.dm) > 0 && (len(m.guild) == 0 || (h>>48)%10000 < dmShare) {
		return pickCum(m.dm, h), true
	}
	if len(m.guild) == 0 {
		return 0, false
	}
	return pickCum(m.guild, h), true
}

func pickCum(items []mixItem, h uint64) uint8 {
	x := uint32(h % uint64(items[len(items)-1].cum))
	for _, it := range items {
		if x < it.cum {
			return it.typ
		}
	}
	return items[len(items)-1].typ
}

// pickVariant chooses a size variant of typ from h.
func pickVariant(typ uint8, h uint64) uint8 {
	x := uint32(h % 100)
	var cum uint32
	for i, w := range evTypes[typ].variants {
		cum += w
		if x < cum {
			return uint8(i)
		}
	}
	return 0
}

// rates turns a rate per shard into whole events per shard and tick. Each
// shard keeps its fractional remainder; the remainders start at seeded
// random phases so that at low rates the shards do not all fire in the same
// tick.
type rates struct {
	perShard float64
	acc      []float64
	seed     uint64
}

// counts advances the accumulators of n shards by dt seconds and calls emit
// for each shard with at least one event due.
func (r *rates) counts(n int, dt float64, emit func(shard, count int)) {
	for len(r.acc) < n {
		r.acc = append(r.acc, unit(hash2(r.seed, uint64(len(r.acc)))))
	}
	add := r.perShard * dt
	for k := range n {
		a := r.acc[k] + add
		c := int(a)
		r.acc[k] = a - float64(c)
		if c > 0 {
			emit(k, c)
		}
	}
}
