package gate_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"sync"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/authz"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/gate"
	"github.com/custodia/custodia/internal/keys"
	"github.com/custodia/custodia/internal/orgs"
	"github.com/custodia/custodia/internal/sqldb"
	"github.com/custodia/custodia/internal/sqldb/sqldbtest"
)

// request is one request of a batch a test forms.
type request struct {
	actor gate.Actor
	work  func(ctx context.Context, t *gate.Tx) error
	// what the request answered, and the panic it raised
	err      error
	panicked any
	// seen tells whether the request's study was visible to another
	// connection at the moment the request was answered.
	seen bool
}

// inOneBatch runs the requests concurrently through f's gate so that they
// share one batch: the first holds the lane's turn until every other one
// waits for it. It returns once all are answered.
func inOneBatch(t *testing.T, f fixture, rs []*request, name func(i int) string) {
	t.Helper()
	ctx := context.Background()
	gate.OneLane(f.g)
	started, hold := make(chan struct{}), make(chan struct{})
	var wg sync.WaitGroup
	for i, r := range rs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { r.panicked = recover() }()
			r.err = f.g.Do(ctx, r.actor, gate.OrgID(f.org.ID), "study.create", func(t *gate.Tx) error {
				if i == 0 {
					close(started)
					<-hold
				}
				return r.work(ctx, t)
			})
			r.seen = visible(ctx, f, name(i))
		}()
		if i == 0 {
			<-started // the first holds the turn
		}
	}
	waitQueued(t, f.g, len(rs)-1)
	close(hold)
	wg.Wait()
}

// waitQueued waits until n requests wait for their turn on g.
func waitQueued(t *testing.T, g *gate.Gate, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for gate.Queued(g) != n {
		if time.Now().After(deadline) {
			t.Fatalf("%d requests queued, want %d", gate.Queued(g), n)
		}
		time.Sleep(time.Millisecond)
	}
}

func visible(ctx context.Context, f fixture, name string) bool {
	studies, err := orgs.Studies(ctx, f.db, f.org.ID)
	if err != nil {
		return false
	}
	for _, s := range studies {
		if s.Name == name {
			return true
		}
	}
	return false
}

// createStudy is work that creates the study name, then ends as then says.
func createStudy(f fixture, name string, then func() error) func(ctx context.Context, t *gate.Tx) error {
	return func(ctx context.Context, t *gate.Tx) error {
		if err := t.Authorize(authz.StudyCreate, authz.Resource{OrgID: f.org.ID}); err != nil {
			return err
		}
		if _, err := orgs.CreateStudy(ctx, t, f.org.ID, orgs.KindStudy, name); err != nil {
			return err
		}
		return then()
	}
}

// Concurrent requests commit together, once, and each keeps its own
// outcome: a denied, a failed and a panicking request leave nothing of their
// work, the others all of theirs, and every request is answered only once
// what it wrote is committed.
func TestAUD01_GroupCommitKeepsEachRequestItsOwn(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		f := setup(t, d)
		name := func(i int) string { return fmt.Sprintf("Batched %d", i) }
		const denied, failed, panics = 3, 5, 6
		var rs []*request
		for i := range 10 {
			r := &request{actor: f.admin, work: createStudy(f, name(i), func() error { return nil })}
			switch i {
			case denied:
				r.actor = f.investigator
			case failed:
				r.work = createStudy(f, name(i), func() error { return errs.E(errs.Conflict, "changed meanwhile") })
			case panics:
				r.work = createStudy(f, name(i), func() error { panic("work panicked") })
			}
			rs = append(rs, r)
		}
		before := gate.Batches(f.g)
		inOneBatch(t, f, rs, name)
		if n := gate.Batches(f.g) - before; n != 1 {
			t.Errorf("%d requests took %d commits, want 1", len(rs), n)
		}
		for i, r := range rs {
			switch i {
			case denied:
				if !gate.IsDenied(r.err) {
					t.Errorf("denied request answered %v", r.err)
				}
			case failed:
				if !errs.Is(r.err, errs.Conflict) {
					t.Errorf("failed request answered %v", r.err)
				}
			case panics:
				if r.panicked != "work panicked" {
					t.Errorf("panicking request: panic %v, answer %v", r.panicked, r.err)
				}
			default:
				if r.err != nil || r.panicked != nil {
					t.Errorf("request %d: %v %v", i, r.err, r.panicked)
				}
				if !r.seen {
					t.Errorf("request %d was answered before its study was committed", i)
				}
			}
			want := i != denied && i != failed && i != panics
			if got := studyNamed(t, f, name(i)); got != want {
				t.Errorf("request %d: study stored %v, want %v", i, got, want)
			}
		}
		outcomes := map[audit.Outcome]int{}
		for _, ev := range events(t, f) {
			outcomes[ev.Outcome]++
		}
		if outcomes[audit.Success] != 7 || outcomes[audit.Denied] != 1 || outcomes[audit.Failure] != 1 || len(outcomes) != 3 {
			t.Errorf("outcomes on the trail %v, want 7 successes, 1 denial, 1 failure", outcomes)
		}
	})
}

