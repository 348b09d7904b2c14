// Package keyadmin owns key operations under dual control (CRY-08) and the
// rotation of keys (CRY-07).
//
// A key operation (rotation, export of recovery material, change of the
// key-encryption key's provider) is carried out only on a request that one
// administrator of an organization (a holder of key.manage) made and a
// second, different administrator of the same organization approved, both
// within 24 hours (RequestTTL). Operations on the key-encryption key reach
// every organization on the instance and belong to the operating
// organization's administrators (OperatingOrg). The requester can never approve their own request (the
// database refuses it too), one request is carried out once, and every
// request, approval, refusal, start and end is a security event on the audit
// trail (AUD-05).
//
// A rotation adds a version of the key-encryption key and, if asked, of the
// organization's data keys, then re-wraps every wrapped secret under the new
// version in batches, recording where it stands after each, so that one that
// was interrupted (killed, or its KMS gone) resumes where it stopped. The
// server goes on serving throughout.
package keyadmin

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/authz"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/gate"
	"github.com/custodia/custodia/internal/ids"
	"github.com/custodia/custodia/internal/keys"
	"github.com/custodia/custodia/internal/sqldb"
)

// Kind is what a request asks for.
type Kind string

const (
	// Rotate adds versions of keys and re-wraps every wrapped secret (CRY-07).
	Rotate Kind = "rotate"
	// ExportRecovery writes the local key-encryption key, encrypted to a
	// passphrase, for safekeeping away from the server.
	ExportRecovery Kind = "export-recovery"
	// ProviderChange re-wraps every wrapped secret under another provider's
	// key-encryption key.
	ProviderChange Kind = "provider-change"
)

// Kinds lists the kinds of request.
var Kinds = []Kind{Rotate, ExportRecovery, ProviderChange}

// ParseKind checks a kind named by a person or a request.
func ParseKind(s string) (Kind, error) {
	if !slices.Contains(Kinds, Kind(s)) {
		return "", errs.E(errs.Invalid, "unknown key operation %q (want rotate, export-recovery or provider-change)", s)
	}
	return Kind(s), nil
}

// RequestTTL is how long a request may wait for its approval and its use.
const RequestTTL = 24 * time.Hour

// Params are the details of a request: which keys, which provider. They
// never hold key material.
type Params struct {
	// KEK: a rotation adds a version of the key-encryption key.
	KEK bool `json:"kek,omitempty"`
	// DataKeys: a rotation adds a version of each data key of the
	// organization.
	DataKeys bool `json:"data_keys,omitempty"`
	// Provider is the new provider of a provider change.
	Provider string `json:"provider,omitempty"`
}

// Request is a key operation under dual control.
type Request struct {
	ID          string
	OrgID       string
	Kind        Kind
	Params      Params
	RequestedBy string // account id
	RequestedAt time.Time
	ExpiresAt   time.Time
	ApprovedBy  string // "" until approved
	ApprovedAt  time.Time
	UsedAt      time.Time
}

// Status is "pending", "approved", "used" or "expired" at now.
func (r Request) Status(now time.Time) string {
	switch {
	case !r.UsedAt.IsZero():
		return "used"
	case !now.Before(r.ExpiresAt):
		return "expired"
	case r.ApprovedBy != "":
		return "approved"
	}
	return "pending"
}

var (
	// ErrNotAdmin answers a request or approval by someone who is not an
	// administrator of the organization.
	ErrNotAdmin = errs.E(errs.Forbidden, "only an administrator of the organization can request or approve key operations")
	// ErrOwnRequest answers the requester's attempt to approve their own
	// request (CRY-08).
	ErrOwnRequest = errs.E(errs.Forbidden, "a key operation needs a second administrator: the requester cannot approve it")
	// ErrExpired answers a request older than RequestTTL.
	ErrExpired = errs.E(errs.Conflict, "the request has expired; make a new one")
	// ErrNotPending answers the approval of a request approved or used
	// already.
	ErrNotPending = errs.E(errs.Conflict, "the request is not waiting for approval")
	// ErrNotApproved answers the use of a request without its approval.
	ErrNotApproved = errs.E(errs.Forbidden, "the request has not been approved by a second administrator")
	// ErrUsed answers the second use of a request.
	ErrUsed = errs.E(errs.Conflict, "the request has been carried out already")
	// ErrNoRequest answers an unknown request, or one of another
	// organization (ACL-08).
	ErrNoRequest = errs.E(errs.NotFound, "no such key request")
)

