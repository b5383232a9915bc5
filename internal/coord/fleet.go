package coord

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/coord/coordapi"
	"github.com/gatehouse-dev/gatehouse/internal/lease"
)

// fleet is the pure core that leases shards to gateway nodes: nodes
// heartbeat with the shards they hold, the coordinator renews those
// leases, and answers with shards to start (a new lease each) and shards to
// stop. A node that stops heartbeating loses its leases when they expire,
// and its shards go to the others, which RESUME them from the saved
// session. A shard moves between live nodes in two steps: the holder is
// told to stop it and reports it released; only then is it leased to the
// next node, so two nodes never run it at once. The caller holds the lock
// and passes the time.
type fleet struct {
	count         int
	ttl           time.Duration
	bucketAligned bool
	maxConc       int
	leases        *lease.Table
	nodes         map[string]*fleetNode
	// drained are nodes an operator drained (POST /v1/commands), whatever
	// they report.
	drained map[string]bool
	// dirty says the coordinator's state (leases, Shardman sessions,
	// glance states) changed since it was last saved.
	dirty bool
	// taken reports shards held outside the fleet (Shardman workers); nil:
	// none. They are never assigned to a node.
	taken func(shard int) bool
	// reports are the nodes' last reports per shard (see coordapi.ShardReport).
	reports map[int]reported
	// handoffs are the shards moving between live nodes: revoked from
	// from, not yet ready on the next node. At most one per identify
	// bucket is in flight, so if RESUMEs fail the IDENTIFYs they fall back
	// to fit in one identify window and the bucket order holds.
	handoffs map[int]handoff
	// mode is the publish mode of this generation's shards during a
	// reshard (hold, dedup, handover); empty: publish.
	mode string
	// next is the generation a reshard starts, leased to the same nodes
	// beside this one (sharing nodes and drained); nil outside a reshard.
	next *fleet
	// reshard is the reshard under way, or the last one.
	reshard *coordapi.Reshard
	// shardingRequired notes a shard report that Discord closed with
	// 4011: the coordinator starts an emergency reshard.
	shardingRequired bool
	// journal makes every grant and release a write for the lease
	// authority (a replicated coordinator): the leases last until
	// released, nodes are alive as long as their liveness record (live),
	// and the shell writes writes through before it acts on them.
	journal bool
	writes  []leaseWrite
	// live are the nodes whose liveness record exists, with its epoch
	// (journal only). A node that stops heartbeating keeps its shards
	// while it is live: it may only have lost the coordinator.
	live map[string]uint64
}

// handoff is a shard moving between live nodes.
type handoff struct {
	from string
	at   time.Time
}

type fleetNode struct {
	capacity int
	draining bool // as the node reports it
	lastSeen time.Time
}

// reported is the last report on a shard, from the node that held it.
type reported struct {
	coordapi.ShardReport
	node  string
	at    time.Time
	since time.Time // when the shard entered State (or this node took it)
	rate  float64   // events per second between the last two reports
}

func newFleet(count int, ttl time.Duration, bucketAligned bool, maxConc int, firstToken uint64) (*fleet, error) {
	return newFleetMode(count, ttl, bucketAligned, maxConc, firstToken, false)
}

// newFleetMode returns a fleet; journal makes it a replicated
// coordinator's (see fleet.journal).
func newFleetMode(count int, ttl time.Duration, bucketAligned bool, maxConc int, firstToken uint64, journal bool) (*fleet, error) {
	t, err := lease.New(lease.Config{TTL: ttl, FirstToken: firstToken, UntilReleased: journal})
	if err != nil {
		return nil, err
	}
	if journal {
		ttl = max(ttl, time.Millisecond) // the table has none; keep the fleet's
	} else {
		ttl = t.TTL()
	}
	return &fleet{count: count, ttl: ttl, bucketAligned: bucketAligned, maxConc: maxConc, leases: t, nodes: map[string]*fleetNode{},
		drained: map[string]bool{}, journal: journal, live: map[string]uint64{}}, nil
}

