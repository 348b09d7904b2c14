package server

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/netip"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/authz"
	"github.com/custodia/custodia/internal/demo"
	"github.com/custodia/custodia/internal/netpolicy"
	"github.com/custodia/custodia/internal/orgs"
	"github.com/custodia/custodia/internal/sqldb"
)

// statementLog records the text of every statement the clinical database
// is asked to run, so a test can show what a request read.
type statementLog struct {
	mu    sync.Mutex
	stmts []string
}

func (l *statementLog) add(q string) {
	l.mu.Lock()
	l.stmts = append(l.stmts, q)
	l.mu.Unlock()
}

// mark returns a position for since.
func (l *statementLog) mark() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.stmts)
}

// since returns the statements run after mark that match re.
func (l *statementLog) since(mark int, re *regexp.Regexp) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, q := range l.stmts[mark:] {
		if re.MatchString(q) {
			out = append(out, strings.Join(strings.Fields(q), " "))
		}
	}
	return out
}

type loggingConnector struct {
	drv driver.Driver
	dsn string
	log *statementLog
}

func (c loggingConnector) Connect(context.Context) (driver.Conn, error) {
	conn, err := c.drv.Open(c.dsn)
	if err != nil {
		return nil, err
	}
	return loggingConn{conn, c.log}, nil
}

func (c loggingConnector) Driver() driver.Driver { return c.drv }

// loggingConn passes everything to the driver's connection, noting each
// statement's text on the way.
type loggingConn struct {
	driver.Conn
	log *statementLog
}

func (c loggingConn) Prepare(q string) (driver.Stmt, error) {
	return c.PrepareContext(context.Background(), q)
}

func (c loggingConn) PrepareContext(ctx context.Context, q string) (driver.Stmt, error) {
	var (
		s   driver.Stmt
		err error
	)
	if p, ok := c.Conn.(driver.ConnPrepareContext); ok {
		s, err = p.PrepareContext(ctx, q)
	} else {
		s, err = c.Conn.Prepare(q)
	}
	if err != nil {
		return nil, err
	}
	return loggingStmt{s, q, c.log}, nil
}

// loggingStmt notes its text each time it runs, not once when prepared:
// the database keeps statements prepared and runs them many times.
type loggingStmt struct {
	driver.Stmt
	q   string
	log *statementLog
}

func (s loggingStmt) ExecContext(ctx context.Context, args []driver.NamedValue) (driver.Result, error) {
	e, ok := s.Stmt.(driver.StmtExecContext)
	if !ok {
		return nil, errors.New("the driver's statement does not offer ExecContext")
	}
	s.log.add(s.q)
	return e.ExecContext(ctx, args)
}

func (s loggingStmt) QueryContext(ctx context.Context, args []driver.NamedValue) (driver.Rows, error) {
	q, ok := s.Stmt.(driver.StmtQueryContext)
	if !ok {
		return nil, errors.New("the driver's statement does not offer QueryContext")
	}
	s.log.add(s.q)
	return q.QueryContext(ctx, args)
}

func (c loggingConn) QueryContext(ctx context.Context, q string, args []driver.NamedValue) (driver.Rows, error) {
	qc, ok := c.Conn.(driver.QueryerContext)
	if !ok {
		return nil, driver.ErrSkip
	}
	c.log.add(q)
	return qc.QueryContext(ctx, q, args)
}

func (c loggingConn) ExecContext(ctx context.Context, q string, args []driver.NamedValue) (driver.Result, error) {
	ec, ok := c.Conn.(driver.ExecerContext)
	if !ok {
		return nil, driver.ErrSkip
	}
	c.log.add(q)
	return ec.ExecContext(ctx, q, args)
}

func (c loggingConn) BeginTx(ctx context.Context, opts driver.TxOptions) (driver.Tx, error) {
	b, ok := c.Conn.(driver.ConnBeginTx)
	if !ok {
		return nil, errors.New("the driver does not offer BeginTx")
	}
	return b.BeginTx(ctx, opts)
}

func (c loggingConn) ResetSession(ctx context.Context) error {
	if r, ok := c.Conn.(driver.SessionResetter); ok {
		return r.ResetSession(ctx)
	}
	return nil
}

func (c loggingConn) IsValid() bool {
	if v, ok := c.Conn.(driver.Validator); ok {
		return v.IsValid()
	}
	return true
}