// IsAdmin reports whether account may request and approve key operations
// of orgID: whether a role it holds at organization level grants
// key.manage (org-admin, or a custom "key custodian" role), as authz
// decides.
func IsAdmin(ctx context.Context, q sqldb.Querier, orgID, accountID string) (bool, error) {
	as, err := authz.AssignmentsOf(ctx, q, orgID, accountID)
	if err != nil {
		return false, errs.Wrap(errs.Unavailable, err, "read roles")
	}
	s := authz.Subject{AccountID: accountID, OrgID: orgID, Assignments: as}
	return authz.Decide(s, authz.KeyManage, authz.Resource{OrgID: orgID}).Allow, nil
}

// InstanceWide reports whether an operation of kind with p touches the
// instance's key-encryption key, and so every organization on it: a new
// version of the key-encryption key, an export of its recovery material, a
// change of its provider. A rotation of data keys alone is the
// organization's own.
func InstanceWide(kind Kind, p Params) bool {
	return kind != Rotate || p.KEK
}

// ErrNotOperator answers an instance-wide operation requested or carried
// out for an organization other than the operating one.
var ErrNotOperator = errs.E(errs.Forbidden, "operations on the key-encryption key reach every organization on the "+
	"instance: only administrators of the organization that operates it (the first one created) request them; "+
	"an organization may rotate its own data keys")

// OperatingOrg is the organization that operates the instance: the first
// one created (by "custodia init"). Its administrators, and no one else's,
// request and approve operations on the key-encryption key (InstanceWide),
// which every organization's data depend on.
func OperatingOrg(ctx context.Context, q sqldb.Querier) (string, error) {
	var id string
	err := q.QueryRowContext(ctx, `SELECT id FROM organizations ORDER BY created_at, id LIMIT 1`).Scan(&id)
	if err != nil {
		return "", errs.Wrap(errs.Unavailable, err, "find the operating organization")
	}
	return id, nil
}

// checkOperator refuses an instance-wide operation of an organization
// other than the operating one.
func checkOperator(ctx context.Context, q sqldb.Querier, orgID string, kind Kind, p Params) error {
	if !InstanceWide(kind, p) {
		return nil
	}
	op, err := OperatingOrg(ctx, q)
	if err != nil {
		return err
	}
	if op != orgID {
		return ErrNotOperator
	}
	return nil
}

func checkParams(kind Kind, p Params) error {
	switch kind {
	case Rotate:
		if !p.KEK && !p.DataKeys {
			return errs.E(errs.Invalid, "a rotation rotates the key-encryption key, the data keys, or both")
		}
		if p.Provider != "" {
			return errs.E(errs.Invalid, "a rotation names no provider")
		}
	case ExportRecovery:
		if p != (Params{}) {
			return errs.E(errs.Invalid, "an export of recovery material takes no parameters")
		}
	case ProviderChange:
		if !slices.Contains(keys.ProviderNames, p.Provider) {
			return errs.E(errs.Invalid, "unknown provider %q (want local, pkcs11 or vault)", p.Provider)
		}
		if p.KEK || p.DataKeys {
			return errs.E(errs.Invalid, "a provider change rotates nothing else")
		}
	default:
		return errs.E(errs.Invalid, "unknown key operation %q", kind)
	}
	return nil
}

