package lease

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

func counter() func() uint64 {
	var n uint64
	return func() uint64 { n++; return n }
}

// TestKeyLeaseTranscript walks one holder through taking, renewing,
// losing and giving up a key, step by step.
func TestKeyLeaseTranscript(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	l, err := NewKeyLease("a", 3*time.Second, counter())
	if err != nil {
		t.Fatal(err)
	}
	var log []string
	step := func(s string) { log = append(log, s) }
	held := func(ms int) string {
		e, ok := l.Held(at(ms))
		if !ok {
			return "free"
		}
		return fmt.Sprintf("held(epoch %d)", e)
	}
	next := func(ms int) KeyOp {
		op := l.Next(at(ms))
		step(fmt.Sprintf("%5d next %s rev=%d epoch=%d", ms, op.Kind, op.Rev, op.Epoch))
		return op
	}
	done := func(ms, sent int, op KeyOp, rev uint64, out KeyOutcome) {
		l.Done(at(ms), at(sent), op, rev, out)
		step(fmt.Sprintf("%5d done %s -> %s", ms, []string{"ok", "conflict", "failed"}[out], held(ms)))
	}
	observe := func(ms int, r KeyRecord) {
		l.Observe(at(ms), r)
		step(fmt.Sprintf("%5d observe %+v -> %s", ms, r, held(ms)))
	}

	op := next(0)             // the key is not known to exist: create
	done(5, 0, op, 10, KeyOK) // held from the send time
	next(500)                 // nothing before a third of the TTL
	op = next(1000)           // renew
	done(1010, 1000, op, 11, KeyOK)
	step("      held at 1000+2249: " + held(3249) + ", at 1000+2250: " + held(3250))
	op = next(2000)
	done(2100, 2000, op, 0, KeyFailed) // unknown: keeps holding until its deadline
	next(2150)                         // waits for the retry time
	op = next(2400)
	done(2410, 2400, op, 0, KeyConflict) // maybe our own retry moved it: read
	next(2420)
	observe(2430, KeyRecord{Present: true, Rev: 12, Owner: "a", Epoch: 1}) // it was ours
	op = next(2430)
	done(2440, 2430, op, 13, KeyOK)
	observe(2500, KeyRecord{Present: true, Rev: 12, Owner: "a", Epoch: 1}) // a stale watch event
	observe(3000, KeyRecord{Rev: 14})                                      // expired (a marker) or deleted
	op = next(3000)                                                        // take it again, new epoch
	done(3005, 3000, op, 0, KeyConflict)                                   // somebody was faster
	observe(3010, KeyRecord{Present: true, Rev: 15, Owner: "b", Epoch: 7})
	next(4000) // b holds it: wait
	observe(6000, KeyRecord{Rev: 16})
	op = next(6000)
	done(6001, 6000, op, 17, KeyOK)
	l.Release()
	op = next(6100)
	done(6110, 6100, op, 0, KeyOK)
	next(7000)

	want := `    0 next create rev=0 epoch=1
    5 done ok -> held(epoch 1)
  500 next none rev=0 epoch=0
 1000 next renew rev=10 epoch=1
 1010 done ok -> held(epoch 1)
      held at 1000+2249: held(epoch 1), at 1000+2250: free
 2000 next renew rev=11 epoch=1
 2100 done failed -> held(epoch 1)
 2150 next none rev=0 epoch=0
 2400 next renew rev=11 epoch=1
 2410 done conflict -> held(epoch 1)
 2420 next none rev=0 epoch=0
 2430 observe {Present:true Rev:12 Owner:a Epoch:1} -> held(epoch 1)
 2430 next renew rev=12 epoch=1
 2440 done ok -> held(epoch 1)
 2500 observe {Present:true Rev:12 Owner:a Epoch:1} -> held(epoch 1)
 3000 observe {Present:false Rev:14 Owner: Epoch:0} -> free
 3000 next create rev=0 epoch=2
 3005 done conflict -> free
 3010 observe {Present:true Rev:15 Owner:b Epoch:7} -> free
 4000 next none rev=0 epoch=0
 6000 observe {Present:false Rev:16 Owner: Epoch:0} -> free
 6000 next create rev=0 epoch=3
 6001 done ok -> held(epoch 3)
 6100 next delete rev=17 epoch=3
 6110 done ok -> free
 7000 next none rev=0 epoch=0`
	if got := strings.Join(log, "\n"); got != want {
		t.Errorf("transcript:\n%s\n\nwant:\n%s", got, want)
	}
}

// TestKeyLeaseNeverTwoHolders simulates three contenders for one key
// against a model of the store (it deletes the key TTL after its last
// write, checks every write's revision) with random delays, lost replies,
// stale reads, pauses and clocks running up to 10% fast or slow, and
// checks at every instant that at most one of them holds the key, and
// that the key is held most of the time.
func TestKeyLeaseNeverTwoHolders(t *testing.T) {
	for seed := range uint64(40) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) { simulateKeyLease(t, seed) })
	}
}