// A batch whose commit fails answers none of its requests as done, and
// keeps none of their work or events; the next batch commits.
func TestAVL03_BatchThatCannotCommitAnswersNoRequestAsDone(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		f := setup(t, d)
		ctx := context.Background()
		// A constraint checked only at commit fails the whole batch.
		for _, s := range []string{
			`CREATE TABLE batch_parent (id TEXT PRIMARY KEY)`,
			`CREATE TABLE batch_child (id TEXT PRIMARY KEY, parent TEXT REFERENCES batch_parent (id) DEFERRABLE INITIALLY DEFERRED)`,
		} {
			if _, err := f.db.ExecContext(ctx, s); err != nil {
				t.Fatal(err)
			}
		}
		name := func(i int) string { return fmt.Sprintf("Doomed %d", i) }
		var rs []*request
		for i := range 5 {
			rs = append(rs, &request{actor: f.admin, work: createStudy(f, name(i), func() error { return nil })})
		}
		rs[2].work = func(ctx context.Context, t *gate.Tx) error {
			if err := createStudy(f, name(2), func() error { return nil })(ctx, t); err != nil {
				return err
			}
			_, err := t.ExecContext(ctx, `INSERT INTO batch_child (id, parent) VALUES ('c', 'missing')`)
			return err
		}
		before := len(events(t, f))
		inOneBatch(t, f, rs, name)
		for i, r := range rs {
			if !errs.Is(r.err, errs.Unavailable) {
				t.Errorf("request %d of a batch that did not commit answered %v", i, r.err)
			}
			if studyNamed(t, f, name(i)) {
				t.Errorf("request %d: its study is stored", i)
			}
		}
		if n := len(events(t, f)); n != before {
			t.Errorf("%d events on the trail after a batch that did not commit, want %d", n, before)
		}
		if err := f.g.Do(ctx, f.admin, gate.OrgID(f.org.ID), "study.create", func(t *gate.Tx) error {
			return createStudy(f, "After", func() error { return nil })(ctx, t)
		}); err != nil || !studyNamed(t, f, "After") {
			t.Errorf("the batch after a failed one: %v", err)
		}
	})
}

// A request whose requester is gone before its turn is not carried out.
func TestAUD01_RequestGoneBeforeItsTurnIsNotCarriedOut(t *testing.T) {
	f := setup(t, sqldb.SQLite)
	ctx := context.Background()
	started, hold := make(chan struct{}), make(chan struct{})
	first := make(chan error, 1)
	go func() {
		first <- f.g.Do(ctx, f.admin, gate.OrgID(f.org.ID), "study.create", func(t *gate.Tx) error {
			close(started)
			<-hold
			return createStudy(f, "First", func() error { return nil })(ctx, t)
		})
	}()
	<-started // the first request holds the turn
	gone, cancel := context.WithCancel(ctx)
	second := make(chan error, 1)
	ran := false
	go func() {
		second <- f.g.Do(gone, f.admin, gate.OrgID(f.org.ID), "study.create", func(t *gate.Tx) error {
			ran = true
			return createStudy(f, "Second", func() error { return nil })(ctx, t)
		})
	}()
	waitQueued(t, f.g, 1)
	cancel()
	if err := <-second; err == nil {
		t.Error("a request cancelled before its turn answered done")
	}
	close(hold)
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	if ran || studyNamed(t, f, "Second") {
		t.Error("the cancelled request's work ran")
	}
}

// heldSigner is an audit key whose first signature waits until release is
// closed, or until a timeout says it waited in vain.
type heldSigner struct {
	note.Signer
	once           sync.Once
	signing        chan struct{}
	release        chan struct{}
	releasedInTime bool
}

func (s *heldSigner) Sign(msg []byte) ([]byte, error) {
	s.once.Do(func() {
		close(s.signing)
		select {
		case <-s.release:
			s.releasedInTime = true
		case <-time.After(5 * time.Second):
		}
	})
	return s.Signer.Sign(msg)
}

