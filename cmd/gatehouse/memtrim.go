package main

import (
	"context"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// A gateway node's memory comes in bursts: at start-up every shard's READY
// and GUILD_CREATEs pass through at once, and after a reconnect storm the
// same again. Then most shards go quiet and pack their windows, and the
// node needs a fraction of what it used. The Go runtime collects garbage
// only when the heap grows, so a quiet node would keep the burst's pages
// for minutes. trimMemory notices a heap that has stopped collecting while
// holding much more than it needs, and returns the difference to the
// operating system.

const (
	memTrimEvery    = 5 * time.Second  // how often the heap is looked at
	memTrimMinGap   = 20 * time.Second // at least this long between two trims
	memTrimMinBytes = 4 << 20          // never trim for less than this
)

// memSample is what trimMemory reads from runtime/metrics.
type memSample struct {
	at       time.Time
	numGC    uint64 // completed GC cycles
	live     uint64 // live heap as of the last GC
	retained uint64 // heap memory held from the OS: objects, unused span space, free pages not yet released
	stacks   uint64 // goroutine stacks; a collection shrinks the ones that grew
}

// shouldTrim decides, from the previous and the current sample and the
// last trim, whether to collect and release memory now: only when no
// collection ran since the previous sample (the heap is not churning, so a
// forced collection costs little), the last trim is memTrimMinGap old, and
// the excess (heap held beyond the live heap, plus stacks grown since the
// last trim) is at least memTrimMinBytes and a quarter of the live heap.
func shouldTrim(prev, cur, last memSample) bool {
	if cur.numGC != prev.numGC || cur.at.Sub(last.at) < memTrimMinGap {
		return false
	}
	var excess uint64
	if cur.retained > cur.live {
		excess = cur.retained - cur.live
	}
	if cur.stacks > last.stacks {
		excess += cur.stacks - last.stacks
	}
	return excess >= memTrimMinBytes && excess >= cur.live/4
}

var memMetrics = []string{
	"/gc/cycles/total:gc-cycles",
	"/gc/heap/live:bytes",
	"/memory/classes/heap/objects:bytes",
	"/memory/classes/heap/unused:bytes",
	"/memory/classes/heap/free:bytes",
	"/memory/classes/heap/stacks:bytes",
}

func readMemSample(samples []metrics.Sample, now time.Time) memSample {
	metrics.Read(samples)
	u := func(i int) uint64 {
		if samples[i].Value.Kind() != metrics.KindUint64 {
			return 0
		}
		return samples[i].Value.Uint64()
	}
	return memSample{at: now, numGC: u(0), live: u(1), retained: u(2) + u(3) + u(4), stacks: u(5)}
}

// trimMemory runs until ctx ends, trimming when shouldTrim says so.
func trimMemory(ctx context.Context, every time.Duration) {
	samples := make([]metrics.Sample, len(memMetrics))
	for i, name := range memMetrics {
		samples[i].Name = name
	}
	t := time.NewTicker(every)
	defer t.Stop()
	prev := readMemSample(samples, time.Now())
	last := memSample{stacks: prev.stacks} // no trim yet
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			cur := readMemSample(samples, now)
			if shouldTrim(prev, cur, last) {
				// Two collections: the first moves pooled buffers to the
				// pools' victim caches, the second frees them.
				runtime.GC()
				debug.FreeOSMemory()
				cur = readMemSample(samples, time.Now())
				last = cur
			}
			prev = cur
		}
	}
}
