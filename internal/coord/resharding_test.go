package coord

import (
	"testing"
	"time"
)

// TestFleetReshard walks a reshard 2 → 4 on one node through its phases:
// the new generation is leased in hold; the old switches to dedup only
// once every new shard is ready with its guilds, the new one after the
// settle time, the old hands over, and the count switches once every old
// shard handed over. Reports that do not confirm a step hold it back.
func TestFleetReshard(t *testing.T) {
	t0 := time.Unix(1000, 0)
	f, err := newFleet(2, 9*time.Second, false, 1, 1)
	if err != nil {
		t.Fatal(err)
	}
	timing := reshardTiming{settle: 2 * time.Second, handoverTimeout: 30 * time.Second}
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	o, _ := f.beat(at(0), "a", nodeBeat{})
	cur := o.Assign
	if err := f.startReshard(at(1), 4, "manual", time.Second); err != nil {
		t.Fatal(err)
	}
	if err := f.startReshard(at(1), 8, "manual", time.Second); err == nil {
		t.Error("a second reshard started while one runs")
	}
	guilds := 10
	rep := func(held []heldShard, state, mode string, handed bool, pending int) []ShardReport {
		var out []ShardReport
		for _, h := range held {
			out = append(out, ShardReport{Shard: h.Shard, State: state, Mode: mode, HandedOver: handed, Guilds: &guilds, GuildsPending: pending})
		}
		return out
	}
	var next []heldShard
	beat := func(s float64, curMode, nextState, nextMode string, handed bool, pending int) nodeOrders {
		t.Helper()
		b := nodeBeat{genBeat: genBeat{ShardCount: 2, Shards: cur, Reports: rep(cur, "ready", curMode, handed, 0)}}
		if next != nil {
			b.Next = &genBeat{ShardCount: 4, Shards: next, Reports: rep(next, nextState, nextMode, false, pending)}
		}
		o, err := f.beat(at(s), "a", b)
		if err != nil {
			t.Fatalf("beat at %v: %v", s, err)
		}
		if o.Next != nil {
			next = append(next, o.Next.Assign...)
		}
		f.stepReshard(at(s), timing)
		return o
	}
	phase := func(want string) {
		t.Helper()
		if f.reshard.Phase != want {
			t.Fatalf("phase %s, want %s (%s)", f.reshard.Phase, want, f.reshard.Note)
		}
	}
	o = beat(2, "", "", "", false, 0)
	if o.Next == nil || len(o.Next.Assign) != 4 || o.Next.Mode != modeHold || o.Next.ShardCount != 4 || o.Mode != "" {
		t.Fatalf("orders after the start: %+v next %+v", o, o.Next)
	}
	beat(3, "", "ready", modeHold, false, 3) // guilds still arriving
	phase(PhaseStarting)
	if err := f.cancelReshard(at(3)); err != nil { // still starting: cancellable
		t.Fatal(err)
	}
	if f.next != nil || f.reshard.Phase != PhaseCancelled {
		t.Fatal("cancel left the new generation")
	}
	next = nil
	if err := f.startReshard(at(4), 4, "manual", time.Second); err != nil {
		t.Fatal(err)
	}
	beat(4, "", "", "", false, 0)
	beat(5, "", "ready", modeHold, false, 0)
	phase(PhaseDedup)
	if err := f.cancelReshard(at(5)); err == nil {
		t.Error("a reshard past starting was cancelled")
	}
	if o := beat(5.5, "", "ready", modeHold, false, 0); o.Mode != modeDedup || o.Next.Mode != modeHold {
		t.Fatalf("dedup orders: %q / %q", o.Mode, o.Next.Mode)
	}
	beat(6, modeDedup, "ready", modeHold, false, 0)
	phase(PhaseDedup) // settle: 2s from 5
	beat(7, modeDedup, "ready", modeHold, false, 0)
	phase(PhaseOverlap)
	if o := beat(7.5, modeDedup, "ready", modeHold, false, 0); o.Next.Mode != modeDedup {
		t.Fatalf("overlap: the new generation's mode is %q", o.Next.Mode)
	}
	beat(8, modeDedup, "ready", modeDedup, false, 0)
	phase(PhaseOverlap) // settle: 2s from 7
	beat(9.5, modeDedup, "ready", modeDedup, false, 0)
	phase(PhaseHandover)
	beat(10, modeHandover, "ready", modeDedup, false, 0) // not handed over yet
	beat(12, modeHandover, "ready", modeDedup, false, 0)
	phase(PhaseHandover)
	beat(12.5, modeHandover, "ready", modeDedup, true, 0)
	phase(PhaseDone)
	if f.count != 4 || f.next != nil || f.mode != "" {
		t.Fatalf("after the switch: count %d, next %v, mode %q", f.count, f.next != nil, f.mode)
	}
	// The node's next beat: the old section is stale, the new one current.
	o, err = f.beat(at(13), "a", nodeBeat{genBeat: genBeat{ShardCount: 2, Shards: cur}, Next: &genBeat{ShardCount: 4, Shards: next}})
	if err != nil || o.ShardCount != 4 || len(o.Renewed) != 4 || o.Next != nil || o.Mode != "" {
		t.Fatalf("orders after the switch: %+v, %v", o, err)
	}
}

// TestFleetReshardHandoverTimeout: an old shard that never sees its new
// shards take over (no traffic) holds the switch only until the timeout.
func TestFleetReshardHandoverTimeout(t *testing.T) {
	t0 := time.Unix(1000, 0)
	f, _ := newFleet(1, 9*time.Second, false, 1, 1)
	f.beat(t0, "a", nodeBeat{})
	f.startReshard(t0, 2, "manual", 0)
	f.reshard.Phase, f.mode, f.next.mode = PhaseHandover, modeHandover, modeDedup
	timing := reshardTiming{settle: time.Second, handoverTimeout: 5 * time.Second}
	if _, sw := f.stepReshard(t0.Add(4*time.Second), timing); sw {
		t.Fatal("switched before the timeout")
	}
	if _, sw := f.stepReshard(t0.Add(5*time.Second), timing); !sw || f.count != 2 {
		t.Fatalf("no switch at the timeout (count %d)", f.count)
	}
}
