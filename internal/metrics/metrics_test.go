package metrics

import (
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/gatehouse-dev/gatehouse/internal/coord"
	"github.com/gatehouse-dev/gatehouse/internal/gateway"
)

func TestHistogramCumulative(t *testing.T) {
	d := prometheus.NewDesc("x", "x", nil, nil)
	m := histogram(d, gateway.HistogramSnapshot{
		Bounds: []time.Duration{10 * time.Millisecond, 100 * time.Millisecond},
		Counts: []uint64{3, 2, 1}, Sum: 500 * time.Millisecond,
	})
	var out dto.Metric
	if err := m.Write(&out); err != nil {
		t.Fatal(err)
	}
	h := out.GetHistogram()
	if h.GetSampleCount() != 6 || h.GetSampleSum() != 0.5 || len(h.Bucket) != 2 ||
		h.Bucket[0].GetUpperBound() != 0.01 || h.Bucket[0].GetCumulativeCount() != 3 || h.Bucket[1].GetCumulativeCount() != 5 {
		t.Errorf("histogram %v", h)
	}
}

func TestCoordinatorCollector(t *testing.T) {
	co, err := coord.New(coord.Config{Tokens: coord.Tokens{Admin: "a"}, ShardCount: 4, MaxConcurrency: 2, IdentifyMargin: -1,
		SessionStarts: 900, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(Coordinator(co, nil))
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.Metric {
			name := mf.GetName()
			for _, l := range m.Label {
				name += "/" + l.GetValue()
			}
			got[name] = m.GetGauge().GetValue()
		}
	}
	for name, want := range map[string]float64{
		"gatehouse_session_starts_remaining": 900, "gatehouse_shard_count": 4, "gatehouse_nodes": 0,
		"gatehouse_identify_queue_depth": 0, "gatehouse_shards/unassigned": 4, "gatehouse_guilds": 0,
	} {
		if v, ok := got[name]; !ok || v != want {
			t.Errorf("%s = %v (found %v), want %v", name, v, ok, want)
		}
	}
}
