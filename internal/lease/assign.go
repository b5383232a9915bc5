package lease

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"sort"
)

// maxAssignTotal bounds AssignInput.Total so a corrupt input is an error
// rather than an allocation that takes the process down.
const maxAssignTotal = 1 << 24

// Node is a node that shards can be assigned to.
type Node struct {
	// ID names the node, as in AssignInput.Owners. It must not be empty.
	ID string
	// Capacity is the most shards the node may hold; 0 means no limit.
	Capacity int
	// Draining nodes get no shards; the shards they hold move elsewhere
	// when there is room.
	Draining bool
}

// AssignInput is what Assign plans from.
type AssignInput struct {
	// Total is the number of shards: 0..Total-1. At most 1<<24.
	Total int
	// Nodes are the nodes shards may live on. IDs must be unique.
	Nodes []Node
	// Owners maps a shard to the ID of the node holding it now. A shard
	// that is absent, or maps to "", is unowned. An owner that is not in
	// Nodes is gone: its shards need a node.
	Owners map[int]string
	// BucketAligned keeps the shards of one identify bucket
	// (shard % MaxConcurrency) on one node where capacity allows, so a
	// node's own identify gate sees every IDENTIFY of its buckets. The
	// unit of balance then is the bucket rather than the shard.
	BucketAligned bool
	// MaxConcurrency is Discord's max_concurrency, the number of buckets.
	// It must be at least 1 when BucketAligned is set, and is ignored
	// otherwise.
	MaxConcurrency int
}

// Move is one shard changing owner.
type Move struct {
	Shard int
	// From is the current owner: "" when the shard is unowned, otherwise a
	// node of the input, draining or not, or an owner that is gone.
	From string
	// To is the node the shard goes to, never "" and never draining.
	To string
}

// Plan is what Assign decides.
type Plan struct {
	// Moves are the owner changes, in shard order.
	Moves []Move
	// Unplaced are the shards, in shard order, that need a node and got
	// none because every node that could take them is full: unowned
	// shards, shards whose owner is gone, and shards of draining nodes.
	// A draining node keeps its unplaced shards (nothing is taken away
	// without a destination); the others stay unowned.
	Unplaced []int
}

// Assign plans which node each shard should live on. Only nodes that are
// not draining receive shards. The plan:
//
//  1. places every shard that needs a node (unowned, owner gone, owner
//     draining) while some node has room, those without a session first;
//  2. balances the nodes: their shard counts differ by at most one, except
//     that no node goes above its Capacity, so nodes at their Capacity may
//     hold fewer;
//  3. moves as few shards as that allows: a balanced assignment gives no
//     moves, and a node that joins takes only its share;
//  4. never takes a shard from a node without giving it to another, so a
//     node above its Capacity keeps the excess until another has room;
//  5. is deterministic: nodes are taken in ID order and shards in shard
//     order, never in map order, so the same input gives the same plan.
//
// Shards that need a node and find none are listed in Plan.Unplaced.
// Invalid input (a negative Total, an empty or repeated node ID, a
// negative Capacity, an owned shard outside 0..Total-1, BucketAligned
// without MaxConcurrency) returns an error wrapping ErrInvalid.
//
// With BucketAligned the same rules hold for buckets instead of shards: a
// bucket goes whole to one node, and nodes' bucket counts differ by at
// most one; a bucket split across nodes is gathered on the node that has
// most of it. Capacities make that a bin-packing problem, which Assign
// solves greedily: a bucket that fits whole on no node is spread shard by
// shard over the room there is, and carrying out a plan and planning
// again can, rarely, still move a bucket.
//
// How it works: the planner moves items, single shards or whole buckets.
// Each item's home is the usable node holding most of its shards (ties go
// to the lower ID). Each node's share of items is filled like water over
// the capacities; where the even split leaves a remainder, the extra item
// goes to the nodes that hold most now, which avoids moves. A node above
// its share or its Capacity gives up items: first those that fit on
// another node below its share, then those it holds fewest shards of,
// then the highest-numbered. Items without a home then go, those with
// shards without a session first, then those with shards on draining
// nodes, then those given up for balance, each to the node below its
// share with room that holds most of it, then the lowest ID. Last, every
// shard is settled with its node's capacity checked shard by shard.
func Assign(in AssignInput) (Plan, error) {
	if err := in.validate(); err != nil {
		return Plan{}, err
	}
	p := newPlanner(in)
	p.findHomes()
	p.balance()
	p.place()
	p.settle()
	return p.plan(), nil
}

