package main

import (
	"context"
	"net/http"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/gatehouse-dev/gatehouse/internal/broker/natsbroker"
	"github.com/gatehouse-dev/gatehouse/internal/coord"
	"github.com/gatehouse-dev/gatehouse/internal/metrics"
)

// metricsHandler serves cs, with the Go runtime's and the process's
// metrics, in Prometheus' format.
func metricsHandler(cs ...prometheus.Collector) http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	for _, c := range cs {
		reg.MustRegister(c)
	}
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg})
}

// withMetrics serves GET /metrics (with a status token or above, like the
// rest of the API: node names and consumer names are internal) in front of
// h.
func withMetrics(h, m http.Handler, co *coord.Coordinator) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/metrics" {
			h.ServeHTTP(w, r)
			return
		}
		if err := co.Authorize(r, coord.RoleStatus); err != nil {
			coord.WriteError(w, err)
			return
		}
		m.ServeHTTP(w, r)
	})
}

// metricsLag reads the event stream's consumers for the metrics.
func metricsLag(b *natsbroker.Broker) func(ctx context.Context) ([]metrics.ConsumerLag, error) {
	return func(ctx context.Context) ([]metrics.ConsumerLag, error) {
		ls, err := b.Consumers(ctx)
		if err != nil {
			return nil, err
		}
		out := make([]metrics.ConsumerLag, len(ls))
		for i, l := range ls {
			out[i] = metrics.ConsumerLag{Name: l.Name, Pending: l.Pending, AckPending: l.AckPending}
		}
		return out, nil
	}
}

// lateCollector is a collector set after the registry is built (the
// node, created once the API listens); it collects nothing until then.
type lateCollector struct {
	mu sync.Mutex
	c  prometheus.Collector
}

func (l *lateCollector) set(c prometheus.Collector) {
	l.mu.Lock()
	l.c = c
	l.mu.Unlock()
}

// Describe describes nothing: the collector is unchecked, so the node's
// metrics can arrive after registration.
func (l *lateCollector) Describe(chan<- *prometheus.Desc) {}

func (l *lateCollector) Collect(ch chan<- prometheus.Metric) {
	l.mu.Lock()
	c := l.c
	l.mu.Unlock()
	if c != nil {
		c.Collect(ch)
	}
}
