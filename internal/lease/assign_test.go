package lease

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// owners builds AssignInput.Owners from runs: owners(0, "a", 4, "b", 2)
// gives shards 0-3 to a and 4-5 to b; "" leaves a run unowned.
func owners(runs ...any) map[int]string {
	m := map[int]string{}
	s := 0
	for i := 0; i < len(runs); i += 2 {
		id, n := runs[i].(string), runs[i+1].(int)
		for range n {
			if id != "" {
				m[s] = id
			}
			s++
		}
	}
	return m
}

// apply returns the owners after plan.
func apply(in AssignInput, plan Plan) map[int]string {
	m := map[int]string{}
	for s, id := range in.Owners {
		m[s] = id
	}
	for _, mv := range plan.Moves {
		m[mv.Shard] = mv.To
	}
	return m
}

// counts returns how many shards each node of in holds in owners.
func counts(in AssignInput, owners map[int]string) map[string]int {
	c := map[string]int{}
	for _, n := range in.Nodes {
		c[n.ID] = 0
	}
	for _, id := range owners {
		if _, ok := c[id]; ok {
			c[id]++
		}
	}
	return c
}

func nodes(ids ...string) []Node {
	var ns []Node
	for _, id := range ids {
		ns = append(ns, Node{ID: id})
	}
	return ns
}

func TestAssign(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   AssignInput
		want Plan
	}{
		{
			name: "fresh start spreads evenly in blocks",
			in:   AssignInput{Total: 10, Nodes: nodes("c", "a", "b")},
			want: Plan{Moves: []Move{
				{0, "", "a"}, {1, "", "a"}, {2, "", "a"}, {3, "", "a"},
				{4, "", "b"}, {5, "", "b"}, {6, "", "b"},
				{7, "", "c"}, {8, "", "c"}, {9, "", "c"},
			}},
		},
		{
			name: "a balanced assignment is left alone",
			in:   AssignInput{Total: 10, Nodes: nodes("a", "b", "c"), Owners: owners("b", 3, "a", 4, "c", 3)},
			want: Plan{},
		},
		{
			name: "the node with more keeps the extra shard",
			in:   AssignInput{Total: 7, Nodes: nodes("a", "b"), Owners: owners("a", 3, "b", 4)},
			want: Plan{},
		},
		{
			name: "a node that joins takes only its share",
			in:   AssignInput{Total: 12, Nodes: nodes("a", "b", "c", "d"), Owners: owners("a", 4, "b", 4, "c", 4)},
			want: Plan{Moves: []Move{{3, "a", "d"}, {7, "b", "d"}, {11, "c", "d"}}},
		},
		{
			name: "a draining node's shards move",
			in: AssignInput{Total: 9, Owners: owners("a", 3, "b", 3, "c", 3),
				Nodes: []Node{{ID: "a"}, {ID: "b", Draining: true}, {ID: "c"}}},
			want: Plan{Moves: []Move{{3, "b", "a"}, {4, "b", "a"}, {5, "b", "c"}}},
		},
		{
			name: "shards of a gone node and unowned shards are placed",
			in:   AssignInput{Total: 6, Nodes: nodes("a", "b"), Owners: owners("a", 2, "ghost", 2, "", 1, "b", 1)},
			want: Plan{Moves: []Move{{2, "ghost", "a"}, {3, "ghost", "b"}, {4, "", "b"}}},
		},
		{
			name: "capacity caps a node; the rest balance",
			in:   AssignInput{Total: 10, Nodes: []Node{{ID: "a", Capacity: 2}, {ID: "b"}, {ID: "c"}}},
			want: Plan{Moves: []Move{
				{0, "", "a"}, {1, "", "a"},
				{2, "", "b"}, {3, "", "b"}, {4, "", "b"}, {5, "", "b"},
				{6, "", "c"}, {7, "", "c"}, {8, "", "c"}, {9, "", "c"},
			}},
		},
		{
			name: "a node over a lowered capacity sheds to one with room",
			in:   AssignInput{Total: 6, Nodes: []Node{{ID: "a", Capacity: 2}, {ID: "b"}}, Owners: owners("a", 4, "b", 2)},
			want: Plan{Moves: []Move{{2, "a", "b"}, {3, "a", "b"}}},
		},
		{
			name: "unplaceable shards: unowned stay unowned, draining ones stay put",
			in: AssignInput{Total: 8, Owners: owners("a", 2, "d", 3, "", 3),
				Nodes: []Node{{ID: "a", Capacity: 3}, {ID: "b", Capacity: 2}, {ID: "d", Draining: true}}},
			// Unowned shards go first: they have no session at all.
			want: Plan{
				Moves:    []Move{{5, "", "a"}, {6, "", "b"}, {7, "", "b"}},
				Unplaced: []int{2, 3, 4},
			},
		},
		{
			name: "no node at all",
			in:   AssignInput{Total: 3, Owners: owners("", 1, "x", 1), Nodes: []Node{{ID: "x", Draining: true}}},
			want: Plan{Unplaced: []int{0, 1, 2}},
		},
		{
			name: "over capacity with no room elsewhere keeps its shards",
			in:   AssignInput{Total: 4, Nodes: []Node{{ID: "a", Capacity: 1}, {ID: "b", Capacity: 2}}, Owners: owners("a", 2, "b", 2)},
			want: Plan{},
		},
		{
			name: "no shards",
			in:   AssignInput{Nodes: nodes("a")},
			want: Plan{},
		},
		{
			name: "buckets: fresh start keeps each bucket on one node",
			in:   AssignInput{Total: 8, Nodes: nodes("a", "b"), BucketAligned: true, MaxConcurrency: 4},
			want: Plan{Moves: []Move{
				{0, "", "a"}, {1, "", "a"}, {2, "", "b"}, {3, "", "b"},
				{4, "", "a"}, {5, "", "a"}, {6, "", "b"}, {7, "", "b"},
			}},
		},
		{
			name: "buckets: a node that joins takes whole buckets",
			in: AssignInput{Total: 8, Nodes: nodes("a", "b", "c"), BucketAligned: true, MaxConcurrency: 4,
				Owners: map[int]string{0: "a", 4: "a", 1: "a", 5: "a", 2: "b", 6: "b", 3: "b", 7: "b"}},
			want: Plan{Moves: []Move{{3, "b", "c"}, {7, "b", "c"}}},
		},
		{
			name: "buckets: a split bucket joins the node holding most of it",
			in: AssignInput{Total: 6, Nodes: nodes("a", "b"), BucketAligned: true, MaxConcurrency: 2,
				Owners: map[int]string{0: "a", 2: "a", 4: "b", 1: "b", 3: "b", 5: "b"}},
			want: Plan{Moves: []Move{{4, "b", "a"}}},
		},
		{
			name: "buckets: a bucket too big for any node is spread over the room there is",
			in: AssignInput{Total: 6, BucketAligned: true, MaxConcurrency: 2,
				Nodes: []Node{{ID: "a", Capacity: 4}, {ID: "b", Capacity: 2}}},
			want: Plan{Moves: []Move{
				{0, "", "a"}, {1, "", "b"}, {2, "", "a"}, {3, "", "b"}, {4, "", "a"}, {5, "", "a"},
			}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Assign(tc.in)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("Assign (-want +got):\n%s", diff)
			}
		})
	}
}

