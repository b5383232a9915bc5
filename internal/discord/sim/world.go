package sim

import (
	"math"
	"sync/atomic"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/discord"
)

// This file holds the simulated world: the guilds the bot is in and the
// routing index that maps (num_shards, shard) to guilds. Everything about a
// guild beyond its ID and a few sizes (names, channels, roles, members) is
// derived from the seed and the guild ID by pure functions, so nothing else is
// stored and any frame can be rendered again byte for byte.

// mix64 is the splitmix64 finalizer: a fast, well-spread 64-bit hash.
func mix64(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ x>>30) * 0xbf58476d1ce4e5b9
	x = (x ^ x>>27) * 0x94d049bb133111eb
	return x ^ x>>31
}

// hash2 combines two values into one hash.
func hash2(a, b uint64) uint64 { return mix64(a ^ mix64(b)) }

// unit maps a hash to [0, 1).
func unit(h uint64) float64 { return float64(h>>11) / (1 << 53) }

// logUniform maps a hash to [lo, hi) with a log-uniform distribution.
func logUniform(h uint64, lo, hi float64) float64 {
	return math.Exp(math.Log(lo) + unit(h)*(math.Log(hi)-math.Log(lo)))
}

// Guild states, kept in guild.state.
const (
	guildLeft   = 1 << 0 // the bot left the guild
	guildOutage = 1 << 1 // the guild is unavailable (guild_outage fault)
)

// guild is one guild of the world. Every field but state is set once when
// the guild is created and read without locks afterwards.
type guild struct {
	id      discord.Snowflake
	h       uint64 // hash of the seed and the ID: the source of derived data
	members int32  // member_count
	text    uint8  // text channels (the first channels)
	voice   uint8  // voice channels (after the text channels)
	roles   uint8  // roles, @everyone included
	emojis  uint8
	joined  int64 // joined_at, Unix milliseconds
	state   atomic.Uint32
}

// guildTable is an append-only table of guilds that readers index without
// locks: guilds live in fixed chunks that never move, and the chunk list is
// replaced (never modified) when it grows. Appends happen under the server
// mutex.
type guildTable struct {
	chunks atomic.Pointer[[]*guildChunk]
	n      atomic.Int32
}

const guildChunkBits = 12

type guildChunk [1 << guildChunkBits]guild

// get returns guild i, which must be below len.
func (t *guildTable) get(i int32) *guild {
	return &(*t.chunks.Load())[i>>guildChunkBits][i&(1<<guildChunkBits-1)]
}

func (t *guildTable) len() int32 { return t.n.Load() }

// add appends a guild slot and returns its index and address; the caller
// fills it before publishing it with publish.
func (t *guildTable) add() (int32, *guild) {
	i := t.n.Load()
	var chunks []*guildChunk
	if p := t.chunks.Load(); p != nil {
		chunks = *p
	}
	if int(i>>guildChunkBits) >= len(chunks) {
		grown := append(append([]*guildChunk(nil), chunks...), new(guildChunk))
		t.chunks.Store(&grown)
		chunks = grown
	}
	return i, &chunks[i>>guildChunkBits][i&(1<<guildChunkBits-1)]
}

// publish makes the guilds added so far visible to len.
func (t *guildTable) publish(n int32) { t.n.Store(n) }

// World time span of the initial guilds. Fixed dates, not the clock, so one
// seed always gives the same IDs.
var (
	worldStart = time.Date(2016, 1, 1, 0, 0, 0, 0, time.UTC)
	worldEnd   = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
)

// world is the guild world and its routing index. It is not safe for
// concurrent use except for guild reads through table.
type world struct {
	seed  uint64
	table guildTable
	live  []int32        // indices of guilds the bot is in, for leaves
	pos   []int32        // pos[i] = index of guild i in live, -1 when left
	rng   uint64         // state for joins and leaves
	lastJ int64          // last join's snowflake milliseconds, to keep IDs increasing
	route map[int]*route // by num_shards
	byID  map[discord.Snowflake]int32
	botID discord.Snowflake
}

// route is the routing index for one num_shards value.
type route struct {
	n        int
	shards   [][]int32    // guild indices of each shard, in world order
	sessions [][]*session // live sessions of each shard
	live     int          // live sessions over all shards
	idle     int64        // world version when the route lost its last session
}

func newWorld(seed int64, guilds int) *world {
	w := &world{seed: mix64(uint64(seed)), route: map[int]*route{}, byID: make(map[discord.Snowflake]int32, guilds)}
	w.rng = w.seed
	w.botID = discord.NewSnowflake(time.Date(2020, 5, 17, 9, 30, 0, 0, time.UTC).Add(time.Duration(w.seed%86400000)*time.Millisecond), 1, 0, w.seed&0xfff)
	span := worldEnd.Sub(worldStart).Milliseconds()
	slot := float64(span) / float64(guilds)
	for i := range guilds {
		h := hash2(w.seed, uint64(i)+1)
		ms := worldStart.UnixMilli() + int64((float64(i)+0.05+0.9*unit(h))*slot)
		w.addGuild(ms, h)
	}
	w.lastJ = worldEnd.UnixMilli()
	return w
}

// addGuild creates a guild with a snowflake of creation time ms.
func (w *world) addGuild(ms int64, h uint64) int32 {
	i, g := w.table.add()
	g.id = discord.NewSnowflake(time.UnixMilli(ms), h>>8&31, h>>13&31, h>>18&0xfff)
	g.h = hash2(w.seed, uint64(g.id))
	fillGuild(g, g.h)
	w.table.publish(i + 1)
	w.byID[g.id] = i
	w.pos = append(w.pos, int32(len(w.live)))
	w.live = append(w.live, i)
	return i
}

