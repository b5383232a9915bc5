package gateway

import (
	"sync"
	"sync/atomic"
	"time"
)

// Histogram is a fixed-bucket histogram of durations that records with
// atomic adds, for the event path; a metrics exporter reads Snapshot.
type Histogram struct {
	bounds []time.Duration // upper bounds, ascending
	counts []atomic.Uint64 // len(bounds)+1: the last is +Inf
	sum    atomic.Int64    // nanoseconds
}

// Latency buckets: gateway heartbeat round trips and publish acknowledgements.
var (
	heartbeatBuckets = []time.Duration{10 * time.Millisecond, 25 * time.Millisecond, 50 * time.Millisecond, 100 * time.Millisecond,
		250 * time.Millisecond, 500 * time.Millisecond, time.Second, 2500 * time.Millisecond, 5 * time.Second}
	publishBuckets = []time.Duration{250 * time.Microsecond, 500 * time.Microsecond, time.Millisecond, 2500 * time.Microsecond,
		5 * time.Millisecond, 10 * time.Millisecond, 25 * time.Millisecond, 50 * time.Millisecond, 100 * time.Millisecond,
		250 * time.Millisecond, time.Second}
)

func newHistogram(bounds []time.Duration) *Histogram {
	return &Histogram{bounds: bounds, counts: make([]atomic.Uint64, len(bounds)+1)}
}

// Observe records d.
func (h *Histogram) Observe(d time.Duration) {
	i := 0
	for i < len(h.bounds) && d > h.bounds[i] {
		i++
	}
	h.counts[i].Add(1)
	h.sum.Add(int64(d))
}

// HistogramSnapshot is a histogram's state: Counts[i] observations were at
// most Bounds[i] (not cumulative); the last count is above every bound.
type HistogramSnapshot struct {
	Bounds []time.Duration
	Counts []uint64
	Sum    time.Duration
}

// Snapshot reads the histogram.
func (h *Histogram) Snapshot() HistogramSnapshot {
	s := HistogramSnapshot{Bounds: h.bounds, Counts: make([]uint64, len(h.counts)), Sum: time.Duration(h.sum.Load())}
	for i := range h.counts {
		s.Counts[i] = h.counts[i].Load()
	}
	return s
}

// eventCounts counts published events by subject; Metrics folds them by
// event type. Subjects are interned, so the map stays as small as the
// set of subjects.
type eventCounts struct {
	m sync.Map // subject string → *atomic.Int64
}

func (e *eventCounts) add(subject string, n int) {
	c, ok := e.m.Load(subject)
	if !ok {
		c, _ = e.m.LoadOrStore(subject, new(atomic.Int64))
	}
	c.(*atomic.Int64).Add(int64(n))
}

// Metrics is what a node has counted, for an exporter.
type Metrics struct {
	// EventsByType counts the events published, by dispatch type.
	EventsByType map[string]int64
	// Identifies and Resumes count the sessions the node's shards started
	// and resumed, shards it no longer runs included.
	Identifies, Resumes, Reconnects, Zombies int64
	// Silences counts shards cycled because an event type went silent.
	Silences int64
	// Publish is the time from handing a batch to the broker to its
	// acknowledgement.
	Publish HistogramSnapshot
	// Latency is each shard's gateway heartbeat round trip.
	Latency map[int]HistogramSnapshot
	// States counts the node's shards by state; Offline shards count as
	// "offline".
	States map[string]int
}

// Metrics returns what the node has counted so far.
func (n *Node) Metrics() Metrics {
	m := Metrics{EventsByType: map[string]int64{}, Latency: map[int]HistogramSnapshot{}, States: map[string]int{}, Publish: n.publishHist.Snapshot()}
	n.events.m.Range(func(k, v any) bool {
		subj := k.(string)
		typ := subjectType(subj)
		m.EventsByType[typ] += v.(*atomic.Int64).Load()
		return true
	})
	n.mu.Lock()
	retired := n.retired
	n.mu.Unlock()
	m.Identifies, m.Resumes, m.Reconnects, m.Zombies = retired.Identifies, retired.Resumes, retired.Reconnects, retired.Zombies
	m.Silences = retired.Silences
	count := n.ShardCount()
	for _, r := range n.runners() {
		st := r.status()
		m.Identifies += st.Counters.Identifies
		m.Resumes += st.Counters.Resumes
		m.Reconnects += st.Counters.Reconnects
		m.Zombies += st.Counters.Zombies
		m.Silences += st.Counters.Silences
		m.States[st.Condition()]++
		if r.numShards == count { // during a reshard, the current generation's
			m.Latency[r.id] = r.latency.Snapshot()
		}
	}
	return m
}