func (in AssignInput) validate() error {
	if in.Total < 0 || in.Total > maxAssignTotal {
		return fmt.Errorf("%w: assign: shard total %d is not in [0, %d]", ErrInvalid, in.Total, maxAssignTotal)
	}
	if in.BucketAligned && in.MaxConcurrency < 1 {
		return fmt.Errorf("%w: assign: bucket alignment with max concurrency %d", ErrInvalid, in.MaxConcurrency)
	}
	seen := make(map[string]bool, len(in.Nodes))
	for i, n := range in.Nodes {
		switch {
		case n.ID == "":
			return fmt.Errorf("%w: assign: node %d has an empty ID", ErrInvalid, i)
		case seen[n.ID]:
			return fmt.Errorf("%w: assign: node %q is listed twice", ErrInvalid, n.ID)
		case n.Capacity < 0:
			return fmt.Errorf("%w: assign: node %q has negative capacity %d", ErrInvalid, n.ID, n.Capacity)
		}
		seen[n.ID] = true
	}
	// Sorted, so the error names the same shard whatever the map order.
	shards := make([]int, 0, len(in.Owners))
	for s := range in.Owners {
		shards = append(shards, s)
	}
	slices.Sort(shards)
	for _, s := range shards {
		if s < 0 || s >= in.Total {
			return fmt.Errorf("%w: assign: owned shard %d is not in [0, %d)", ErrInvalid, s, in.Total)
		}
	}
	return nil
}

// planner is the state of one Assign call. Nodes are the ones that may
// receive shards (not draining), indexed in ID order.
type planner struct {
	nodes    []Node
	index    map[string]int  // nodes by ID
	draining map[string]bool // draining node IDs
	owner    []string        // current owner by shard; "" when unowned
	items    [][]int         // shards moved as one, in shard order
	home     []int           // by item: the node it goes to, -1 for none yet
	homeHeld []int           // by item: shards of it its home holds now
	dest     []int           // by shard: the node it goes to, -1 for none
	limit    []int           // by node: capacity in shards, MaxInt for none
	load     []int           // by node: shards the plan puts there so far
	count    []int           // by node: items homed there
	target   []int           // by node: items it should hold
}

func newPlanner(in AssignInput) *planner {
	p := &planner{index: map[string]int{}, draining: map[string]bool{}, owner: make([]string, in.Total)}
	for _, n := range in.Nodes {
		if n.Draining {
			p.draining[n.ID] = true
			continue
		}
		p.nodes = append(p.nodes, n)
	}
	slices.SortFunc(p.nodes, func(a, b Node) int { return cmp.Compare(a.ID, b.ID) })
	p.limit = make([]int, len(p.nodes))
	for i, n := range p.nodes {
		p.index[n.ID] = i
		p.limit[i] = n.Capacity
		if n.Capacity == 0 {
			p.limit[i] = math.MaxInt
		}
	}
	p.load = make([]int, len(p.nodes))
	p.count = make([]int, len(p.nodes))
	for s, id := range in.Owners {
		p.owner[s] = id
	}
	groups := in.Total
	if in.BucketAligned {
		groups = min(in.MaxConcurrency, in.Total)
	}
	p.items = make([][]int, groups)
	all := make([]int, 0, in.Total)
	for g := range groups {
		start := len(all)
		for s := g; s < in.Total; s += groups {
			all = append(all, s)
		}
		p.items[g] = all[start:len(all):len(all)]
	}
	p.home = make([]int, len(p.items))
	p.homeHeld = make([]int, len(p.items))
	p.dest = make([]int, in.Total)
	for s := range p.dest {
		p.dest[s] = -1
	}
	return p
}

// holder returns the node that holds shard now, or -1 when it is unowned,
// gone or draining.
func (p *planner) holder(shard int) int {
	if n, ok := p.index[p.owner[shard]]; ok {
		return n
	}
	return -1
}

// held returns how many of item's shards node holds now.
func (p *planner) held(item, node int) int {
	k := 0
	for _, s := range p.items[item] {
		if p.holder(s) == node {
			k++
		}
	}
	return k
}