// beat applies node id's heartbeat at now and returns its orders.
func (f *fleet) beat(now time.Time, id string, b coordapi.NodeBeat) (coordapi.NodeOrders, error) {
	if !coordapi.ValidNodeID(id) {
		return coordapi.NodeOrders{}, fmt.Errorf("%w: node ID %q: want 1 to 128 letters, digits, -, _ and . (not at either end, never two dots)", ErrBadRequest, id)
	}
	if b.Capacity < 0 {
		return coordapi.NodeOrders{}, fmt.Errorf("%w: capacity %d is negative", ErrBadRequest, b.Capacity)
	}
	f.expire(now)
	f.dirty = true // renewals move expiry times, at least
	n := f.nodes[id]
	if n == nil {
		n = &fleetNode{}
		f.nodes[id] = n
	}
	n.capacity, n.draining, n.lastSeen = b.Capacity, b.Draining, now
	// Each section of the beat goes to the generation of its count; a
	// section of another count (a generation a reshard replaced) gets no
	// answer: the node retires it on seeing the current count.
	var cur, next coordapi.GenBeat
	for _, sec := range []*coordapi.GenBeat{&b.GenBeat, b.Next} {
		switch {
		case sec == nil:
		case sec.ShardCount == 0 || sec.ShardCount == f.count:
			cur = *sec
		case f.next != nil && sec.ShardCount == f.next.count:
			next = *sec
		}
	}
	o := coordapi.NodeOrders{LeaseTTLMS: f.ttl.Milliseconds(), Drained: f.drained[id]}
	var err error
	if o.GenOrders, err = f.genBeat(now, id, cur); err != nil {
		return coordapi.NodeOrders{}, err
	}
	if f.next != nil {
		no, err := f.next.genBeat(now, id, next)
		if err != nil {
			return coordapi.NodeOrders{}, err
		}
		o.Next = &no
	}
	return o, nil
}

// GenBeat applies node id's heartbeat on this generation's shards.
func (f *fleet) genBeat(now time.Time, id string, b coordapi.GenBeat) (coordapi.GenOrders, error) {
	for _, h := range append(slices.Clone(b.Shards), b.Released...) {
		if h.Shard < 0 || h.Shard >= f.count {
			return coordapi.GenOrders{}, fmt.Errorf("%w: shard %d is out of range for %d shards", ErrBadRequest, h.Shard, f.count)
		}
	}
	for _, r := range b.Reports {
		switch {
		case r.NumShards != 0 && r.NumShards != f.count:
			return coordapi.GenOrders{}, fmt.Errorf("%w: report on shard %d/%d among shards of %d", ErrBadRequest, r.Shard, r.NumShards, f.count)
		case r.Shard < 0 || r.Shard >= f.count:
			return coordapi.GenOrders{}, fmt.Errorf("%w: report on shard %d, out of range for %d shards", ErrBadRequest, r.Shard, f.count)
		case len(r.State) > 32 || len(r.Error) > coordapi.MaxReportError:
			return coordapi.GenOrders{}, fmt.Errorf("%w: report on shard %d: state or error too long", ErrBadRequest, r.Shard)
		case r.Guilds != nil && *r.Guilds < 0, r.GuildsPending < 0:
			return coordapi.GenOrders{}, fmt.Errorf("%w: report on shard %d: negative guild count", ErrBadRequest, r.Shard)
		case len(r.Mode) > 16:
			return coordapi.GenOrders{}, fmt.Errorf("%w: report on shard %d: mode too long", ErrBadRequest, r.Shard)
		}
	}
	o := coordapi.GenOrders{ShardCount: f.count, Mode: f.mode, Assign: []coordapi.HeldShard{}, Renewed: []coordapi.HeldShard{}, Revoke: []int{}}
	for _, r := range b.Released {
		// Released by its holder: free for the next node. A stale report
		// (the lease moved on) changes nothing.
		_ = f.release(r.Shard, id, r.Token)
	}
	for _, h := range b.Shards {
		l, err := f.leases.Renew(now, h.Shard, id, h.Token)
		if err != nil {
			// Not this node's lease with this token. If nobody holds the
			// shard (a restarted coordinator), adopt it under a new token;
			// otherwise the node must stop it.
			l, err = f.acquire(now, h.Shard, id)
			if err != nil {
				o.Revoke = append(o.Revoke, h.Shard)
				continue
			}
		}
		o.Renewed = append(o.Renewed, coordapi.HeldShard{Shard: l.Shard, Token: l.Token})
	}
	// The node is the truth about what it runs: a lease it holds on a
	// shard it no longer reports (it restarted, or never got the answer
	// that assigned it) is free again, for it or another node.
	for _, l := range f.leases.Held(id) {
		if !slices.ContainsFunc(b.Shards, func(h coordapi.HeldShard) bool { return h.Shard == l.Shard }) {
			_ = f.release(l.Shard, id, l.Token)
		}
	}
	f.report(now, id, b.Reports)
	plan, err := f.plan(now)
	if err != nil {
		return coordapi.GenOrders{}, err
	}
	f.settleHandoffs(now)
	for _, m := range plan.Moves {
		switch {
		case m.From == id:
			if !slices.Contains(o.Revoke, m.Shard) && f.startHandoff(now, m.Shard, id) {
				o.Revoke = append(o.Revoke, m.Shard)
			}
		case m.To == id && m.From == "":
			if f.taken != nil && f.taken(m.Shard) {
				continue
			}
			l, err := f.acquire(now, m.Shard, id)
			if err != nil {
				continue // taken meanwhile; the next heartbeat plans again
			}
			o.Assign = append(o.Assign, coordapi.HeldShard{Shard: l.Shard, Token: l.Token})
		}
	}
	slices.Sort(o.Revoke)
	return o, nil
}

