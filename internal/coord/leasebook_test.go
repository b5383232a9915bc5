package coord

import "testing"

// TestDecideWrite is the lease invariant as a table: a grant is written
// only for a live node over a free record, its own, or one whose holder's
// liveness record is gone or has another epoch; a release only over the
// record it releases.
func TestDecideWrite(t *testing.T) {
	live := map[string]uint64{"a": 7, "b": 9}
	grant := func(node string) leaseWrite { return leaseWrite{count: 4, shard: 1, node: node} }
	release := func(prev string) leaseWrite { return leaseWrite{count: 4, shard: 1, prev: prev} }
	for _, tc := range []struct {
		name    string
		cur     leaseRecord
		known   bool
		w       leaseWrite
		next    leaseRecord
		put, ok bool
	}{
		{"grant: no record", leaseRecord{}, false, grant("a"), leaseRecord{Holder: "a", Epoch: 7}, true, true},
		{"grant: free record", leaseRecord{}, true, grant("b"), leaseRecord{Holder: "b", Epoch: 9}, true, true},
		{"grant: renew own", leaseRecord{Holder: "a", Epoch: 7}, true, grant("a"), leaseRecord{Holder: "a", Epoch: 7}, true, true},
		{"grant: own record of an earlier epoch", leaseRecord{Holder: "a", Epoch: 3}, true, grant("a"), leaseRecord{Holder: "a", Epoch: 7}, true, true},
		{"grant: to a node without liveness", leaseRecord{}, true, grant("c"), leaseRecord{}, false, false},
		{"grant: held by a live node", leaseRecord{Holder: "a", Epoch: 7}, true, grant("b"), leaseRecord{}, false, false},
		{"grant: holder's liveness gone", leaseRecord{Holder: "c", Epoch: 2}, true, grant("b"), leaseRecord{Holder: "b", Epoch: 9}, true, true},
		{"grant: holder restarted (another epoch)", leaseRecord{Holder: "a", Epoch: 6}, true, grant("b"), leaseRecord{Holder: "b", Epoch: 9}, true, true},
		{"release: the holder's", leaseRecord{Holder: "a", Epoch: 7}, true, release("a"), leaseRecord{}, true, true},
		{"release: someone else's", leaseRecord{Holder: "b", Epoch: 9}, true, release("a"), leaseRecord{}, false, true},
		{"release: no record", leaseRecord{}, false, release("a"), leaseRecord{}, false, true},
	} {
		next, put, ok := decideWrite(tc.cur, tc.known, tc.w, live)
		if next != tc.next || put != tc.put || ok != tc.ok {
			t.Errorf("%s: decideWrite = %+v, put %v, ok %v; want %+v, put %v, ok %v", tc.name, next, put, ok, tc.next, tc.put, tc.ok)
		}
	}
}
