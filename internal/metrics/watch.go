package metrics

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/gate"
)

// WatchTrail reports, at each scrape, how far each witness has seen the
// audit trail and how far behind the newest checkpoint it is.
func (m *Metrics) WatchTrail(l *audit.Log) { m.reg.MustRegister(&witnesses{l: l}) }

// WatchKeys measures, at each scrape, a wrap and an unwrap of a probe by
// the key-encryption key's provider of g (an HSM or a KMS is a network
// away).
func (m *Metrics) WatchKeys(g *gate.Gate) { m.reg.MustRegister(&provider{g: g}) }

type witnesses struct{ l *audit.Log }

var (
	descWitnessed  = prometheus.NewDesc("custodia_audit_witnessed_size", "Size of the newest checkpoint a witness accepted from this node (-1 none yet).", []string{"witness"}, nil)
	descWitnessLag = prometheus.NewDesc("custodia_audit_witness_lag_events", "Events of the newest checkpoint a witness has not accepted yet.", []string{"witness"}, nil)
	descWitnessBad = prometheus.NewDesc("custodia_audit_witness_failing", "1 when the last hand-over to a witness failed.", []string{"witness"}, nil)
)

func (w *witnesses) Describe(ch chan<- *prometheus.Desc) {
	ch <- descWitnessed
	ch <- descWitnessLag
	ch <- descWitnessBad
}

func (w *witnesses) Collect(ch chan<- prometheus.Metric) {
	for _, s := range w.l.WitnessStatus() {
		failing := 0.0
		if s.Error != "" {
			failing = 1
		}
		ch <- prometheus.MustNewConstMetric(descWitnessed, prometheus.GaugeValue, float64(s.Size), s.Name)
		ch <- prometheus.MustNewConstMetric(descWitnessLag, prometheus.GaugeValue, float64(s.Behind), s.Name)
		ch <- prometheus.MustNewConstMetric(descWitnessBad, prometheus.GaugeValue, failing, s.Name)
	}
}

type provider struct{ g *gate.Gate }

var (
	descKeyLatency = prometheus.NewDesc("custodia_key_provider_seconds", "Time the key-encryption key's provider took to wrap and unwrap a probe at this scrape.", nil, nil)
	descKeyUp      = prometheus.NewDesc("custodia_key_provider_up", "1 when the key-encryption key's provider wrapped and unwrapped the probe.", nil, nil)
)

func (p *provider) Describe(ch chan<- *prometheus.Desc) {
	ch <- descKeyLatency
	ch <- descKeyUp
}

func (p *provider) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	took, err := p.g.ProbeKeys(ctx)
	up := 1.0
	if err != nil {
		up = 0
	}
	ch <- prometheus.MustNewConstMetric(descKeyLatency, prometheus.GaugeValue, took.Seconds())
	ch <- prometheus.MustNewConstMetric(descKeyUp, prometheus.GaugeValue, up)
}