// handoffTimeout bounds how long a handoff counts as in flight when the
// next node never reports the shard ready, in TTLs.
const handoffTimeout = 3

// startHandoff reports whether shard may be revoked from node from now: it
// is already moving, or no other shard of its bucket is.
func (f *fleet) startHandoff(now time.Time, shard int, from string) bool {
	if f.handoffs == nil {
		f.handoffs = map[int]handoff{}
	}
	if h, ok := f.handoffs[shard]; ok && h.from == from {
		return true
	}
	buckets := max(f.maxConc, 1)
	for s := range f.handoffs {
		if s%buckets == shard%buckets {
			return false
		}
	}
	f.handoffs[shard] = handoff{from: from, at: now}
	return true
}

// settleHandoffs ends the handoffs whose shard is ready on another node,
// or that have waited too long.
func (f *fleet) settleHandoffs(now time.Time) {
	for s, h := range f.handoffs {
		r, ok := f.shardReport(now, s)
		if (ok && r.node != h.from && r.State == "ready") || now.Sub(h.at) >= handoffTimeout*f.ttl {
			delete(f.handoffs, s)
		}
	}
}

// report keeps node id's reports on the shards it holds and forgets its
// older ones.
func (f *fleet) report(now time.Time, id string, reports []coordapi.ShardReport) {
	if f.reports == nil {
		f.reports = map[int]reported{}
	}
	prev := map[int]reported{}
	for s, r := range f.reports {
		if r.node == id {
			prev[s] = r
			delete(f.reports, s)
		}
	}
	for _, r := range reports {
		l, ok := f.leases.Get(r.Shard)
		if !ok || l.Holder != id || !l.Live(now) {
			continue
		}
		if closedSharding(r) {
			f.shardingRequired = true
		}
		nr := reported{ShardReport: r, node: id, at: now, since: now}
		if p, ok := prev[r.Shard]; ok {
			if p.State == r.State {
				nr.since = p.since
			}
			if dt := now.Sub(p.at).Seconds(); dt > 0 && r.Events >= p.Events {
				nr.rate = float64(r.Events-p.Events) / dt
			}
		}
		f.reports[r.Shard] = nr
	}
}

// shardReport returns the report on shard from its current holder.
func (f *fleet) shardReport(now time.Time, shard int) (reported, bool) {
	r, ok := f.reports[shard]
	if !ok {
		return reported{}, false
	}
	if l, held := f.leases.Get(shard); !held || l.Holder != r.node || !l.Live(now) {
		return reported{}, false
	}
	return r, true
}

// plan runs the assignment planner over the live nodes and live leases.
func (f *fleet) plan(now time.Time) (lease.Plan, error) {
	in := lease.AssignInput{Total: f.count, Owners: map[int]string{}, BucketAligned: f.bucketAligned, MaxConcurrency: f.maxConc}
	ids := make([]string, 0, len(f.nodes))
	for id := range f.nodes {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		n := f.nodes[id]
		in.Nodes = append(in.Nodes, lease.Node{ID: id, Capacity: n.capacity, Draining: n.draining || f.drained[id]})
	}
	held := map[string]int{}
	for _, l := range f.leases.Leases() {
		if l.Live(now) {
			in.Owners[l.Shard] = l.Holder
			held[l.Holder]++
		}
	}
	// A holder that does not heartbeat but whose liveness record lives
	// keeps its shards and gets no more: it cannot hear orders, and
	// nobody else may have its shards.
	for _, id := range slices.Sorted(maps.Keys(held)) {
		if _, beating := f.nodes[id]; !beating {
			if _, live := f.live[id]; live && f.journal {
				in.Nodes = append(in.Nodes, lease.Node{ID: id, Capacity: held[id]})
			}
		}
	}
	slices.SortFunc(in.Nodes, func(a, b lease.Node) int { return strings.Compare(a.ID, b.ID) })
	return lease.Assign(in)
}