func TestAssignInvalid(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   AssignInput
	}{
		{"negative total", AssignInput{Total: -1}},
		{"huge total", AssignInput{Total: 1 << 40}},
		{"empty node ID", AssignInput{Total: 1, Nodes: []Node{{ID: ""}}}},
		{"repeated node ID", AssignInput{Total: 1, Nodes: nodes("a", "b", "a")}},
		{"negative capacity", AssignInput{Total: 1, Nodes: []Node{{ID: "a", Capacity: -1}}}},
		{"negative shard", AssignInput{Total: 2, Nodes: nodes("a"), Owners: map[int]string{-1: "a"}}},
		{"shard beyond total", AssignInput{Total: 2, Nodes: nodes("a"), Owners: map[int]string{2: "a"}}},
		{"buckets without max concurrency", AssignInput{Total: 2, Nodes: nodes("a"), BucketAligned: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Assign(tc.in); !errors.Is(err, ErrInvalid) {
				t.Errorf("Assign = %v, want ErrInvalid", err)
			}
		})
	}
}

// TestAssignDeterministic runs Assign on the same input built in different
// orders and expects the same plan every time.
func TestAssignDeterministic(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for range 50 {
		in := randomInput(r, 60, 7, r.IntN(2) == 0)
		first, err := Assign(in)
		if err != nil {
			t.Fatal(err)
		}
		for range 5 {
			again := in
			again.Nodes = slices.Clone(in.Nodes)
			r.Shuffle(len(again.Nodes), func(i, j int) { again.Nodes[i], again.Nodes[j] = again.Nodes[j], again.Nodes[i] })
			again.Owners = map[int]string{}
			keys := make([]int, 0, len(in.Owners))
			for s := range in.Owners {
				keys = append(keys, s)
			}
			r.Shuffle(len(keys), func(i, j int) { keys[i], keys[j] = keys[j], keys[i] })
			for _, s := range keys {
				again.Owners[s] = in.Owners[s]
			}
			got, err := Assign(again)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(first, got); diff != "" {
				t.Fatalf("Assign(%+v) changed between runs (-first +again):\n%s", in, diff)
			}
		}
	}
}

