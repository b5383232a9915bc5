package coord

import (
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestBeatBatch is a transcript of a follower's beats: what it answers
// itself, what goes to the leader unbatched, and what each batch carries.
func TestBeatBatch(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	beat := func(id string, guilds int) shardmanBeat { return shardmanBeat{SessionID: id, GuildCount: &guilds} }
	ids := func(bs []takenBeat) []string {
		var out []string
		for _, b := range bs {
			out = append(out, b.SessionID)
		}
		slices.Sort(out)
		return out
	}
	q := newBeatBatch(10 * time.Second)

	type step struct {
		name string
		do   func() any
		want any
	}
	steps := []step{
		{"a session the leader never accepted goes unbatched", func() any { return q.offer(at(0), beat("a", 1)) }, false},
		{"the leader accepts it", func() any { q.accepted(at(5), "a"); return q.take() == nil }, true},
		{"its next beat is batched", func() any { return q.offer(at(1000), beat("a", 2)) }, true},
		{"another session still goes unbatched", func() any { return q.offer(at(1001), beat("b", 1)) }, false},
		{"b accepted", func() any { q.accepted(at(1002), "b"); return q.offer(at(1003), beat("b", 2)) }, true},
		{"a's later beat replaces its earlier one", func() any { return q.offer(at(1050), beat("a", 3)) }, true},
		{"the batch has the latest of each", func() any {
			got := q.take()
			var guilds []int
			for _, b := range got {
				guilds = append(guilds, *b.GuildCount)
			}
			slices.Sort(guilds)
			return []any{ids(got), guilds}
		}, []any{[]string{"a", "b"}, []int{2, 3}}},
		{"the batch is emptied", func() any { return q.take() == nil }, true},
	}
	run := func(steps []step) {
		t.Helper()
		for _, s := range steps {
			if diff := cmp.Diff(s.want, s.do()); diff != "" {
				t.Fatalf("%s (-want +got):\n%s", s.name, diff)
			}
		}
	}
	run(steps)

	var sent []takenBeat
	run([]step{
		{"beats of a and b", func() any {
			return []bool{q.offer(at(2000), beat("a", 4)), q.offer(at(2000), beat("b", 4))}
		}, []bool{true, true}},
		{"taken", func() any { sent = q.take(); return ids(sent) }, []string{"a", "b"}},
		{"the leader knows a, not b", func() any { q.answered(at(2010), sent, []string{"b"}); return q.offer(at(2100), beat("b", 5)) }, false},
		{"a is still batched", func() any { return q.offer(at(2100), beat("a", 5)) }, true},
	})

	run([]step{
		{"a failed batch is put back", func() any {
			sent = q.take()
			q.failed(at(2200), sent)
			return ids(q.take())
		}, []string{"a"}},
		{"unless a newer beat waits", func() any {
			sent = []takenBeat{{beat("a", 6), at(2300)}}
			q.offer(at(2310), beat("a", 7))
			q.failed(at(2320), sent)
			return *q.take()[0].GuildCount
		}, 7},
		{"or the beat is a second old: the leader would take it as fresh", func() any {
			q.failed(at(3300), []takenBeat{{beat("a", 8), at(2300)}})
			return q.take() == nil
		}, true},
	})

	run([]step{
		{"a second after the leader last answered, beats go unbatched", func() any {
			return q.offer(at(2010+int(beatStale/time.Millisecond)), beat("a", 9))
		}, false},
		{"an answer makes them batched again", func() any {
			q.accepted(at(3100), "a")
			return q.offer(at(3200), beat("a", 10))
		}, true},
	})

	run([]step{
		{"a session the leader has not accepted for the timeout is forgotten", func() any {
			q.take()
			q.accepted(at(14_000), "c")
			q.answered(at(14_000), nil, nil) // a at 3100: silent for 10.9 s
			return []bool{q.offer(at(14_100), beat("a", 11)), q.offer(at(14_100), beat("c", 1))}
		}, []bool{false, true}},
		{"a new leader: nothing is batched until it accepts", func() any {
			q.reset()
			return q.offer(at(14_200), beat("c", 2))
		}, false},
		{"the waiting beats are kept for the new leader", func() any { return ids(q.take()) }, []string{"c"}},
	})
}
