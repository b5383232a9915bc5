package main

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/gatehouse-dev/gatehouse/internal/coord"
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