// randomInput returns a random valid input with up to maxTotal shards and
// maxNodes nodes, some draining, some with capacity, and owners among the
// nodes, a gone node and nobody.
func randomInput(r *rand.Rand, maxTotal, maxNodes int, buckets bool) AssignInput {
	in := AssignInput{Total: r.IntN(maxTotal + 1), Owners: map[int]string{}}
	for i := range 1 + r.IntN(maxNodes) {
		n := Node{ID: fmt.Sprintf("n%d", i), Draining: r.IntN(5) == 0}
		if r.IntN(3) == 0 {
			n.Capacity = 1 + r.IntN(max(1, in.Total))
		}
		in.Nodes = append(in.Nodes, n)
	}
	for s := range in.Total {
		switch k := r.IntN(len(in.Nodes) + 2); {
		case k < len(in.Nodes):
			in.Owners[s] = in.Nodes[k].ID
		case k == len(in.Nodes):
			in.Owners[s] = "gone"
		}
	}
	if buckets {
		in.BucketAligned, in.MaxConcurrency = true, 1+r.IntN(8)
	}
	return in
}

// checkPlan checks what every plan must satisfy and returns the owners
// after it.
func checkPlan(t *testing.T, in AssignInput, plan Plan) map[string]int {
	t.Helper()
	node := map[string]Node{}
	for _, n := range in.Nodes {
		node[n.ID] = n
	}
	usable := func(id string) bool { n, ok := node[id]; return ok && !n.Draining }
	for i, mv := range plan.Moves {
		if i > 0 && plan.Moves[i-1].Shard >= mv.Shard {
			t.Fatalf("moves out of shard order: %v", plan.Moves)
		}
		if !usable(mv.To) || mv.From != in.Owners[mv.Shard] || mv.From == mv.To {
			t.Fatalf("bad move %+v (owner %q)", mv, in.Owners[mv.Shard])
		}
	}
	if !slices.IsSorted(plan.Unplaced) {
		t.Fatalf("unplaced out of order: %v", plan.Unplaced)
	}
	after := apply(in, plan)
	var needy []int
	for s := range in.Total {
		if !usable(after[s]) {
			needy = append(needy, s)
		}
	}
	if diff := cmp.Diff(needy, plan.Unplaced); diff != "" {
		t.Fatalf("Unplaced is not the shards left without a usable node (-want +got):\n%s", diff)
	}
	c := counts(in, after)
	before := counts(in, in.Owners)
	room := false
	for id, n := range node {
		if n.Draining {
			continue
		}
		if n.Capacity > 0 && c[id] > max(n.Capacity, before[id]) {
			t.Fatalf("%+v\nplan %+v\nnode %s holds %d, capacity %d, held %d before", in, plan, id, c[id], n.Capacity, before[id])
		}
		if n.Capacity == 0 || c[id] < n.Capacity {
			room = true
		}
	}
	if len(plan.Unplaced) > 0 && room {
		t.Fatalf("shards %v unplaced while a node has room: %v", plan.Unplaced, c)
	}
	return c
}

// TestAssignProperties checks random inputs for the rules every plan
// keeps, and that a plan, once carried out, is stable.
func TestAssignProperties(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for range 2000 {
		in := randomInput(r, 40, 6, r.IntN(3) == 0)
		plan, err := Assign(in)
		if err != nil {
			t.Fatal(err)
		}
		c := checkPlan(t, in, plan)
		if !in.BucketAligned {
			for _, a := range in.Nodes {
				for _, b := range in.Nodes {
					// Two shards apart only when the smaller one is full.
					if !a.Draining && !b.Draining && c[a.ID] >= c[b.ID]+2 && (b.Capacity == 0 || c[b.ID] < b.Capacity) {
						t.Fatalf("%+v: unbalanced: %s holds %d, %s %d", in, a.ID, c[a.ID], b.ID, c[b.ID])
					}
				}
			}
		}
		// Carrying out the plan and planning again moves nothing. With
		// buckets and capacities, packing whole buckets is a bin-packing
		// problem that Assign solves only approximately, so a second plan
		// may still improve on the first.
		next := in
		next.Owners = apply(in, plan)
		again, err := Assign(next)
		if err != nil {
			t.Fatal(err)
		}
		if len(again.Moves) > 0 && (!in.BucketAligned || !capped(in)) {
			t.Fatalf("%+v\nplan %+v\nthen moves again: %+v", in, plan, again.Moves)
		}
	}
}

// capped reports whether a node of in has a capacity.
func capped(in AssignInput) bool {
	return slices.ContainsFunc(in.Nodes, func(n Node) bool { return n.Capacity > 0 })
}

// bucketsWhole reports whether every bucket's shards are all on one node.
func bucketsWhole(in AssignInput) bool {
	m := min(in.MaxConcurrency, in.Total)
	for b := range m {
		for s := b + m; s < in.Total; s += m {
			if in.Owners[s] != in.Owners[b] {
				return false
			}
		}
	}
	return true
}