// Create records a request by requester, an administrator of orgID, in tx.
// The caller audits it (Event).
func Create(ctx context.Context, tx sqldb.Tx, orgID, requester string, kind Kind, p Params, now time.Time) (Request, error) {
	if err := checkParams(kind, p); err != nil {
		return Request{}, err
	}
	ok, err := IsAdmin(ctx, tx, orgID, requester)
	if err != nil {
		return Request{}, err
	}
	if !ok {
		return Request{}, ErrNotAdmin
	}
	if err := checkOperator(ctx, tx, orgID, kind, p); err != nil {
		return Request{}, err
	}
	params, err := json.Marshal(p)
	if err != nil {
		return Request{}, errs.Wrap(errs.Internal, err, "encode request")
	}
	r := Request{ID: ids.New(), OrgID: orgID, Kind: kind, Params: p, RequestedBy: requester,
		RequestedAt: now.UTC().Truncate(time.Microsecond), ExpiresAt: now.Add(RequestTTL).UTC().Truncate(time.Microsecond)}
	if _, err := tx.ExecContext(ctx, `INSERT INTO key_requests
		(id, org_id, kind, params, requested_by, requested_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7)`,
		r.ID, r.OrgID, string(r.Kind), string(params), r.RequestedBy, r.RequestedAt.UnixMicro(), r.ExpiresAt.UnixMicro()); err != nil {
		return Request{}, errs.Wrap(errs.Unavailable, err, "record key request")
	}
	return r, nil
}

const selectRequest = `SELECT id, org_id, kind, params, requested_by, requested_at, expires_at,
	COALESCE(approved_by, ''), approved_at, used_at FROM key_requests `

type scanner interface{ Scan(...any) error }

func scanRequest(s scanner) (Request, error) {
	var (
		r                  Request
		params             string
		reqAt, expAt       int64
		approvedAt, usedAt sql.NullInt64
	)
	if err := s.Scan(&r.ID, &r.OrgID, &r.Kind, &params, &r.RequestedBy, &reqAt, &expAt, &r.ApprovedBy, &approvedAt, &usedAt); err != nil {
		return Request{}, err
	}
	if err := json.Unmarshal([]byte(params), &r.Params); err != nil {
		return Request{}, errs.Wrap(errs.Internal, err, "key request "+r.ID+" has malformed parameters")
	}
	r.RequestedAt, r.ExpiresAt = time.UnixMicro(reqAt).UTC(), time.UnixMicro(expAt).UTC()
	if approvedAt.Valid {
		r.ApprovedAt = time.UnixMicro(approvedAt.Int64).UTC()
	}
	if usedAt.Valid {
		r.UsedAt = time.UnixMicro(usedAt.Int64).UTC()
	}
	return r, nil
}

// Get reads a request. An orgID other than "" must be the request's: a
// request of another organization is ErrNoRequest, like a missing one.
func Get(ctx context.Context, q sqldb.Querier, orgID, id string) (Request, error) {
	if !ids.Valid(id) {
		return Request{}, ErrNoRequest
	}
	r, err := scanRequest(q.QueryRowContext(ctx, selectRequest+`WHERE id = $1`, id))
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return Request{}, ErrNoRequest
	case err != nil:
		return Request{}, errs.Wrap(errs.Unavailable, err, "read key request")
	case orgID != "" && r.OrgID != orgID:
		return Request{}, ErrNoRequest
	}
	return r, nil
}