// withStatementLog reopens the test server's clinical SQLite database
// through a connector that records every statement.
func withStatementLog(t *testing.T, d *Deps) *statementLog {
	t.Helper()
	db := d.Instance.Clinical
	if !strings.HasSuffix(db.Location, ".db") {
		t.Fatalf("clinical database %s is not a SQLite file", db.Location)
	}
	log := &statementLog{}
	dsn := "file:" + db.Location + "?_pragma=foreign_keys(1)&_pragma=busy_timeout(10000)&_txlock=immediate"
	// A database of its own: the statements the demo seed kept prepared
	// belong to the connections it replaces.
	d.Instance.Clinical = &sqldb.DB{DB: sql.OpenDB(loggingConnector{drv: db.Driver(), dsn: dsn, log: log}),
		Dialect: db.Dialect, Location: db.Location}
	t.Cleanup(func() { db.Close() })
	return log
}

// from sends a request that a trusted proxy forwarded for addr; addr ""
// sends it straight from the test client (127.0.0.1).
func from(t *testing.T, c *http.Client, base, addr, method string, p probe) (int, []byte) {
	t.Helper()
	var body io.Reader
	if p.body != "" {
		body = strings.NewReader(p.body)
	}
	req, err := http.NewRequest(method, base+p.path, body)
	if err != nil {
		t.Fatal(err)
	}
	if p.ctype != "" {
		req.Header.Set("Content-Type", p.ctype)
	}
	if addr != "" {
		req.Header.Set("X-Forwarded-For", addr)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

type networkFixture struct {
	ts    *testServer
	log   *statementLog
	admin *http.Client
	org   orgs.Organization
	study orgs.Study // Demo Study
	north orgs.Site
}

// setUpNetwork starts a server behind a trusted proxy at the loopback
// address, so a test can present any client address in X-Forwarded-For,
// and records every statement the clinical database runs.
func setUpNetwork(t *testing.T) networkFixture {
	t.Helper()
	var log *statementLog
	ts := newServerWith(t, func(d *Deps) {
		d.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}
		log = withStatementLog(t, d)
	})
	f := networkFixture{ts: ts, log: log, admin: signInOwn(t, ts, authz.OrgAdmin)}
	ctx := context.Background()
	var err error
	if f.org, err = orgs.OrganizationBySlug(ctx, ts.inst.Clinical, demo.Slug); err != nil {
		t.Fatal(err)
	}
	studies, err := orgs.Studies(ctx, ts.inst.Clinical, f.org.ID)
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range studies {
		if st.Name == "Demo Study" {
			f.study = st
		}
	}
	sites, err := orgs.Sites(ctx, ts.inst.Clinical, f.org.ID, f.study.ID)
	if err != nil || len(sites) == 0 {
		t.Fatalf("sites: %v", err)
	}
	f.north = sites[0]
	return f
}

func (f networkFixture) events(t *testing.T) []audit.Event {
	t.Helper()
	evs, _, err := audit.Search(context.Background(), f.ts.inst.Clinical, audit.Filter{OrgID: f.org.ID, Limit: audit.MaxPage})
	if err != nil {
		t.Fatal(err)
	}
	return evs
}

// newEvents returns the events appended since the trail held before events.
func (f networkFixture) newEvents(t *testing.T, before int) []audit.Event {
	t.Helper()
	evs := f.events(t)
	return evs[:len(evs)-before] // newest first
}

var (
	readsSites   = regexp.MustCompile(`(?i)\b(from|join)\s+sites\b`)
	readsStudies = regexp.MustCompile(`(?i)\b(from|join)\s+studies\b`)
)

func setRanges(path string, ranges ...string) probe {
	if ranges == nil {
		ranges = []string{}
	}
	return jsonProbe(path, map[string][]string{"allowed": ranges})
}

func TestACL07_RequestFromOutsideRangeIsRefusedBeforeDataIsRead(t *testing.T) {
	t.Parallel()
	f := setUpNetwork(t)
	studyPath := "/api/v1/orgs/demo/studies/" + f.study.ID
	sitesPath := studyPath + "/sites"

	// The administrator, working from 10.20.30.40, limits the study to
	// 10.0.0.0/8 and 2001:db8::/32.
	code, body := from(t, f.admin, f.ts.URL, "10.20.30.40", "PUT", setRanges(studyPath+"/network", "2001:db8::/32", "10.0.0.0/8"))
	if code != 200 || !strings.Contains(string(body), `"allowed":["10.0.0.0/8","2001:db8::/32"]`) {
		t.Fatalf("set study ranges: %d %s", code, body)
	}

	// From 127.0.0.1, outside both ranges: refused as not found, with
	// one denied event for the network, and no site read.
	before, mark := len(f.events(t)), f.log.mark()
	code, body = from(t, f.admin, f.ts.URL, "", "GET", probe{path: sitesPath})
	if code != 404 || strings.Contains(string(body), f.north.ID) {
		t.Fatalf("sites from outside the study's ranges: %d %s, want 404", code, body)
	}
	if reads := f.log.since(mark, readsSites); len(reads) != 0 {
		t.Errorf("the refused request read sites:\n%s", strings.Join(reads, "\n"))
	}
	evs := f.newEvents(t, before)
	if len(evs) != 1 {
		t.Fatalf("refused request left %d events, want 1: %+v", len(evs), evs)
	}
	if ev := evs[0]; ev.Outcome != audit.Denied || ev.Details["reason"] != netpolicy.Refusal ||
		ev.Action != "site.list" || ev.StudyID != f.study.ID || ev.RemoteAddr != "127.0.0.1" {
		t.Errorf("event = %+v, want site.list denied for network from 127.0.0.1", ev)
	}

	// One site of the study, and the study itself: refused alike.
	for _, path := range []string{sitesPath + "/" + f.north.ID, studyPath} {
		if code, body := from(t, f.admin, f.ts.URL, "", "GET", probe{path: path}); code != 404 {
			t.Errorf("GET %s from outside: %d %s, want 404", path, code, body)
		}
	}
	// The organization's list leaves the study out; the others stay.
	code, body = from(t, f.admin, f.ts.URL, "", "GET", probe{path: "/api/v1/orgs/demo/studies"})
	if code != 200 || strings.Contains(string(body), f.study.ID) || !strings.Contains(string(body), "Demo Registry") {
		t.Errorf("study list from outside: %d %s, want 200 without the restricted study", code, body)
	}

	// From inside the ranges, IPv4 and IPv6, the same request succeeds and
	// does read the sites (so the statement log sees reads when there are).
	for _, addr := range []string{"10.1.2.3", "2001:db8:77::1", "192.0.2.9, 10.9.9.9"} {
		mark := f.log.mark()
		code, body := from(t, f.admin, f.ts.URL, addr, "GET", probe{path: sitesPath})
		if code != 200 || !strings.Contains(string(body), f.north.ID) {
			t.Errorf("sites from %s: %d %s, want 200", addr, code, body)
		}
		if reads := f.log.since(mark, readsSites); len(reads) == 0 {
			t.Errorf("sites from %s: no read of sites recorded", addr)
		}
	}
	// From outside, IPv6 and IPv4, refused; a proxy hop cannot be used to
	// smuggle an inside address in from the left.
	for _, addr := range []string{"2001:db9::1", "192.0.2.9", "10.1.2.3, 192.0.2.9"} {
		if code, body := from(t, f.admin, f.ts.URL, addr, "GET", probe{path: sitesPath}); code != 404 {
			t.Errorf("sites from %s: %d %s, want 404", addr, code, body)
		}
	}

	// The organization's own ranges apply to everything of it, before
	// even the studies are read.
	code, body = from(t, f.admin, f.ts.URL, "10.20.30.40", "PUT", setRanges("/api/v1/orgs/demo/network", "10.0.0.0/8", "2001:db8::/32"))
	if code != 200 {
		t.Fatalf("set organization ranges: %d %s", code, body)
	}
	before, mark = len(f.events(t)), f.log.mark()
	if code, body := from(t, f.admin, f.ts.URL, "", "GET", probe{path: "/api/v1/orgs/demo/studies"}); code != 404 {
		t.Errorf("studies from outside the organization's ranges: %d %s, want 404", code, body)
	}
	if reads := f.log.since(mark, regexp.MustCompile(readsStudies.String()+`|`+readsSites.String())); len(reads) != 0 {
		t.Errorf("the refused request read studies or sites:\n%s", strings.Join(reads, "\n"))
	}
	evs = f.newEvents(t, before)
	if len(evs) != 1 || evs[0].Outcome != audit.Denied || evs[0].Details["reason"] != netpolicy.Refusal || evs[0].Action != "study.list" {
		t.Errorf("events = %+v, want one study.list denied for network", evs)
	}
	if code, body := from(t, f.admin, f.ts.URL, "2001:db8::5", "GET", probe{path: "/api/v1/orgs/demo/studies"}); code != 200 {
		t.Errorf("studies from 2001:db8::5: %d %s, want 200", code, body)
	}
	// Lifting both restrictions (from inside) opens the way again.
	for _, path := range []string{studyPath + "/network", "/api/v1/orgs/demo/network"} {
		if code, body := from(t, f.admin, f.ts.URL, "10.20.30.40", "PUT", setRanges(path)); code != 200 || !strings.Contains(string(body), `"allowed":[]`) {
			t.Fatalf("lift %s: %d %s", path, code, body)
		}
	}
	if code, body := from(t, f.admin, f.ts.URL, "", "GET", probe{path: sitesPath}); code != 200 {
		t.Errorf("sites after lifting the restriction: %d %s", code, body)
	}
}

func TestACL07_InvalidCIDRIsRefused(t *testing.T) {
	t.Parallel()
	f := setUpNetwork(t)
	studyNet := "/api/v1/orgs/demo/studies/" + f.study.ID + "/network"
	for _, path := range []string{"/api/v1/orgs/demo/network", studyNet} {
		for _, tc := range []struct {
			body probe
			want string
		}{
			{setRanges(path, "10.0.0.0/8", "10.0.0.0/33"), `range 2 (\"10.0.0.0/33\"): not a CIDR range`},
			{setRanges(path, "2001:db8::1/32"), "did you mean 2001:db8::/32?"},
			{setRanges(path, "intranet"), "not an address or CIDR range"},
			{jsonProbe(path, map[string]any{}), `field \"allowed\" is required`},
			{jsonProbe(path, map[string]any{"allowed": "10.0.0.0/8"}), `field \"allowed\" must be of type []string`},
			{jsonProbe(path, map[string]any{"allowed": []string{"10.0.0.0/8"}, "mode": "deny"}), "unknown field"},
			// Would shut out the very administrator making the change.
			{setRanges(path, "192.168.0.0/16"), "your address 127.0.0.1 is in none of them"},
		} {
			code, body := from(t, f.admin, f.ts.URL, "", "PUT", tc.body)
			var e struct {
				Error struct{ Code, Message string }
			}
			json.Unmarshal(body, &e)
			if code != 400 || e.Error.Code != "invalid" || !strings.Contains(string(body), tc.want) {
				t.Errorf("PUT %s %s: %d %s; want 400 mentioning %s", path, tc.body.body, code, body, tc.want)
			}
		}
	}
	p, err := netpolicy.Load(context.Background(), f.ts.inst.Clinical, f.org.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Organization()) != 0 || len(p.Study(f.study.ID)) != 0 {
		t.Errorf("refused changes stored ranges: org %v, study %v", p.Organization(), p.Study(f.study.ID))
	}
	// Nothing changed, and what reached the gate is on the record as a
	// failed security change.
	failed := 0
	for _, ev := range f.events(t) {
		if ev.Action == "network.set" {
			if ev.Outcome != audit.Failure || !ev.Security {
				t.Errorf("event = %+v, want a failed security event", ev)
			}
			failed++
		}
	}
	if failed != 8 {
		t.Errorf("%d failed network.set events, want 8 (bad ranges and lock-outs; malformed bodies never reach the gate)", failed)
	}
	// Everyone can still work from where they are.
	if code, body := from(t, f.admin, f.ts.URL, "", "GET", probe{path: "/api/v1/orgs/demo/studies/" + f.study.ID + "/sites"}); code != 200 {
		t.Errorf("sites after refused changes: %d %s", code, body)
	}
}

// TestACL07_ForwardedForIsIgnoredWithoutTrustedProxy shows that without
// --trusted-proxy a client cannot choose its address by header.
func TestACL07_ForwardedForIsIgnoredWithoutTrustedProxy(t *testing.T) {
	t.Parallel()
	ts := newServerWith(t, nil)
	ctx := context.Background()
	org, err := orgs.OrganizationBySlug(ctx, ts.inst.Clinical, demo.Slug)
	if err != nil {
		t.Fatal(err)
	}
	admin := signInOwn(t, ts, authz.OrgAdmin)
	// Setting a range that leaves out 127.0.0.1 through the API is refused
	// even with a header claiming an inside address.
	code, body := from(t, admin, ts.URL, "10.1.2.3", "PUT", setRanges("/api/v1/orgs/demo/network", "10.0.0.0/8"))
	if code != 400 || !strings.Contains(string(body), "127.0.0.1") {
		t.Errorf("lock-out by header: %d %s, want 400", code, body)
	}
	err = ts.inst.Clinical.InTx(ctx, func(tx *sql.Tx) error {
		return netpolicy.Replace(ctx, tx, org.ID, "", []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")})
	})
	if err != nil {
		t.Fatal(err)
	}
	if code, body := from(t, admin, ts.URL, "10.1.2.3", "GET", probe{path: "/api/v1/orgs/demo/studies"}); code != 404 {
		t.Errorf("spoofed X-Forwarded-For let 127.0.0.1 in: %d %s", code, body)
	}
	evs, _, err := audit.Search(ctx, ts.inst.Clinical, audit.Filter{OrgID: org.ID, Limit: 1})
	if err != nil || len(evs) != 1 || evs[0].RemoteAddr != "127.0.0.1" || evs[0].Details["reason"] != netpolicy.Refusal {
		t.Errorf("last event = %+v, %v; want a network refusal from 127.0.0.1", evs, err)
	}
}
