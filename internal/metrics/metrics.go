// Package metrics exposes what an operator watches (AVL-05) in the
// Prometheus text format, with the official client library: requests and
// their latency by route, errors, refusals by kind (rate limits among
// them), failed sign-ins, locked accounts, the audit trail's size, the
// events waiting to join it and the age of its newest checkpoint, and the
// databases' connection pools. The values are counts and times, never who
// or what: no account, participant or address is a label. It is served on
// a listener of its own, bound to loopback unless the operator says
// otherwise, and then behind a token (Handler).
package metrics

import (
	"context"
	"crypto/subtle"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/custodia/custodia/internal/gate"
)

// Metrics holds the registry of a server and what its requests count.
type Metrics struct {
	reg      *prometheus.Registry
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	refusals *prometheus.CounterVec
	signins  prometheus.Counter
}

// New makes the registry of a server; Watch adds what its databases hold.
func New() *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry()}
	m.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "custodia_http_requests_total", Help: "Requests answered, by route pattern, method and status code.",
	}, []string{"route", "method", "code"})
	m.latency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "custodia_http_request_duration_seconds", Help: "Time to answer a request, by route pattern.",
		Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
	}, []string{"route"})
	m.refusals = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "custodia_refusals_total", Help: "Requests refused, by kind (rate_limited, forbidden, not_found, unauthenticated, invalid…).",
	}, []string{"kind"})
	m.signins = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "custodia_signin_failures_total", Help: "Sign-ins refused (wrong password, unknown account, locked).",
	})
	m.reg.MustRegister(m.requests, m.latency, m.refusals, m.signins,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Watch adds, read through g at each scrape, the trail's and the
// accounts' counts and the databases' pools. Call it once.
func (m *Metrics) Watch(g *gate.Gate) { m.reg.MustRegister(&state{g: g}) }

// signInRoutes are the routes a password is tried at.
var signInRoutes = map[string]bool{"POST /api/v1/auth/login": true, "POST /login": true}

// Observe counts a request answered: its route pattern, method, status,
// time taken, and refusal kind ("" if none).
func (m *Metrics) Observe(route, method string, status int, took time.Duration, refusal string) {
	m.requests.WithLabelValues(route, method, strconv.Itoa(status)).Inc()
	m.latency.WithLabelValues(route).Observe(took.Seconds())
	if refusal != "" {
		m.refusals.WithLabelValues(refusal).Inc()
	}
	if signInRoutes[route] && (status == http.StatusUnauthorized || status == http.StatusForbidden || status == http.StatusLocked) {
		m.signins.Inc()
	}
}

// Handler serves the metrics; with a token, only to a request that bears
// it ("Authorization: Bearer <token>"), compared in constant time.
func (m *Metrics) Handler(token string) http.Handler {
	h := promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if token != "" {
			got := []byte(r.Header.Get("Authorization"))
			if subtle.ConstantTimeCompare(got, []byte("Bearer "+token)) != 1 {
				w.Header().Set("WWW-Authenticate", `Bearer realm="metrics"`)
				http.Error(w, "unauthorized", http.StatusUnauthorized)
				return
			}
		}
		if r.Method != http.MethodGet {
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// state reads, at each scrape, what the databases hold: counts only.
type state struct{ g *gate.Gate }

var (
	descLocked     = prometheus.NewDesc("custodia_locked_accounts", "Accounts locked after failed sign-ins.", nil, nil)
	descTreeSize   = prometheus.NewDesc("custodia_audit_tree_size", "Events in the audit trail's Merkle tree.", nil, nil)
	descQueued     = prometheus.NewDesc("custodia_audit_unsequenced_events", "Events committed and not yet in the tree.", nil, nil)
	descCheckpoint = prometheus.NewDesc("custodia_audit_checkpoint_age_seconds", "Age of the newest signed checkpoint of the trail.", nil, nil)
	descPoolOpen   = prometheus.NewDesc("custodia_db_open_connections", "Open connections of a database's pool.", []string{"database"}, nil)
	descPoolInUse  = prometheus.NewDesc("custodia_db_in_use_connections", "Connections in use.", []string{"database"}, nil)
	descPoolWait   = prometheus.NewDesc("custodia_db_wait_seconds_total", "Time spent waiting for a connection.", []string{"database"}, nil)
	descBackupAge  = prometheus.NewDesc("custodia_backup_age_seconds", "Age of the newest backup recorded (absent until one is).", nil, nil)
	descScrapeErr  = prometheus.NewDesc("custodia_state_scrape_errors", "1 when the databases could not be read for this scrape.", nil, nil)
)

func (s *state) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descLocked, descTreeSize, descQueued, descCheckpoint, descPoolOpen, descPoolInUse, descPoolWait, descBackupAge, descScrapeErr} {
		ch <- d
	}
}

func (s *state) Collect(ch chan<- prometheus.Metric) {
	for name, st := range s.g.PoolStats() {
		ch <- prometheus.MustNewConstMetric(descPoolOpen, prometheus.GaugeValue, float64(st.OpenConnections), name)
		ch <- prometheus.MustNewConstMetric(descPoolInUse, prometheus.GaugeValue, float64(st.InUse), name)
		ch <- prometheus.MustNewConstMetric(descPoolWait, prometheus.CounterValue, st.WaitDuration.Seconds(), name)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var locked, size, queued, checkpoint, backedUp int64
	err := s.g.Operate(ctx, "metrics.read", func(o *gate.OpTx) error {
		o.Nothing() // counts, read for the operator's monitoring
		for _, q := range []struct {
			sql string
			to  *int64
		}{
			{`SELECT count(*) FROM accounts WHERE locked_at IS NOT NULL`, &locked},
			{`SELECT coalesce(max(seq) + 1, 0) FROM audit_log`, &size},
			{`SELECT count(*) FROM audit_queue`, &queued},
			{`SELECT coalesce(max(created_at), 0) FROM audit_checkpoints`, &checkpoint},
			{`SELECT coalesce(max(created_at), 0) FROM backups WHERE removed_at IS NULL`, &backedUp},
		} {
			if err := o.QueryRowContext(ctx, q.sql).Scan(q.to); err != nil {
				return err
			}
		}
		return nil
	})
	failed := 0.0
	if err != nil {
		failed = 1
	} else {
		ch <- prometheus.MustNewConstMetric(descLocked, prometheus.GaugeValue, float64(locked))
		ch <- prometheus.MustNewConstMetric(descTreeSize, prometheus.GaugeValue, float64(size))
		ch <- prometheus.MustNewConstMetric(descQueued, prometheus.GaugeValue, float64(queued))
		if checkpoint > 0 {
			ch <- prometheus.MustNewConstMetric(descCheckpoint, prometheus.GaugeValue, time.Since(time.UnixMicro(checkpoint)).Seconds())
		}
		if backedUp > 0 {
			ch <- prometheus.MustNewConstMetric(descBackupAge, prometheus.GaugeValue, time.Since(time.UnixMicro(backedUp)).Seconds())
		}
	}
	ch <- prometheus.MustNewConstMetric(descScrapeErr, prometheus.GaugeValue, failed)
}