// List returns the requests of orgID ("" for every organization) made
// since since, newest first.
func List(ctx context.Context, q sqldb.Querier, orgID string, since time.Time) ([]Request, error) {
	rows, err := q.QueryContext(ctx, selectRequest+`WHERE ($1 = '' OR org_id = $1) AND requested_at >= $2
		ORDER BY requested_at DESC, id LIMIT 100`, orgID, since.UnixMicro())
	if err != nil {
		return nil, errs.Wrap(errs.Unavailable, err, "list key requests")
	}
	defer rows.Close()
	var out []Request
	for rows.Next() {
		r, err := scanRequest(rows)
		if err != nil {
			return nil, errs.Wrap(errs.Unavailable, err, "list key requests")
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// Approve records approver's approval of request id of orgID ("" for any
// organization) in tx. The approver must be an administrator of the
// request's organization other than its requester, and the request pending
// and not expired.
func Approve(ctx context.Context, tx sqldb.Tx, orgID, id, approver string, now time.Time) (Request, error) {
	r, err := Get(ctx, tx, orgID, id)
	if err != nil {
		return Request{}, err
	}
	ok, err := IsAdmin(ctx, tx, r.OrgID, approver)
	if err != nil {
		return Request{}, err
	}
	switch st := r.Status(now); {
	case !ok:
		return r, ErrNotAdmin
	case approver == r.RequestedBy:
		return r, ErrOwnRequest
	case st == "expired":
		return r, ErrExpired
	case st != "pending":
		return r, ErrNotPending
	}
	at := now.UTC().Truncate(time.Microsecond)
	res, err := tx.ExecContext(ctx, `UPDATE key_requests SET approved_by = $1, approved_at = $2
		WHERE id = $3 AND approved_by IS NULL AND used_at IS NULL AND expires_at > $2 AND requested_by <> $1`,
		approver, at.UnixMicro(), r.ID)
	if err != nil {
		return r, errs.Wrap(errs.Unavailable, err, "record approval")
	}
	if n, err := res.RowsAffected(); err != nil || n != 1 {
		return r, ErrNotPending // approved by someone else meanwhile
	}
	r.ApprovedBy, r.ApprovedAt = approver, at
	return r, nil
}

// Use marks request id as carried out, in the transaction that starts the
// operation, after checking that it is of kind, approved by a second
// administrator, unexpired and unused, and that both administrators still
// hold their role. It is what makes one request one operation.
func Use(ctx context.Context, tx sqldb.Tx, id string, kind Kind, now time.Time) (Request, error) {
	r, err := Get(ctx, tx, "", id)
	if err != nil {
		return Request{}, err
	}
	if r.Kind != kind {
		return r, errs.E(errs.Invalid, "request %s is for %s, not %s", r.ID, r.Kind, kind)
	}
	switch r.Status(now) {
	case "used":
		return r, ErrUsed
	case "expired":
		return r, ErrExpired
	case "pending":
		return r, ErrNotApproved
	}
	if r.ApprovedBy == r.RequestedBy {
		return r, ErrOwnRequest // the schema refuses it; never trust one check
	}
	if err := checkOperator(ctx, tx, r.OrgID, r.Kind, r.Params); err != nil {
		return r, err
	}
	for _, acc := range []string{r.RequestedBy, r.ApprovedBy} {
		ok, err := IsAdmin(ctx, tx, r.OrgID, acc)
		if err != nil {
			return r, err
		}
		if !ok {
			return r, errs.E(errs.Forbidden, "the requester or the approver of request %s is no longer an administrator", r.ID)
		}
	}
	at := now.UTC().Truncate(time.Microsecond)
	res, err := tx.ExecContext(ctx, `UPDATE key_requests SET used_at = $1
		WHERE id = $2 AND used_at IS NULL AND approved_by IS NOT NULL AND expires_at > $1`, at.UnixMicro(), r.ID)
	if err != nil {
		return r, errs.Wrap(errs.Unavailable, err, "record the use of the request")
	}
	if n, err := res.RowsAffected(); err != nil || n != 1 {
		return r, ErrUsed
	}
	r.UsedAt = at
	return r, nil
}

// Event is the security event of an action on request r, for the audit
// trail: it names the request, its kind and parameters and who made and
// approved it, never key material.
func Event(action string, r Request, outcome audit.Outcome) audit.Event {
	return audit.Event{Action: action, OrgID: r.OrgID, Outcome: outcome, Security: true,
		ObjectType: "key-request", ObjectID: r.ID, Details: r.details()}
}

// details are what the audit trail says of r.
func (r Request) details() map[string]string {
	d := map[string]string{"request": r.ID, "kind": string(r.Kind), "requested_by": r.RequestedBy}
	if r.ApprovedBy != "" {
		d["approved_by"] = r.ApprovedBy
	}
	if r.Params.KEK {
		d["kek"] = "true"
	}
	if r.Params.DataKeys {
		d["data_keys"] = "true"
	}
	if r.Params.Provider != "" {
		d["provider"] = r.Params.Provider
	}
	return d
}

func (r Request) String() string {
	return fmt.Sprintf("%s request %s", r.Kind, r.ID)
}

// ExportUse spends an approved export-recovery request and records the
// export of the recovery material of key-encryption key kekID as the
// operator's security event of tx (Gate.Operate): the caller writes the
// material only once tx has committed.
func ExportUse(ctx context.Context, tx *gate.OpTx, id, kekID string, now time.Time) (Request, error) {
	r, err := Use(ctx, tx, id, ExportRecovery, now)
	if err != nil {
		return r, err
	}
	ev := Event("key.recovery.export", r, audit.Success)
	ev.Details["kek"] = kekID
	asEvent(tx, ev)
	return r, nil
}