// findHomes gives each item the node holding most of its shards, if any.
func (p *planner) findHomes() {
	tally := make([]int, len(p.nodes))
	for i, item := range p.items {
		best := -1
		for _, s := range item {
			if n := p.holder(s); n >= 0 {
				tally[n]++
				if best < 0 || tally[n] > tally[best] || tally[n] == tally[best] && n < best {
					best = n
				}
			}
		}
		p.home[i] = best
		if best >= 0 {
			p.homeHeld[i] = tally[best]
			p.count[best]++
			p.load[best] += len(item)
		}
		for _, s := range item {
			if n := p.holder(s); n >= 0 {
				tally[n] = 0
			}
		}
	}
}

// balance sets every node's share of items and takes away what a node
// holds above its share or its capacity.
func (p *planner) balance() {
	// A node's capacity in items: the items it has plus how many of the
	// smallest items fit in the room left, or, when it has more than fits,
	// how many of the smallest items fit. With single shards, that is its
	// capacity in shards.
	sizes := make([]int, len(p.items))
	for i, item := range p.items {
		sizes[i] = len(item)
	}
	slices.Sort(sizes)
	prefix := make([]int, len(sizes)+1)
	for i, n := range sizes {
		prefix[i+1] = prefix[i] + n
	}
	caps := make([]int, len(p.nodes))
	fitting := func(room int) int {
		return sort.Search(len(prefix), func(k int) bool { return prefix[k] > room }) - 1
	}
	for n, limit := range p.limit {
		caps[n] = fitting(limit)
		if p.load[n] <= limit {
			caps[n] = min(p.count[n]+fitting(limit-p.load[n]), len(p.items))
		}
	}
	p.target = fill(len(p.items), caps, p.count)

	homed := make([][]int, len(p.nodes))
	for i, n := range p.home {
		if n >= 0 {
			homed[n] = append(homed[n], i)
		}
	}
	// fits reports whether item i fits whole on a node below its share
	// other than n. It is only a guide: room goes to items in class order.
	fits := func(i, n int) int {
		for m := range p.nodes {
			if m != n && p.count[m] < p.target[m] && p.load[m] <= p.limit[m]-len(p.items[i]) {
				return 0
			}
		}
		return 1
	}
	for n, items := range homed {
		// Items that fit elsewhere first, then the cheapest to move:
		// fewest shards there now, then the highest-numbered.
		fit := make(map[int]int, len(items))
		for _, i := range items {
			fit[i] = fits(i, n)
		}
		slices.SortFunc(items, func(a, b int) int {
			if c := cmp.Compare(fit[a], fit[b]); c != 0 {
				return c
			}
			if c := cmp.Compare(p.homeHeld[a], p.homeHeld[b]); c != 0 {
				return c
			}
			return cmp.Compare(b, a)
		})
		for _, i := range items {
			if p.count[n] <= p.target[n] && p.load[n] <= p.limit[n] {
				break
			}
			p.home[i] = -1
			p.count[n]--
			p.load[n] -= len(p.items[i])
		}
	}
}

// fill splits n items over nodes that can hold up to caps[i] items each,
// as evenly as the caps allow. Where the split leaves a remainder, the
// extra items go to the nodes with the highest have, then the lowest
// index.
func fill(n int, caps, have []int) []int {
	t := make([]int, len(caps))
	if n == 0 || len(caps) == 0 {
		return t
	}
	sum := func(level int) int {
		s := 0
		for _, c := range caps {
			s += min(c, level)
		}
		return s
	}
	if sum(n) < n {
		// Not enough room: every node is full.
		for i, c := range caps {
			t[i] = min(c, n)
		}
		return t
	}
	// The lowest level that holds every item; n >= 1, so level >= 1.
	level := sort.Search(n+1, func(l int) bool { return sum(l) >= n })
	extra := n
	var up []int
	for i, c := range caps {
		t[i] = min(c, level-1)
		extra -= t[i]
		if c >= level {
			up = append(up, i)
		}
	}
	slices.SortStableFunc(up, func(a, b int) int { return cmp.Compare(have[b], have[a]) })
	for _, i := range up[:extra] {
		t[i]++
	}
	return t
}

