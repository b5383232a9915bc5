package coord

import (
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/coord/coordapi"
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
	o, _ := f.beat(at(0), "a", coordapi.NodeBeat{})
	cur := o.Assign
	if err := f.startReshard(at(1), 4, "manual", time.Second); err != nil {
		t.Fatal(err)
	}
	if err := f.startReshard(at(1), 8, "manual", time.Second); err == nil {
		t.Error("a second reshard started while one runs")
	}
	guilds := 10
	rep := func(held []coordapi.HeldShard, state, mode string, handed bool, pending int) []coordapi.ShardReport {
		var out []coordapi.ShardReport
		for _, h := range held {
			out = append(out, coordapi.ShardReport{Shard: h.Shard, State: state, Mode: mode, HandedOver: handed, Guilds: &guilds, GuildsPending: pending})
		}
		return out
	}
	var next []coordapi.HeldShard
	beat := func(s float64, curMode, nextState, nextMode string, handed bool, pending int) coordapi.NodeOrders {
		t.Helper()
		b := coordapi.NodeBeat{GenBeat: coordapi.GenBeat{ShardCount: 2, Shards: cur, Reports: rep(cur, "ready", curMode, handed, 0)}}
		if next != nil {
			b.Next = &coordapi.GenBeat{ShardCount: 4, Shards: next, Reports: rep(next, nextState, nextMode, false, pending)}
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
	if o.Next == nil || len(o.Next.Assign) != 4 || o.Next.Mode != coordapi.ModeHold || o.Next.ShardCount != 4 || o.Mode != "" {
		t.Fatalf("orders after the start: %+v next %+v", o, o.Next)
	}
	beat(3, "", "ready", coordapi.ModeHold, false, 3) // guilds still arriving
	phase(coordapi.PhaseStarting)
	if err := f.cancelReshard(at(3)); err != nil { // still starting: cancellable
		t.Fatal(err)
	}
	if f.next != nil || f.reshard.Phase != coordapi.PhaseCancelled {
		t.Fatal("cancel left the new generation")
	}
	next = nil
	if err := f.startReshard(at(4), 4, "manual", time.Second); err != nil {
		t.Fatal(err)
	}
	beat(4, "", "", "", false, 0)
	beat(5, "", "ready", coordapi.ModeHold, false, 0)
	phase(coordapi.PhaseDedup)
	if err := f.cancelReshard(at(5)); err == nil {
		t.Error("a reshard past starting was cancelled")
	}
	if o := beat(5.5, "", "ready", coordapi.ModeHold, false, 0); o.Mode != coordapi.ModeDedup || o.Next.Mode != coordapi.ModeHold {
		t.Fatalf("dedup orders: %q / %q", o.Mode, o.Next.Mode)
	}
	beat(6, coordapi.ModeDedup, "ready", coordapi.ModeHold, false, 0)
	phase(coordapi.PhaseDedup) // settle: 2s from 5
	beat(7, coordapi.ModeDedup, "ready", coordapi.ModeHold, false, 0)
	phase(coordapi.PhaseOverlap)
	if o := beat(7.5, coordapi.ModeDedup, "ready", coordapi.ModeHold, false, 0); o.Next.Mode != coordapi.ModeDedup {
		t.Fatalf("overlap: the new generation's mode is %q", o.Next.Mode)
	}
	beat(8, coordapi.ModeDedup, "ready", coordapi.ModeDedup, false, 0)
	phase(coordapi.PhaseOverlap) // settle: 2s from 7
	beat(9.5, coordapi.ModeDedup, "ready", coordapi.ModeDedup, false, 0)
	phase(coordapi.PhaseHandover)
	beat(10, coordapi.ModeHandover, "ready", coordapi.ModeDedup, false, 0) // not handed over yet
	beat(12, coordapi.ModeHandover, "ready", coordapi.ModeDedup, false, 0)
	phase(coordapi.PhaseHandover)
	beat(12.5, coordapi.ModeHandover, "ready", coordapi.ModeDedup, true, 0)
	phase(coordapi.PhaseDone)
	if f.count != 4 || f.next != nil || f.mode != "" {
		t.Fatalf("after the switch: count %d, next %v, mode %q", f.count, f.next != nil, f.mode)
	}
	// The node's next beat: the old section is stale, the new one current.
	o, err = f.beat(at(13), "a", coordapi.NodeBeat{GenBeat: coordapi.GenBeat{ShardCount: 2, Shards: cur}, Next: &coordapi.GenBeat{ShardCount: 4, Shards: next}})
	if err != nil || o.ShardCount != 4 || len(o.Renewed) != 4 || o.Next != nil || o.Mode != "" {
		t.Fatalf("orders after the switch: %+v, %v", o, err)
	}
}

// TestFleetReshardHandoverTimeout: an old shard that never sees its new
// shards take over (no traffic) holds the switch only until the timeout.
func TestFleetReshardHandoverTimeout(t *testing.T) {
	t0 := time.Unix(1000, 0)
	f, _ := newFleet(1, 9*time.Second, false, 1, 1)
	f.beat(t0, "a", coordapi.NodeBeat{})
	f.startReshard(t0, 2, "manual", 0)
	f.reshard.Phase, f.mode, f.next.mode = coordapi.PhaseHandover, coordapi.ModeHandover, coordapi.ModeDedup
	timing := reshardTiming{settle: time.Second, handoverTimeout: 5 * time.Second}
	if _, sw := f.stepReshard(t0.Add(4*time.Second), timing); sw {
		t.Fatal("switched before the timeout")
	}
	if _, sw := f.stepReshard(t0.Add(5*time.Second), timing); !sw || f.count != 2 {
		t.Fatalf("no switch at the timeout (count %d)", f.count)
	}
}
