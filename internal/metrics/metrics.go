// Package metrics exports Gatehouse to Prometheus: a collector for a
// gateway node (events by type, identifies and resumes, publish latency,
// each shard's heartbeat latency, shards by state) and one for the
// coordinator (session-start budget, identify queue, nodes, the fleet's
// shards by state, the planner's target, consumer lag). Both read their
// source at scrape time; the event path only bumps atomic counters.
package metrics

import (
	"context"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gatehouse-dev/gatehouse/internal/broker"
	"github.com/gatehouse-dev/gatehouse/internal/coord"
	"github.com/gatehouse-dev/gatehouse/internal/gateway"
)

// Node returns a collector of node's metrics.
func Node(node *gateway.Node) prometheus.Collector {
	labels := prometheus.Labels{"node": node.ID()}
	d := func(name, help string, vars ...string) *prometheus.Desc {
		return prometheus.NewDesc("gatehouse_gateway_"+name, help, vars, labels)
	}
	return &nodeCollector{n: node,
		events:     d("events_total", "Events published to the broker, by dispatch type.", "type"),
		read:       d("events_read_total", "Dispatches read from Discord."),
		sessions:   d("sessions_total", "Sessions the node's shards started (identify) or resumed (resume).", "kind"),
		reconnects: d("reconnects_total", "Connections the node's shards lost and made again."),
		zombies:    d("zombies_total", "Connections closed because a heartbeat got no ACK."),
		silences:   d("silent_cycles_total", "Shards cycled by RESUME because an event type went silent while heartbeats were answered."),
		publish:    d("publish_latency_seconds", "Time from handing a batch to the broker to its acknowledgement."),
		latency:    d("shard_latency_seconds", "Gateway heartbeat round trip, by shard.", "shard"),
		shards:     d("shards", "The node's shards by state (offline: lost its connection and failed to get it back).", "state"),
	}
}

type nodeCollector struct {
	n                                                                               *gateway.Node
	events, read, sessions, reconnects, zombies, silences, publish, latency, shards *prometheus.Desc
}

func (c *nodeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.events, c.read, c.sessions, c.reconnects, c.zombies, c.silences, c.publish, c.latency, c.shards} {
		ch <- d
	}
}

func (c *nodeCollector) Collect(ch chan<- prometheus.Metric) {
	m := c.n.Metrics()
	for typ, n := range m.EventsByType {
		ch <- prometheus.MustNewConstMetric(c.events, prometheus.CounterValue, float64(n), typ)
	}
	ch <- prometheus.MustNewConstMetric(c.read, prometheus.CounterValue, float64(c.n.Stats().Events))
	ch <- prometheus.MustNewConstMetric(c.sessions, prometheus.CounterValue, float64(m.Identifies), "identify")
	ch <- prometheus.MustNewConstMetric(c.sessions, prometheus.CounterValue, float64(m.Resumes), "resume")
	ch <- prometheus.MustNewConstMetric(c.reconnects, prometheus.CounterValue, float64(m.Reconnects))
	ch <- prometheus.MustNewConstMetric(c.zombies, prometheus.CounterValue, float64(m.Zombies))
	ch <- prometheus.MustNewConstMetric(c.silences, prometheus.CounterValue, float64(m.Silences))
	ch <- histogram(c.publish, m.Publish)
	for shard, h := range m.Latency {
		ch <- histogram(c.latency, h, strconv.Itoa(shard))
	}
	for state, n := range m.States {
		ch <- prometheus.MustNewConstMetric(c.shards, prometheus.GaugeValue, float64(n), state)
	}
}

// histogram turns a gateway histogram into a Prometheus one (cumulative
// buckets, seconds).
func histogram(d *prometheus.Desc, h gateway.HistogramSnapshot, labels ...string) prometheus.Metric {
	buckets := make(map[float64]uint64, len(h.Bounds))
	var cum uint64
	for i, b := range h.Bounds {
		cum += h.Counts[i]
		buckets[b.Seconds()] = cum
	}
	total := cum + h.Counts[len(h.Counts)-1]
	return prometheus.MustNewConstHistogram(d, total, h.Sum.Seconds(), buckets, labels...)
}

// Coordinator returns a collector of the coordinator's metrics; consumers,
// when set, lists the event stream's consumers with their lag (it is
// given a second per scrape).
func Coordinator(co *coord.Coordinator, consumers func(ctx context.Context) ([]broker.ConsumerLag, error)) prometheus.Collector {
	d := func(name, help string, vars ...string) *prometheus.Desc {
		return prometheus.NewDesc("gatehouse_"+name, help, vars, nil)
	}
	return &coordCollector{co: co, consumers: consumers,
		budget:     d("session_starts_remaining", "Session starts (identifies) left in Discord's daily budget."),
		queue:      d("identify_queue_depth", "Identify requests waiting in the coordinator's queue."),
		nodes:      d("nodes", "Live gateway nodes."),
		shards:     d("shards", "The fleet's shards by state, as their runners report them (unassigned: nobody runs it).", "state"),
		count:      d("shard_count", "The shard count in force."),
		target:     d("planner_target_shards", "The shard count the planner advises."),
		guilds:     d("guilds", "Guilds reported by the shards' runners."),
		pending:    d("consumer_pending", "Batches of the event stream a durable consumer has not been sent yet.", "consumer"),
		ackPending: d("consumer_ack_pending", "Batches a durable consumer was sent and has not acknowledged.", "consumer"),
	}
}

type coordCollector struct {
	co                                                                       *coord.Coordinator
	consumers                                                                func(ctx context.Context) ([]broker.ConsumerLag, error)
	budget, queue, nodes, shards, count, target, guilds, pending, ackPending *prometheus.Desc
}

func (c *coordCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.budget, c.queue, c.nodes, c.shards, c.count, c.target, c.guilds, c.pending, c.ackPending} {
		ch <- d
	}
}

func (c *coordCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.co.Status()
	waiting := 0
	for _, b := range st.Identify.Buckets {
		waiting += b.Waiting
	}
	if st.Identify.Remaining >= 0 {
		ch <- prometheus.MustNewConstMetric(c.budget, prometheus.GaugeValue, float64(st.Identify.Remaining))
	}
	ch <- prometheus.MustNewConstMetric(c.queue, prometheus.GaugeValue, float64(waiting))
	ch <- prometheus.MustNewConstMetric(c.nodes, prometheus.GaugeValue, float64(len(st.Nodes)))
	ch <- prometheus.MustNewConstMetric(c.count, prometheus.GaugeValue, float64(st.ShardCount))
	states := map[string]int{}
	guilds := 0
	for _, s := range c.co.Shards().Shards {
		states[s.State]++
		if s.Guilds != nil {
			guilds += *s.Guilds
		}
	}
	for state, n := range states {
		ch <- prometheus.MustNewConstMetric(c.shards, prometheus.GaugeValue, float64(n), state)
	}
	ch <- prometheus.MustNewConstMetric(c.guilds, prometheus.GaugeValue, float64(guilds))
	if p, err := c.co.Planner(time.Now()); err == nil {
		ch <- prometheus.MustNewConstMetric(c.target, prometheus.GaugeValue, float64(p.Target))
	}
	if c.consumers != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if ls, err := c.consumers(ctx); err == nil {
			for _, l := range ls {
				ch <- prometheus.MustNewConstMetric(c.pending, prometheus.GaugeValue, float64(l.Pending), l.Name)
				ch <- prometheus.MustNewConstMetric(c.ackPending, prometheus.GaugeValue, float64(l.AckPending), l.Name)
			}
		}
	}
}
