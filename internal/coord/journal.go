package coord

import (
	"slices"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/coord/coordapi"
	"github.com/gatehouse-dev/gatehouse/internal/lease"
)

// The fleet's journal: with a lease authority (a replicated coordinator)
// every grant and release the fleet makes is a write the shell carries
// out, by compare-and-set, before the orders that follow from it go out.
// A grant gets its final token from the write; a grant the authority
// refused is taken back.

// leaseWrite is a change of a lease for the lease authority: a grant
// (node set, token the table's provisional one) or a release (node "").
type leaseWrite struct {
	count, shard int
	node         string
	token        uint64
	prev         string // a release's holder
}

// acquire grants (or renews) shard to id in the table and journals a new
// grant.
func (f *fleet) acquire(now time.Time, shard int, id string) (lease.Lease, error) {
	prev, had := f.leases.Get(shard)
	l, err := f.leases.Acquire(now, shard, id)
	if err == nil && f.journal && !(had && prev.Holder == id && prev.Token == l.Token) {
		f.writes = append(f.writes, leaseWrite{count: f.count, shard: shard, node: id, token: l.Token})
	}
	return l, err
}

// release ends id's lease on shard in the table and journals it.
func (f *fleet) release(shard int, id string, token uint64) error {
	err := f.leases.Release(shard, id, token)
	if err == nil && f.journal {
		f.writes = append(f.writes, leaseWrite{count: f.count, shard: shard, token: token, prev: id})
	}
	return err
}

// releaseHolder ends every lease of id, journalled.
func (f *fleet) releaseHolder(id string) []lease.Lease {
	gone := f.leases.ReleaseHolder(id)
	if f.journal {
		for _, l := range gone {
			f.writes = append(f.writes, leaseWrite{count: f.count, shard: l.Shard, token: l.Token, prev: id})
		}
	}
	return gone
}

// takeWrites returns and forgets the writes journalled by both
// generations.
func (f *fleet) takeWrites() []leaseWrite {
	w := f.writes
	f.writes = nil
	if f.next != nil {
		w = append(w, f.next.writes...)
		f.next.writes = nil
	}
	return w
}

// writeResult is how the lease authority took a write: ok, and for a
// grant the token it assigned.
type writeResult struct {
	leaseWrite
	ok    bool
	token uint64 // a grant's final token
}

// settle applies the authority's results to the tables and to orders o,
// which the beat that journalled the writes produced: granted shards get
// their final tokens, refused grants are taken back (an assignment is
// withdrawn, a shard the node runs but may not keep is revoked). o may be
// nil (writes not made by a beat).
func (f *fleet) settle(results []writeResult, o *coordapi.NodeOrders) {
	for _, r := range results {
		if r.node == "" {
			continue // a release: nothing to take back
		}
		g := f
		if f.next != nil && r.count == f.next.count && r.count != f.count {
			g = f.next
		} else if r.count != f.count {
			continue // a generation that is gone
		}
		var gen *coordapi.GenOrders
		if o != nil {
			gen = &o.GenOrders
			if o.Next != nil && o.Next.ShardCount == r.count && r.count != o.ShardCount {
				gen = o.Next
			}
		}
		old := r.leaseWrite.token
		if r.ok {
			if _, err := g.leases.Reissue(r.shard, r.node, old, r.token); err == nil && gen != nil {
				retoken(gen.Assign, r.shard, old, r.token)
				retoken(gen.Renewed, r.shard, old, r.token)
			}
			continue
		}
		_ = g.leases.Release(r.shard, r.node, old)
		if gen == nil {
			continue
		}
		n := len(gen.Renewed)
		gen.Assign = slices.DeleteFunc(gen.Assign, func(h coordapi.HeldShard) bool { return h.Shard == r.shard })
		gen.Renewed = slices.DeleteFunc(gen.Renewed, func(h coordapi.HeldShard) bool { return h.Shard == r.shard })
		if len(gen.Renewed) < n && !slices.Contains(gen.Revoke, r.shard) {
			// An adoption refused: the node runs a shard the authority
			// says is someone else's.
			gen.Revoke = append(gen.Revoke, r.shard)
			slices.Sort(gen.Revoke)
		}
	}
}

// retoken replaces a grant's provisional token in hs.
func retoken(hs []coordapi.HeldShard, shard int, old, tok uint64) {
	for i := range hs {
		if hs[i].Shard == shard && hs[i].Token == old {
			hs[i].Token = tok
		}
	}
}