// expire drops the nodes silent for the TTL and the expired leases, and
// returns the leases it dropped. With a journal, leases last until
// released and only a node's liveness record ending them (nodeGone)
// frees them.
func (f *fleet) expire(now time.Time) []lease.Lease {
	for id, n := range f.nodes {
		if now.Sub(n.lastSeen) >= f.ttl {
			delete(f.nodes, id)
		}
	}
	if f.journal {
		return nil
	}
	expired := f.leases.Expire(now)
	if f.next != nil {
		expired = append(expired, f.next.leases.Expire(now)...)
	}
	if len(expired) > 0 {
		f.dirty = true
	}
	return expired
}

// setDrain drains node id (or every known node for "*"), or undrains it.
func (f *fleet) setDrain(id string, on bool) error {
	if f.drained == nil {
		f.drained = map[string]bool{}
	}
	ids := []string{id}
	if id == "*" {
		ids = ids[:0]
		for n := range f.nodes {
			ids = append(ids, n)
		}
	} else if !coordapi.ValidNodeID(id) {
		return fmt.Errorf("%w: node ID %q: want 1 to 128 letters, digits, -, _ and . (not at either end, never two dots)", ErrBadRequest, id)
	}
	for _, n := range ids {
		if on {
			f.drained[n] = true
		} else {
			delete(f.drained, n)
		}
	}
	return nil
}

// leave releases everything node id holds (a graceful shutdown, after the
// node saved its sessions) and forgets the node.
// A drain ends with the node: the next process under the same ID (a
// rolling update) takes shards again.
func (f *fleet) leave(id string) []lease.Lease {
	delete(f.nodes, id)
	delete(f.drained, id)
	f.dirty = true
	released := f.releaseHolder(id)
	if f.next != nil {
		released = append(released, f.next.releaseHolder(id)...)
	}
	return released
}

// nodeLive records that node id's liveness record exists with epoch
// (journal only). A new epoch means the node lost its record and made a
// new one, after stopping everything it ran: what it held is free.
func (f *fleet) nodeLive(id string, epoch uint64) []lease.Lease {
	old, seen := f.live[id]
	f.live[id] = epoch
	if f.next != nil {
		f.next.live = f.live
	}
	if seen && old != epoch {
		return f.dropHolder(id)
	}
	return nil
}

// nodeGone records that node id's liveness record expired or was deleted:
// it has stopped acting for its shards, which are free.
func (f *fleet) nodeGone(id string) []lease.Lease {
	delete(f.live, id)
	delete(f.nodes, id)
	return f.dropHolder(id)
}

func (f *fleet) dropHolder(id string) []lease.Lease {
	f.dirty = true
	gone := f.releaseHolder(id)
	if f.next != nil {
		gone = append(gone, f.next.releaseHolder(id)...)
	}
	return gone
}

func (f *fleet) status(now time.Time) ([]coordapi.NodeInfo, []coordapi.ShardLease) {
	byNode := map[string][]int{}
	leases := []coordapi.ShardLease{}
	for _, l := range f.leases.Leases() {
		if !l.Live(now) {
			continue
		}
		byNode[l.Holder] = append(byNode[l.Holder], l.Shard)
		leases = append(leases, coordapi.ShardLease{Shard: l.Shard, Node: l.Holder, Token: l.Token, Expires: l.Expires.UTC()})
	}
	nodes := []coordapi.NodeInfo{}
	for id, n := range f.nodes {
		shards := byNode[id]
		if shards == nil {
			shards = []int{}
		}
		nodes = append(nodes, coordapi.NodeInfo{ID: id, Capacity: n.capacity, Draining: n.draining || f.drained[id], LastSeen: n.lastSeen.UTC(), Shards: shards})
	}
	slices.SortFunc(nodes, func(a, b coordapi.NodeInfo) int { return strings.Compare(a.ID, b.ID) })
	return nodes, leases
}