// A request's event is signed after its turn, not in it: while the first
// request's signature is held, the next request of the same batch runs its
// work; both events are then written, signed, with the batch.
func TestAUD01_AnEventIsSignedOutsideItsRequestsTurn(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		f := setup(t, d)
		ctx := context.Background()
		skey, vkey, err := note.GenerateKey(rand.Reader, "custodia-audit-test")
		if err != nil {
			t.Fatal(err)
		}
		signer, err := note.NewSigner(skey)
		if err != nil {
			t.Fatal(err)
		}
		verifier, err := note.NewVerifier(vkey)
		if err != nil {
			t.Fatal(err)
		}
		key := &heldSigner{Signer: signer, signing: make(chan struct{}), release: make(chan struct{})}
		g := gate.New(gate.Config{Clinical: f.db, AuditKey: key})
		gate.OneLane(g)
		org := gate.OrgID(f.org.ID)
		worked, queued := make(chan struct{}), make(chan struct{})
		first := make(chan error, 1)
		go func() {
			first <- g.Do(ctx, f.admin, org, "study.create", func(t *gate.Tx) error {
				// The second request waits for the turn before this work
				// ends, so the batch stays open for it.
				close(worked)
				<-queued
				return createStudy(f, "Signed after its turn", func() error { return nil })(ctx, t)
			})
		}()
		<-worked
		second := make(chan error, 1)
		go func() {
			second <- g.Do(ctx, f.admin, org, "study.create", func(t *gate.Tx) error {
				<-key.signing // the first request's signature is under way
				close(key.release)
				return createStudy(f, "Worked meanwhile", func() error { return nil })(ctx, t)
			})
		}()
		waitQueued(t, g, 1)
		close(queued)
		if err := <-first; err != nil {
			t.Fatal(err)
		}
		if err := <-second; err != nil {
			t.Fatal(err)
		}
		if !key.releasedInTime {
			t.Fatal("the next request could not work while the first one's event was being signed: the signature held the turn")
		}
		var n int
		rows, err := f.db.QueryContext(ctx, `SELECT body, sig FROM audit_events WHERE action = 'study.create'`)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		for rows.Next() {
			var body, sig string
			if err := rows.Scan(&body, &sig); err != nil {
				t.Fatal(err)
			}
			if _, err := note.Open([]byte(body+"\n\n"+sig), note.VerifierList(verifier)); err != nil {
				t.Errorf("event %s: signature does not verify: %v", body, err)
			}
			n++
		}
		if n != 2 {
			t.Errorf("%d events of the two requests on the trail, want 2", n)
		}
	})
}

// The trail's sequencer in this process is told of a batch's events
// (Config.Issued) only once they are committed: an event whose batch did
// not commit (here its identity commit failed on a deferred foreign key)
// is never taken for one this process wrote.
func TestAUD02_TheGateTellsTheSequencerOnlyOfCommittedEvents(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		f := withKeys(t, setup(t, d), d, localKEK(t))
		ctx := context.Background()
		failingIdentityCommits(t, f)
		skey, _, err := note.GenerateKey(rand.Reader, "custodia-audit-test")
		if err != nil {
			t.Fatal(err)
		}
		signer, err := note.NewSigner(skey)
		if err != nil {
			t.Fatal(err)
		}
		kek := localKEK(t)
		issued := &audit.Issued{}
		g := gate.New(gate.Config{
			Clinical: f.db, Keys: &keys.Keyring{DB: f.db, KEK: kek},
			Identity: f.identity, IdentityKeys: &keys.Keyring{DB: f.identity, KEK: kek},
			AuditKey: signer, Issued: issued,
		})
		org := gate.OrgID(f.org.ID)
		if err := g.Do(ctx, f.admin, org, "study.create",
			identityWork(ctx, f, "Committed", `INSERT INTO commit_check (participant_id) VALUES (NULL)`)); err != nil {
			t.Fatal(err)
		}
		if n := issued.Len(); n != 1 {
			t.Fatalf("after one committed request the sequencer was told of %d events, want 1", n)
		}
		err = g.Do(ctx, f.admin, org, "study.create",
			identityWork(ctx, f, "Not committed", `INSERT INTO commit_check (participant_id) VALUES ('nobody')`))
		if !errs.Is(err, errs.Unavailable) {
			t.Fatalf("request whose identity commit failed answered %v, want Unavailable", err)
		}
		if n := issued.Len(); n != 1 {
			t.Errorf("after a batch that did not commit the sequencer was told of %d events, want still 1", n)
		}
	})
}