// TestAssignBruteForce compares the number of moves Assign makes with the
// fewest any valid final assignment needs, found by trying them all, on
// small inputs. Valid means: as many shards placed as capacity allows, no
// node over its capacity, and two nodes two or more shards apart only when
// the one with fewer is full.
func TestAssignBruteForce(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	checked := 0
	for range 400 {
		in := randomInput(r, 6, 4, false)
		usable := []Node{}
		for _, n := range in.Nodes {
			if !n.Draining {
				usable = append(usable, n)
			}
		}
		limit := func(n Node) int {
			if n.Capacity == 0 {
				return in.Total
			}
			return n.Capacity
		}
		// Keep the reference simple: no node starts over its capacity.
		if c := counts(in, in.Owners); slices.ContainsFunc(usable, func(n Node) bool { return c[n.ID] > limit(n) }) {
			continue
		}
		room := 0
		for _, n := range usable {
			room += limit(n)
		}
		wantPlaced := min(in.Total, room)

		best := -1
		choice := make([]int, in.Total) // index into usable, or len(usable): not placed
		var try func(s int)
		try = func(s int) {
			if s == in.Total {
				c := make([]int, len(usable))
				placed, moves := 0, 0
				for sh, k := range choice {
					if k == len(usable) {
						continue
					}
					c[k]++
					placed++
					if in.Owners[sh] != usable[k].ID {
						moves++
					}
				}
				if placed != wantPlaced {
					return
				}
				for i, a := range usable {
					if c[i] > limit(a) {
						return
					}
					for j, b := range usable {
						if c[i] >= c[j]+2 && c[j] < limit(b) {
							return
						}
					}
				}
				if best < 0 || moves < best {
					best = moves
				}
				return
			}
			for k := range len(usable) + 1 {
				if k == len(usable) && slices.ContainsFunc(usable, func(n Node) bool { return n.ID == in.Owners[s] }) {
					continue // nothing is taken away without a destination
				}
				choice[s] = k
				try(s + 1)
			}
		}
		try(0)

		plan, err := Assign(in)
		if err != nil {
			t.Fatal(err)
		}
		checkPlan(t, in, plan)
		if len(plan.Moves) != best {
			t.Fatalf("Assign(%+v) moves %d shards: %+v; the fewest is %d", in, len(plan.Moves), plan.Moves, best)
		}
		checked++
	}
	if checked < 200 {
		t.Errorf("only %d inputs compared", checked)
	}
	t.Logf("%d inputs compared", checked)
}

// TestAssignBucketsBalance checks that, without capacities, every bucket
// ends on one node and nodes' bucket counts differ by at most one.
func TestAssignBucketsBalance(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	for range 500 {
		in := randomInput(r, 64, 5, true)
		for i := range in.Nodes {
			in.Nodes[i].Capacity = 0
		}
		plan, err := Assign(in)
		if err != nil {
			t.Fatal(err)
		}
		checkPlan(t, in, plan)
		after := in
		after.Owners = apply(in, plan)
		if !bucketsWhole(after) {
			if len(plan.Unplaced) == 0 {
				t.Fatalf("%+v: buckets split after %+v", in, plan)
			}
			continue
		}
		buckets := map[string]int{}
		for _, n := range in.Nodes {
			if !n.Draining {
				buckets[n.ID] = 0
			}
		}
		for b := range min(in.MaxConcurrency, in.Total) {
			if _, ok := buckets[after.Owners[b]]; ok {
				buckets[after.Owners[b]]++
			}
		}
		lo, hi := in.Total, 0
		for _, k := range buckets {
			lo, hi = min(lo, k), max(hi, k)
		}
		if len(buckets) > 0 && hi-lo > 1 {
			t.Fatalf("%+v: bucket counts %v", in, buckets)
		}
	}
}

// BenchmarkAssign plans for a deployment in which one node of many has
// just joined.
func BenchmarkAssign(b *testing.B) {
	for _, size := range []struct{ shards, nodes, maxConcurrency int }{
		{64, 4, 0}, {1024, 16, 0}, {16384, 64, 0}, {16384, 64, 16},
	} {
		b.Run(fmt.Sprintf("shards=%d/nodes=%d/buckets=%d", size.shards, size.nodes, size.maxConcurrency), func(b *testing.B) {
			in := AssignInput{Total: size.shards, Owners: map[int]string{}}
			for i := range size.nodes {
				in.Nodes = append(in.Nodes, Node{ID: fmt.Sprintf("node-%03d", i)})
			}
			if size.maxConcurrency > 0 {
				in.BucketAligned, in.MaxConcurrency = true, size.maxConcurrency
			}
			for s := range size.shards {
				in.Owners[s] = in.Nodes[s%(size.nodes-1)].ID
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Assign(in); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