type simStore struct {
	present   bool
	rev       uint64 // the bucket's last revision
	keyRev    uint64
	owner     string
	epoch     uint64
	lastWrite time.Duration
	ttl       time.Duration
}

func (s *simStore) expire(now time.Duration) {
	if s.present && now >= s.lastWrite+s.ttl {
		s.present = false
		s.rev++
		s.keyRev = s.rev
	}
}

func (s *simStore) record() KeyRecord {
	if !s.present {
		return KeyRecord{Rev: s.keyRev}
	}
	return KeyRecord{Present: true, Rev: s.keyRev, Owner: s.owner, Epoch: s.epoch}
}

// apply carries a write out at now and returns the outcome and revision.
func (s *simStore) apply(now time.Duration, owner string, op KeyOp) (KeyOutcome, uint64) {
	s.expire(now)
	switch op.Kind {
	case KeyCreate:
		if s.present {
			return KeyConflict, 0
		}
	case KeyRenew, KeyDelete:
		if !s.present || s.keyRev != op.Rev {
			return KeyConflict, 0
		}
	}
	s.rev++
	s.keyRev = s.rev
	if op.Kind == KeyDelete {
		s.present = false
		return KeyOK, s.rev
	}
	s.present, s.owner, s.epoch, s.lastWrite = true, owner, op.Epoch, now
	return KeyOK, s.rev
}

type simActor struct {
	name   string
	l      *KeyLease
	rate   float64       // local clock rate
	pause  time.Duration // paused until (real time)
	busy   bool
	doneAt time.Duration // real time the outcome arrives
	sentL  time.Time
	op     KeyOp
	out    KeyOutcome
	rev    uint64
	readAt time.Duration
	readOK time.Duration // a read's answer arrives
	read   KeyRecord
}

func simulateKeyLease(t *testing.T, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 42))
	const ttl = 3 * time.Second
	const tick = 5 * time.Millisecond
	const total = 120 * time.Second
	store := &simStore{ttl: ttl}
	base := time.Unix(0, 0)
	var actors []*simActor
	for i, name := range []string{"a", "b", "c"} {
		l, err := NewKeyLease(name, ttl, func() uint64 { return rng.Uint64()>>1 + 1 })
		if err != nil {
			t.Fatal(err)
		}
		actors = append(actors, &simActor{name: name, l: l, rate: 0.9 + 0.2*rng.Float64(), readAt: time.Duration(i) * 100 * time.Millisecond})
	}
	local := func(a *simActor, now time.Duration) time.Time {
		return base.Add(time.Duration(float64(now) * a.rate))
	}
	delay := func() time.Duration { return time.Duration(rng.IntN(150)) * time.Millisecond }
	heldFor := time.Duration(0)
	for now := time.Duration(0); now < total; now += tick {
		store.expire(now)
		holders := 0
		for _, a := range actors {
			if _, ok := a.l.Held(local(a, now)); ok {
				holders++
			}
		}
		if holders > 1 {
			t.Fatalf("at %v %d actors hold the key", now, holders)
		}
		if holders == 1 {
			heldFor += tick
		}
		for _, a := range actors {
			if now < a.pause {
				continue
			}
			if rng.IntN(20000) == 0 {
				a.pause = now + time.Duration(rng.IntN(6000))*time.Millisecond // a GC pause, a frozen VM
				continue
			}
			ln := local(a, now)
			if a.busy && now >= a.doneAt {
				a.busy = false
				a.l.Done(ln, a.sentL, a.op, a.rev, a.out)
			}
			if a.readOK != 0 && now >= a.readOK {
				a.readOK = 0
				a.l.Observe(ln, a.read)
			}
			if a.readOK == 0 && (now >= a.readAt || a.l.Verifying()) {
				a.read, a.readOK = store.record(), now+delay()+tick // a read, answered later
				a.readAt = now + time.Duration(100+rng.IntN(400))*time.Millisecond
			}
			if a.busy {
				continue
			}
			op := a.l.Next(ln)
			if op.Kind == KeyNone {
				continue
			}
			a.busy, a.op, a.sentL = true, op, ln
			arrive := now + delay()
			// The write lands at its arrival; apply it now against the
			// state at that time by advancing the store's view.
			out, rev := store.applyAt(arrive, a.name, op)
			a.out, a.rev = out, rev
			a.doneAt = arrive + delay()
			if rng.IntN(10) == 0 {
				a.out, a.doneAt = KeyFailed, now+500*time.Millisecond // the answer is lost: a timeout
			}
		}
	}
	if heldFor < total/2 {
		t.Errorf("the key was held %v of %v", heldFor, total)
	}
}

// applyAt applies a write that arrives at a later time: writes are rare
// and quick next to the TTL, so letting it expire first is enough.
func (s *simStore) applyAt(at time.Duration, owner string, op KeyOp) (KeyOutcome, uint64) {
	return s.apply(at, owner, op)
}
