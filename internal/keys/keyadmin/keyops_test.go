package keyadmin

import (
	"context"
	"database/sql"
	"encoding/base32"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/custodia/custodia/internal/accounts"
	"github.com/custodia/custodia/internal/authz"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/gate"
	"github.com/custodia/custodia/internal/ids"
	"github.com/custodia/custodia/internal/keys"
	"github.com/custodia/custodia/internal/mfa"
	"github.com/custodia/custodia/internal/orgs"
	"github.com/custodia/custodia/internal/sqldb"
	"github.com/custodia/custodia/internal/sqldb/sqldbtest"
)

type fixture struct {
	clinical, identity *sqldb.DB
	data               string
	org, other         string
	admin1, admin2     string // administrators of org
	manager            string // org-manager of org
	otherAdmin         string // administrator of other
}

func newFixture(t *testing.T, d sqldb.Dialect) *fixture {
	t.Helper()
	ctx := context.Background()
	f := &fixture{clinical: sqldbtest.Open(t, d, sqldb.Clinical), identity: sqldbtest.Open(t, d, sqldb.Identity), data: t.TempDir()}
	err := f.clinical.InTx(ctx, func(tx *sql.Tx) error {
		o, err := orgs.CreateOrganization(ctx, tx, "Lab", "lab")
		if err != nil {
			return err
		}
		o2, err := orgs.CreateOrganization(ctx, tx, "Other", "other")
		if err != nil {
			return err
		}
		f.org, f.other = o.ID, o2.ID
		for _, p := range []struct {
			id    *string
			email string
			org   string
			role  authz.Role
		}{{&f.admin1, "a1@lab.example", o.ID, authz.OrgAdmin}, {&f.admin2, "a2@lab.example", o.ID, authz.OrgAdmin},
			{&f.manager, "m@lab.example", o.ID, authz.OrgManager}, {&f.otherAdmin, "a@other.example", o2.ID, authz.OrgAdmin}} {
			acc, _, err := accounts.Enrol(ctx, tx, p.email, "", authz.Assignment{OrgID: p.org, Role: p.role})
			if err != nil {
				return err
			}
			*p.id = acc.ID
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *fixture) create(t *testing.T, by string, kind Kind, p Params, now time.Time) Request {
	t.Helper()
	var r Request
	err := f.clinical.InTx(context.Background(), func(tx *sql.Tx) error {
		var err error
		r, err = Create(context.Background(), tx, f.org, by, kind, p, now)
		return err
	})
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	return r
}

func (f *fixture) approve(orgID, id, by string, now time.Time) error {
	return f.clinical.InTx(context.Background(), func(tx *sql.Tx) error {
		_, err := Approve(context.Background(), tx, orgID, id, by, now)
		return err
	})
}

func (f *fixture) use(id string, kind Kind, now time.Time) error {
	return f.clinical.InTx(context.Background(), func(tx *sql.Tx) error {
		_, err := Use(context.Background(), tx, id, kind, now)
		return err
	})
}

func TestCRY08_ASingleAdministratorCannotRotateOrExport(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		ctx := context.Background()
		f := newFixture(t, d)
		now := time.Now()
		for _, kind := range []Kind{Rotate, ExportRecovery} {
			p := Params{}
			if kind == Rotate {
				p.KEK = true
			}
			r := f.create(t, f.admin1, kind, p, now)

			// Nothing happens on a request alone.
			if err := f.use(r.ID, kind, now); !errors.Is(err, ErrNotApproved) {
				t.Fatalf("%s: use of a pending request: %v", kind, err)
			}
			// The requester cannot approve their own request …
			if err := f.approve("", r.ID, f.admin1, now); !errors.Is(err, ErrOwnRequest) {
				t.Fatalf("%s: self-approval: %v", kind, err)
			}
			// … not even by writing to the table behind the code's back.
			_, err := f.clinical.ExecContext(ctx, `UPDATE key_requests SET approved_by = requested_by, approved_at = $1 WHERE id = $2`,
				now.UnixMicro(), r.ID)
			if err == nil {
				t.Fatalf("%s: the database accepted a self-approval", kind)
			}
			// A non-administrator and an administrator of another
			// organization cannot approve; for the latter the request
			// does not exist (ACL-08).
			if err := f.approve("", r.ID, f.manager, now); !errors.Is(err, ErrNotAdmin) {
				t.Fatalf("%s: approval by a manager: %v", kind, err)
			}
			if err := f.approve(f.other, r.ID, f.otherAdmin, now); !errors.Is(err, ErrNoRequest) {
				t.Fatalf("%s: approval through another organization: %v", kind, err)
			}
			if err := f.approve("", r.ID, f.otherAdmin, now); !errors.Is(err, ErrNotAdmin) {
				t.Fatalf("%s: approval by another organization's administrator: %v", kind, err)
			}
			if err := f.use(r.ID, kind, now); !errors.Is(err, ErrNotApproved) {
				t.Fatalf("%s: use after refused approvals: %v", kind, err)
			}

			// The second administrator approves, once; a second approval,
			// by them or anyone, is refused.
			if err := f.approve("", r.ID, f.admin2, now); err != nil {
				t.Fatalf("%s: approval: %v", kind, err)
			}
			if err := f.approve("", r.ID, f.admin2, now); !errors.Is(err, ErrNotPending) {
				t.Fatalf("%s: second approval by the same person: %v", kind, err)
			}
			// Of another kind it is no approval at all.
			other := ExportRecovery
			if kind == ExportRecovery {
				other = Rotate
			}
			if err := f.use(r.ID, other, now); errs.KindOf(err) != errs.Invalid {
				t.Fatalf("%s: use as %s: %v", kind, other, err)
			}
			if err := f.use(r.ID, kind, now); err != nil {
				t.Fatalf("%s: use: %v", kind, err)
			}
			if err := f.use(r.ID, kind, now); !errors.Is(err, ErrUsed) {
				t.Fatalf("%s: second use: %v", kind, err)
			}
		}

		// A request expires: it can be neither approved nor used after
		// RequestTTL, even if approved in time.
		old := now.Add(-RequestTTL - time.Minute)
		r := f.create(t, f.admin1, Rotate, Params{DataKeys: true}, old)
		if err := f.approve("", r.ID, f.admin2, now); !errors.Is(err, ErrExpired) {
			t.Fatalf("approval of an expired request: %v", err)
		}
		r = f.create(t, f.admin1, Rotate, Params{DataKeys: true}, now.Add(-RequestTTL+time.Minute))
		if err := f.approve("", r.ID, f.admin2, now); err != nil {
			t.Fatal(err)
		}
		if err := f.use(r.ID, Rotate, now.Add(2*time.Minute)); !errors.Is(err, ErrExpired) {
			t.Fatalf("use of an expired approved request: %v", err)
		}

		// An approval loses its force when the approver is no longer an
		// administrator.
		r = f.create(t, f.admin1, ExportRecovery, Params{}, now)
		if err := f.approve("", r.ID, f.admin2, now); err != nil {
			t.Fatal(err)
		}
		if _, err := f.clinical.ExecContext(ctx, `DELETE FROM role_assignments WHERE account_id = $1`, f.admin2); err != nil {
			t.Fatal(err)
		}
		if err := f.use(r.ID, ExportRecovery, now); errs.KindOf(err) != errs.Forbidden {
			t.Fatalf("use after the approver lost the role: %v", err)
		}

		// A non-administrator cannot even request.
		err := f.clinical.InTx(ctx, func(tx *sql.Tx) error {
			_, err := Create(ctx, tx, f.org, f.manager, Rotate, Params{KEK: true}, now)
			return err
		})
		if !errors.Is(err, ErrNotAdmin) {
			t.Fatalf("request by a manager: %v", err)
		}
	})
}

// TestCRY08_OnlyTheOperatingOrganizationTouchesTheKEK: the key-encryption
// key serves every organization on the instance, so only the first
// organization's administrators request operations on it; another
// organization rotates its own data keys only, and a request of theirs for
// more, written into the table behind the code's back and approved, is
// still refused when carried out. A custom role holding key.manage at
// organization level counts as an administrator for key operations.
func TestCRY08_OnlyTheOperatingOrganizationTouchesTheKEK(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		ctx := context.Background()
		f := newFixture(t, d)
		now := time.Now()
		if op, err := OperatingOrg(ctx, f.clinical); err != nil || op != f.org {
			t.Fatalf("operating organization %q, %v; want the first one, %q", op, err, f.org)
		}
		var custodian, otherAdmin2 string
		err := f.clinical.InTx(ctx, func(tx *sql.Tx) error {
			role, err := authz.CreateCustomRole(ctx, tx, authz.CustomRole{OrgID: f.other, Name: "key-custodian",
				Levels: []authz.Level{authz.LevelOrg}, Permissions: []authz.Action{authz.KeyManage}, CreatedBy: f.otherAdmin})
			if err != nil {
				return err
			}
			acc, _, err := accounts.Enrol(ctx, tx, "custodian@other.example", "", authz.Assignment{OrgID: f.other, Role: authz.Role(role.Name)})
			if err != nil {
				return err
			}
			custodian = acc.ID
			acc, _, err = accounts.Enrol(ctx, tx, "a2@other.example", "", authz.Assignment{OrgID: f.other, Role: authz.OrgAdmin})
			otherAdmin2 = acc.ID
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		create := func(by string, kind Kind, p Params) (Request, error) {
			var r Request
			err := f.clinical.InTx(ctx, func(tx *sql.Tx) error {
				var err error
				r, err = Create(ctx, tx, f.other, by, kind, p, now)
				return err
			})
			return r, err
		}
		for _, c := range []struct {
			kind Kind
			p    Params
		}{{Rotate, Params{KEK: true}}, {Rotate, Params{KEK: true, DataKeys: true}}, {ExportRecovery, Params{}}, {ProviderChange, Params{Provider: "vault"}}} {
			if _, err := create(f.otherAdmin, c.kind, c.p); !errors.Is(err, ErrNotOperator) {
				t.Errorf("%s %+v by another organization: %v, want ErrNotOperator", c.kind, c.p, err)
			}
		}
		r, err := create(f.otherAdmin, Rotate, Params{DataKeys: true})
		if err != nil {
			t.Fatalf("data-key rotation by another organization: %v", err)
		}
		// The custom key custodian approves like an administrator.
		if err := f.approve(f.other, r.ID, custodian, now); err != nil {
			t.Fatalf("approval by a key custodian: %v", err)
		}
		if err := f.use(r.ID, Rotate, now); err != nil {
			t.Fatalf("use: %v", err)
		}

		// Forged: an export for the other organization, approved.
		id := ids.New()
		if _, err := f.clinical.ExecContext(ctx, `INSERT INTO key_requests
			(id, org_id, kind, params, requested_by, requested_at, expires_at, approved_by, approved_at)
			VALUES ($1, $2, 'export-recovery', '{}', $3, $4, $5, $6, $4)`,
			id, f.other, f.otherAdmin, now.UnixMicro(), now.Add(time.Hour).UnixMicro(), otherAdmin2); err != nil {
			t.Fatal(err)
		}
		if err := f.use(id, ExportRecovery, now); !errors.Is(err, ErrNotOperator) {
			t.Fatalf("use of a forged export of another organization: %v", err)
		}
	})
}

// sealedValue is a value sealed in a test, with where it belongs.
type sealedValue struct {
	ring  int // 0 clinical, 1 identity
	ctx   keys.Context
	value string
	blob  []byte
}

func TestCRY07_RotationResumesAfterAFailureAndEveryValueOpens(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		ctx := context.Background()
		f := newFixture(t, d)

		// The server's key-encryption key, opened before the rotation and
		// never reopened: it must follow the rotation through the file.
		server, err := keys.OpenLocalKEK(f.data)
		if err != nil {
			t.Fatal(err)
		}
		oldKeyFile, err := os.ReadFile(filepath.Join(f.data, keys.LocalKEKFile))
		if err != nil {
			t.Fatal(err)
		}
		from := server.ID()
		rings := []*keys.Keyring{{DB: f.clinical, KEK: server}, {DB: f.identity, KEK: server}}
		var values []sealedValue
		seal := func(ring int, scope keys.Scope, c keys.Context, v string) {
			t.Helper()
			db := rings[ring].DB
			err := db.InTx(ctx, func(tx *sql.Tx) error {
				dk, err := rings[ring].Current(ctx, tx, scope)
				if err != nil {
					return err
				}
				b, err := keys.Seal(dk, []byte(v), c)
				values = append(values, sealedValue{ring, c, v, b})
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
		}
		seal(0, keys.OrgScope(f.org), keys.Context{OrgID: f.org, RecordID: "org", Field: "name"}, "Lab")
		for i := range 7 {
			study := fmt.Sprintf("s%d", i)
			seal(0, keys.StudyScope(f.org, study), keys.Context{OrgID: f.org, StudyID: study, RecordID: "r1", Field: "weight"}, fmt.Sprintf("%d kg", 60+i))
			pseudonym := fmt.Sprintf("P-%d", i)
			seal(1, keys.ParticipantScope(f.org, pseudonym), keys.Context{OrgID: f.org, StudyID: study, RecordID: pseudonym, Field: "name"}, "Name "+pseudonym)
		}
		seal(0, keys.StudyScope(f.other, "x"), keys.Context{OrgID: f.other, StudyID: "x", RecordID: "r", Field: "f"}, "other org")
		// A TOTP secret, wrapped by the same key-encryption key.
		factors := &mfa.Service{Gate: gate.New(gate.Config{Clinical: f.clinical, Keys: &keys.Keyring{DB: f.clinical, KEK: server}})}
		enrol, err := factors.Begin(ctx, gate.Actor{AccountID: f.admin1, RemoteAddr: "192.0.2.1"})
		if err != nil {
			t.Fatal(err)
		}
		totpSecret, err := base32.StdEncoding.WithPadding(base32.NoPadding).DecodeString(enrol.Secret)
		if err != nil {
			t.Fatal(err)
		}

		openAll := func(t *testing.T, label string, kek keys.KEK) {
			t.Helper()
			fresh := []*keys.Keyring{{DB: f.clinical, KEK: kek}, {DB: f.identity, KEK: kek}}
			for _, v := range values {
				got, err := keys.Open(ctx, fresh[v.ring], v.blob, v.ctx)
				if err != nil || string(got) != v.value {
					t.Fatalf("%s: value %q does not open: %q, %v", label, v.value, got, err)
				}
			}
		}

		r := f.create(t, f.admin1, Rotate, Params{KEK: true, DataKeys: true}, time.Now())
		if err := f.approve("", r.ID, f.admin2, time.Now()); err != nil {
			t.Fatal(err)
		}
		runner := func(kek keys.Provider) *Runner {
			return &Runner{
				Gate: gate.New(gate.Config{Clinical: f.clinical}), KEK: kek, BatchSize: 2,
				Keyrings: []Keyring{{"clinical", &keys.Keyring{DB: f.clinical, KEK: kek}}, {"identity", &keys.Keyring{DB: f.identity, KEK: kek}}},
				Stores: []keys.WrappedStore{&keys.DataKeyStore{Label: "clinical data keys", DB: f.clinical},
					&keys.DataKeyStore{Label: "identity data keys", DB: f.identity}, mfa.Secrets(gate.New(gate.Config{Clinical: f.clinical}))},
			}
		}

		// The first run dies after its eleventh batch, in the middle of
		// re-wrapping.
		cli, err := keys.OpenLocalKEK(f.data)
		if err != nil {
			t.Fatal(err)
		}
		first := runner(cli)
		batches := 0
		crash := errors.New("killed")
		first.afterBatch = func() error {
			if batches++; batches == 11 {
				return crash
			}
			return nil
		}
		rot, err := first.Run(ctx, r.ID)
		if !errors.Is(err, crash) {
			t.Fatalf("first run: %v", err)
		}
		if rot.Phase != PhaseRewrap || rot.TargetKEK == from || rot.TargetKEK == "" {
			t.Fatalf("interrupted rotation: phase %s, target %s", rot.Phase, rot.TargetKEK)
		}
		var partly int
		if err := f.clinical.QueryRowContext(ctx, `SELECT COUNT(*) FROM data_keys WHERE kek_id = $1`, rot.TargetKEK).Scan(&partly); err != nil {
			t.Fatal(err)
		}
		if partly == 0 {
			t.Fatal("the interrupted run re-wrapped nothing")
		}
		// Halfway, old and new versions open: for the server that knew
		// only the old one, and for a process that starts now.
		openAll(t, "halfway, server", server)
		restarted, err := keys.OpenLocalKEK(f.data)
		if err != nil {
			t.Fatal(err)
		}
		openAll(t, "halfway, restarted", restarted)

		// The same request resumes; another request cannot start a second
		// rotation meanwhile.
		r2 := f.create(t, f.admin2, Rotate, Params{KEK: true}, time.Now())
		if err := f.approve("", r2.ID, f.admin1, time.Now()); err != nil {
			t.Fatal(err)
		}
		if _, err := runner(restarted).Run(ctx, r2.ID); errs.KindOf(err) != errs.Conflict {
			t.Fatalf("second rotation while one is unfinished: %v", err)
		}
		done, err := runner(restarted).Run(ctx, r.ID)
		if err != nil {
			t.Fatalf("resume: %v", err)
		}
		if done.Phase != PhaseDone || done.TargetKEK != rot.TargetKEK {
			t.Fatalf("resumed rotation: %+v", done)
		}

		// Every wrapped secret is under the new version, in both
		// databases; the old version is retired from the key file.
		for _, q := range []struct {
			db   *sqldb.DB
			stmt string
		}{{f.clinical, `SELECT COUNT(*) FROM data_keys WHERE wrapped IS NOT NULL AND kek_id <> $1`},
			{f.identity, `SELECT COUNT(*) FROM data_keys WHERE wrapped IS NOT NULL AND kek_id <> $1`},
			{f.clinical, `SELECT COUNT(*) FROM account_factors WHERE kek_id <> $1`}} {
			var n int
			if err := q.db.QueryRowContext(ctx, q.stmt, done.TargetKEK).Scan(&n); err != nil || n != 0 {
				t.Fatalf("%s: %d left under another version (%v)", q.stmt, n, err)
			}
		}
		if v := restarted.Versions(); len(v) != 1 || v[0] != done.TargetKEK {
			t.Fatalf("versions after the rotation: %v", v)
		}
		openAll(t, "after, server", server)
		again, err := keys.OpenLocalKEK(f.data)
		if err != nil {
			t.Fatal(err)
		}
		openAll(t, "after, restarted", again)

		// Each data key got exactly one new version, despite the resume.
		var maxVersion, minVersion int
		if err := f.clinical.QueryRowContext(ctx, `SELECT MAX(v), MIN(v) FROM (SELECT MAX(version) AS v FROM data_keys WHERE org_id = $1 AND scope_kind <> 'index' GROUP BY id) t`,
			f.org).Scan(&maxVersion, &minVersion); err != nil || maxVersion != 2 || minVersion != 2 {
			t.Fatalf("data key versions of the organization: %d..%d (%v), want 2", minVersion, maxVersion, err)
		}
		// Another organization's data keys were not rotated.
		if err := f.clinical.QueryRowContext(ctx, `SELECT MAX(version) FROM data_keys WHERE org_id = $1`, f.other).Scan(&maxVersion); err != nil || maxVersion != 1 {
			t.Fatalf("data keys of another organization: version %d (%v)", maxVersion, err)
		}

		// The old version alone opens nothing any more: the keys were
		// re-wrapped, not just relabelled.
		oldDir := t.TempDir()
		if err := os.MkdirAll(filepath.Join(oldDir, "keys"), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(oldDir, keys.LocalKEKFile), oldKeyFile, 0o600); err != nil {
			t.Fatal(err)
		}
		oldKEK, err := keys.OpenLocalKEK(oldDir)
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range values {
			if _, err := keys.Open(ctx, &keys.Keyring{DB: []*sqldb.DB{f.clinical, f.identity}[v.ring], KEK: oldKEK}, v.blob, v.ctx); err == nil {
				t.Fatalf("value %q opens with the retired version", v.value)
			}
		}

		// The TOTP secret still gives the right codes.
		code := mfa.Code(totpSecret, mfa.Step(time.Now()))
		if _, err := (&mfa.Service{Gate: gate.New(gate.Config{Clinical: f.clinical, Keys: &keys.Keyring{DB: f.clinical, KEK: again}})}).Confirm(ctx, gate.Actor{AccountID: f.admin1, RemoteAddr: "192.0.2.1"}, code); err != nil {
			t.Fatalf("TOTP after rotation: %v", err)
		}

		// Start, resume and finish are security events with counts.
		rows, err := f.clinical.QueryContext(ctx, `SELECT action, body FROM audit_events WHERE object_id = $1 AND security = TRUE ORDER BY at`, done.ID)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		var actions []string
		var finish string
		for rows.Next() {
			var a, body string
			if err := rows.Scan(&a, &body); err != nil {
				t.Fatal(err)
			}
			actions = append(actions, a)
			if a == "key.rotate.finish" {
				finish = body
			}
		}
		if got := strings.Join(actions, ","); got != "key.rotate.start,key.rotate.resume,key.rotate.finish" {
			t.Fatalf("rotation events: %s", got)
		}
		for _, want := range []string{`"retired":"` + from + `"`, `"failed":"0"`, `"data_keys_rotated":"15"`} {
			if !strings.Contains(finish, want) {
				t.Errorf("finish event %s lacks %s", finish, want)
			}
		}
	})
}