// fillGuild derives a guild's sizes from its hash: most guilds are small, a
// few are large (member counts: 70% 2-120, 25% 120-5k, 4.5% 5k-100k, 0.5%
// 100k-800k).
func fillGuild(g *guild, h uint64) {
	u := unit(mix64(h ^ 1))
	var m float64
	switch {
	case u < 0.70:
		m = logUniform(mix64(h^2), 2, 120)
	case u < 0.95:
		m = logUniform(mix64(h^2), 120, 5000)
	case u < 0.995:
		m = logUniform(mix64(h^2), 5000, 100000)
	default:
		m = logUniform(mix64(h^2), 100000, 800000)
	}
	g.members = int32(m)
	scale := math.Log10(max(m, 2)) // 0.3 .. 5.9
	g.text = uint8(2 + scale*3 + unit(mix64(h^3))*4*scale)
	g.voice = uint8(1 + unit(mix64(h^4))*2*scale)
	g.roles = uint8(2 + unit(mix64(h^5))*5*scale)
	g.emojis = uint8(unit(mix64(h^6)) * 12 * scale)
	created := g.id.Time().UnixMilli()
	g.joined = created + int64(unit(mix64(h^7))*float64(worldEnd.UnixMilli()-created))
}

// next returns the world's next random number (joins and leaves).
func (w *world) next() uint64 {
	w.rng += 0x9e3779b97f4a7c15
	return mix64(w.rng)
}

// join adds a guild created at now and indexes it in every route. It returns
// the new guild's index, or -1 when the world is full.
func (w *world) join(now time.Time) int32 {
	if w.table.len() >= maxGuilds {
		return -1
	}
	ms := max(now.UnixMilli(), w.lastJ+1)
	w.lastJ = ms
	i := w.addGuild(ms, w.next())
	g := w.table.get(i)
	for _, r := range w.route {
		k := discord.ShardForGuild(g.id, r.n)
		r.shards[k] = append(r.shards[k], i)
	}
	return i
}

// leave removes a random guild the bot is in and returns its index, or -1
// when there is none.
func (w *world) leave() int32 {
	if len(w.live) == 0 {
		return -1
	}
	p := int(w.next() % uint64(len(w.live)))
	i := w.live[p]
	last := w.live[len(w.live)-1]
	w.live[p], w.pos[last] = last, int32(p)
	w.live = w.live[:len(w.live)-1]
	w.pos[i] = -1
	g := w.table.get(i)
	g.state.Or(guildLeft)
	delete(w.byID, g.id)
	for _, r := range w.route {
		k := discord.ShardForGuild(g.id, r.n)
		list := r.shards[k]
		for j, x := range list {
			if x == i {
				r.shards[k] = append(list[:j:j], list[j+1:]...)
				break
			}
		}
	}
	return i
}

// routeFor returns the routing index for n shards, building it on first use.
func (w *world) routeFor(n int) *route {
	if r := w.route[n]; r != nil {
		return r
	}
	r := &route{n: n, shards: make([][]int32, n), sessions: make([][]*session, n)}
	for _, i := range w.live {
		k := discord.ShardForGuild(w.table.get(i).id, n)
		r.shards[k] = append(r.shards[k], i)
	}
	w.route[n] = r
	return r
}

// maxRoutesIdle is how many routes without sessions are kept for reuse.
const maxRoutesIdle = 8

// dropIdleRoutes forgets routes without sessions beyond the newest few.
func (w *world) dropIdleRoutes() {
	idle := 0
	for _, r := range w.route {
		if r.live == 0 {
			idle++
		}
	}
	for idle > maxRoutesIdle {
		var oldest *route
		for _, r := range w.route {
			if r.live == 0 && (oldest == nil || r.idle < oldest.idle) {
				oldest = r
			}
		}
		delete(w.route, oldest.n)
		idle--
	}
}

// Derived IDs. Channels, roles and emojis are snowflakes a little after the
// guild's creation; users come from a pool shared by all guilds, so the same
// user shows up in several guilds as on Discord.

const userPool = 1 << 22

func (w *world) channelID(g *guild, j int) uint64 {
	ms := g.id.Time().UnixMilli() + int64(j+1)*61_000 + int64(g.h>>40&0xffff)
	return uint64(discord.NewSnowflake(time.UnixMilli(ms), 2, 1, uint64(j)))
}

func (w *world) roleID(g *guild, r int) uint64 {
	if r == 0 {
		return uint64(g.id) // @everyone has the guild's ID
	}
	ms := g.id.Time().UnixMilli() + int64(r)*97_000 + int64(g.h>>24&0xffff)
	return uint64(discord.NewSnowflake(time.UnixMilli(ms), 3, 1, uint64(r)))
}

func (w *world) emojiID(g *guild, e int) uint64 {
	ms := g.id.Time().UnixMilli() + int64(e+1)*3_600_000 + int64(g.h>>8&0xffff)
	return uint64(discord.NewSnowflake(time.UnixMilli(ms), 4, 2, uint64(e)))
}

// userID returns the ID of pool user u.
func (w *world) userID(u uint32) uint64 {
	h := hash2(w.seed^0x5eed, uint64(u))
	ms := time.Date(2015, 5, 1, 0, 0, 0, 0, time.UTC).UnixMilli() + int64(h%(10*365*86400000))
	return uint64(discord.NewSnowflake(time.UnixMilli(ms), h>>40&31, h>>45&31, uint64(u)&0xfff))
}

// memberUser returns the pool user of member m of g; member 0 is the owner.
func (w *world) memberUser(g *guild, m uint32) uint32 {
	return uint32(hash2(g.h, uint64(m)) % userPool)
}