// class orders items without a home: 0 when a shard has no usable owner,
// 1 when a shard is on a draining node, 2 otherwise (given up for
// balance; its shards run where they are).
func (p *planner) class(item int) int {
	c := 2
	for _, s := range p.items[item] {
		switch {
		case p.holder(s) >= 0:
		case p.draining[p.owner[s]]:
			c = min(c, 1)
		default:
			return 0
		}
	}
	return c
}

// place finds a home for the items without one, as whole items on nodes
// below their share, and counts the shards each node will hold.
func (p *planner) place() {
	var pool []int
	for i, n := range p.home {
		if n < 0 {
			pool = append(pool, i)
		}
	}
	classes := make([]int, len(p.items))
	for _, i := range pool {
		classes[i] = p.class(i)
	}
	slices.SortStableFunc(pool, func(a, b int) int { return cmp.Compare(classes[a], classes[b]) })
	for _, i := range pool {
		size := len(p.items[i])
		best, bestHeld := -1, -1
		for n := range p.nodes {
			if p.count[n] >= p.target[n] || p.load[n] > p.limit[n]-size {
				continue
			}
			if h := p.held(i, n); h > bestHeld {
				best, bestHeld = n, h
			}
		}
		if best >= 0 {
			p.home[i] = best
			p.count[best]++
			p.load[best] += size
		}
	}
}

// settle decides where each shard goes, checking capacity shard by
// shard. The count per node starts from what each node holds now, so a
// node never ends above both its capacity and what it held: nothing is
// taken away without a destination. Then, each while there is room at the
// item's home: shards that need a node go home (those without a session
// first, then those of draining nodes); shards on usable nodes move home,
// repeated while a move makes room for another; and the shards that still
// need a node go home or, failing that, wherever there is room.
func (p *planner) settle() {
	for n := range p.load {
		p.load[n] = 0
	}
	var needy, moving []int
	for s := range p.dest {
		n := p.holder(s)
		if n < 0 {
			needy = append(needy, s)
			continue
		}
		p.dest[s] = n
		p.load[n]++
		if h := p.home[p.itemOf(s)]; h >= 0 && h != n {
			moving = append(moving, s)
		}
	}
	slices.SortStableFunc(needy, func(a, b int) int {
		return cmp.Compare(boolInt(p.draining[p.owner[a]]), boolInt(p.draining[p.owner[b]]))
	})
	var left []int
	for _, s := range needy {
		if h := p.home[p.itemOf(s)]; h >= 0 && p.load[h] < p.limit[h] {
			p.dest[s] = h
			p.load[h]++
			continue
		}
		left = append(left, s)
	}
	for moved := true; moved; {
		moved = false
		rest := moving[:0]
		for _, s := range moving {
			h := p.home[p.itemOf(s)]
			if p.load[h] >= p.limit[h] {
				rest = append(rest, s)
				continue
			}
			p.load[p.dest[s]]--
			p.dest[s] = h
			p.load[h]++
			moved = true
		}
		moving = rest
	}
	for _, s := range left {
		p.put(s)
	}
}

// put places a shard that needs a node: at its item's home when there is
// room, otherwise where there is room, preferring the node that gets most
// of the shard's item, then the least loaded, then the lowest ID. A shard
// with no room anywhere stays unplaced.
func (p *planner) put(s int) {
	item := p.itemOf(s)
	best := -1
	if h := p.home[item]; h >= 0 && p.load[h] < p.limit[h] {
		best = h
	} else {
		here := make(map[int]int)
		for _, o := range p.items[item] {
			if n := p.dest[o]; n >= 0 {
				here[n]++
			}
		}
		for n := range p.nodes {
			if p.load[n] >= p.limit[n] {
				continue
			}
			if best < 0 || here[n] > here[best] || here[n] == here[best] && p.load[n] < p.load[best] {
				best = n
			}
		}
	}
	if best >= 0 {
		p.dest[s] = best
		p.load[best]++
	}
}

// itemOf returns the item shard s belongs to.
func (p *planner) itemOf(s int) int { return s % len(p.items) }

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// plan turns the destinations into moves and unplaced shards.
func (p *planner) plan() Plan {
	var out Plan
	for s, n := range p.dest {
		switch {
		case n < 0:
			out.Unplaced = append(out.Unplaced, s)
		case p.nodes[n].ID != p.owner[s]:
			out.Moves = append(out.Moves, Move{Shard: s, From: p.owner[s], To: p.nodes[n].ID})
		}
	}
	return out
}
