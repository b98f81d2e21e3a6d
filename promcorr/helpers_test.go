package promcorr

import (
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func discard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// gather returns gauge values by metric name and first label value.
func gather(t *testing.T, g prometheus.Gatherer) map[string]map[string]float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]map[string]float64{}
	for _, mf := range mfs {
		for _, mt := range mf.GetMetric() {
			if mt.GetGauge() == nil || len(mt.GetLabel()) == 0 {
				continue
			}
			if out[mf.GetName()] == nil {
				out[mf.GetName()] = map[string]float64{}
			}
			out[mf.GetName()][mt.GetLabel()[0].GetValue()] = mt.GetGauge().GetValue()
		}
	}
	return out
}

// flat returns every value as name{label values,…}; histograms as _count.
func flat(t *testing.T, g prometheus.Gatherer) map[string]float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, mt := range mf.GetMetric() {
			var vals []string
			for _, l := range mt.GetLabel() {
				vals = append(vals, l.GetValue())
			}
			name := mf.GetName()
			var v float64
			switch {
			case mt.GetCounter() != nil:
				v = mt.GetCounter().GetValue()
			case mt.GetGauge() != nil:
				v = mt.GetGauge().GetValue()
			case mt.GetHistogram() != nil:
				name += "_count"
				v = float64(mt.GetHistogram().GetSampleCount())
			default:
				continue
			}
			if len(vals) > 0 {
				name += "{" + strings.Join(vals, ",") + "}"
			}
			out[name] = v
		}
	}
	return out
}
