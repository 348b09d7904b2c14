package server

import (
	"context"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/authz"
	"github.com/custodia/custodia/internal/backup"
	"github.com/custodia/custodia/internal/instance"
	"github.com/custodia/custodia/internal/metrics"
)

// The metrics (AVL-05) parse as Prometheus's text format: requests by
// route pattern (never a participant or an account: the routes' names
// only), refusals by kind, failed sign-ins, the trail's size, and the
// databases' pools, the newest backup's age; behind a token, a scrape without it, or with another,
// is refused.
func TestAVL05_MetricsParseAndNameNoOne(t *testing.T) {
	t.Parallel()
	m := metrics.New()
	dir := t.TempDir()
	var trail *audit.Log
	ts := newServerWith(t, func(d *Deps) {
		d.Metrics = m
		// One witness that takes the checkpoints, one that cannot be reached.
		trail = &audit.Log{DB: d.Instance.Clinical, Signer: d.Instance.AuditKey, Verifier: d.Instance.AuditVerifier,
			Origin: instance.AuditOrigin(d.Instance.ID), Witnesses: []audit.Witness{
				&audit.FileWitness{Path: filepath.Join(dir, "witness.log"), Verifier: d.Instance.AuditVerifier},
				&audit.FileWitness{Path: filepath.Join(dir, "missing", "witness.log"), Verifier: d.Instance.AuditVerifier},
			}}
		d.Trail = trail
	})
	c := signInOwn(t, ts, authz.SiteInvestigator)
	study := demoStudy(t, ts)
	for range 3 {
		if code, _ := send(t, c, ts.URL, "GET", probe{path: "/api/v1/orgs/demo/studies/" + study}); code != http.StatusOK {
			t.Fatalf("read the study: %d", code)
		}
	}
	send(t, c, ts.URL, "GET", probe{path: "/api/v1/orgs/other/studies"}) // refused: another organization
	send(t, ownClient(ts), ts.URL, "POST", jsonProbe("/api/v1/auth/login", map[string]string{"email": "nobody@demo.example", "password": "wrong password, long enough"}))

	// A backup recorded an hour and a half ago.
	took := time.Now().Add(-90 * time.Minute)
	if err := backup.Record(context.Background(), ts.inst.Clinical, backup.Result{Where: "/backups/" + backup.FileName(ts.inst.ID, took),
		Manifest: backup.Manifest{Created: took}, FileSize: 1, FileSHA256: "00"}); err != nil {
		t.Fatal(err)
	}

	cp, err := trail.Checkpoint(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := trail.WitnessLatest(context.Background()); err != nil {
		t.Fatal(err)
	}

	const token = "a-metrics-token-of-the-operator"
	h := m.Handler(token)
	for _, auth := range []string{"", "Bearer another-token-entirely", token} {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest("GET", "/metrics", nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusUnauthorized {
			t.Errorf("a scrape with %q: %d, want 401", auth, rec.Code)
		}
	}
	rec := httptest.NewRecorder()
	req := httptest.NewRequest("GET", "/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		t.Fatalf("a scrape with the token: %d", rec.Code)
	}
	body := rec.Body.String()
	p := expfmt.NewTextParser(model.UTF8Validation)
	families, err := p.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("the metrics do not parse: %v", err)
	}
	count := func(name string, labels map[string]string) float64 {
		t.Helper()
		f, ok := families[name]
		if !ok {
			t.Fatalf("no metric %s", name)
		}
		total := 0.0
	metric:
		for _, mt := range f.GetMetric() {
			have := map[string]string{}
			for _, l := range mt.GetLabel() {
				have[l.GetName()] = l.GetValue()
			}
			for k, v := range labels {
				if have[k] != v {
					continue metric
				}
			}
			switch {
			case mt.Counter != nil:
				total += mt.Counter.GetValue()
			case mt.Gauge != nil:
				total += mt.Gauge.GetValue()
			case mt.Histogram != nil:
				total += float64(mt.Histogram.GetSampleCount())
			}
		}
		return total
	}
	if n := count("custodia_http_requests_total", map[string]string{"route": "GET /api/v1/orgs/{org}/studies/{study}", "code": "200"}); n != 3 {
		t.Errorf("reads of the study counted %v, want 3", n)
	}
	if n := count("custodia_http_request_duration_seconds", map[string]string{"route": "GET /api/v1/orgs/{org}/studies/{study}"}); n != 3 {
		t.Errorf("latencies of the study's reads: %v, want 3", n)
	}
	if n := count("custodia_refusals_total", map[string]string{"kind": "not_found"}); n < 1 {
		t.Errorf("refusals not found: %v", n)
	}
	if n := count("custodia_signin_failures_total", nil); n < 1 {
		t.Errorf("failed sign-ins: %v", n)
	}
	if n := count("custodia_audit_tree_size", nil) + count("custodia_audit_unsequenced_events", nil); n < 1 {
		t.Errorf("the trail: %v events", n)
	}
	if _, ok := families["custodia_db_open_connections"]; !ok {
		t.Error("no pool metrics")
	}
	if age := count("custodia_backup_age_seconds", nil); age < 89*60 || age > 100*60 {
		t.Errorf("backup age %.0f s, want about 5400", age)
	}
	if n := count("custodia_audit_witness_lag_events", map[string]string{"witness": trail.Witnesses[0].Name()}); n != 0 {
		t.Errorf("the witness that took the checkpoint lags %v events", n)
	}
	if n := count("custodia_audit_witness_lag_events", map[string]string{"witness": trail.Witnesses[1].Name()}); n != float64(cp.Size) {
		t.Errorf("the unreachable witness lags %v events, want %d", n, cp.Size)
	}
	if n := count("custodia_audit_witness_failing", nil); n != 1 {
		t.Errorf("%v witnesses failing, want 1", n)
	}
	if n := count("custodia_key_provider_up", nil); n != 1 {
		t.Errorf("the key provider's probe: up %v", n)
	}
	if _, ok := families["custodia_key_provider_seconds"]; !ok {
		t.Error("no key provider latency")
	}
	if count("custodia_state_scrape_errors", nil) != 0 {
		t.Error("the databases could not be read for the scrape")
	}
	if strings.Contains(body, study) || strings.Contains(body, "demo.example") || strings.Contains(body, "127.0.0.1") {
		t.Error("the metrics name a study, an account or an address")
	}
}
