package participants

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/custodia/custodia/internal/authz"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/gate"
	"github.com/custodia/custodia/internal/ids"
	"github.com/custodia/custodia/internal/orgs"
	"github.com/custodia/custodia/internal/sqldb"
)

// DecryptGrant lets one account open sensitive identity fields of the
// participants of a study, or of one site of it (CRY-06), until it expires
// or is revoked. It adds to identity.reveal, never replaces it.
type DecryptGrant struct {
	ID        string
	OrgID     string
	StudyID   string
	SiteID    string // empty: every site of the study
	AccountID string
	Fields    []Field
	Reason    string
	GrantedBy string
	CreatedAt time.Time
	ExpiresAt time.Time // zero: until revoked
	RevokedAt time.Time // zero: not revoked
}

// GrantRequest is what an admin asks for.
type GrantRequest struct {
	AccountID string
	SiteID    string   // optional
	Fields    []string // optional: every sensitive field
	Reason    string   // required
	ExpiresAt time.Time
}

// maxReason bounds a grant's reason, in characters.
const maxReason = 500

// Grant gives a decrypt grant for a study: an organization admin anywhere,
// a study admin in their study. The grantee must hold a role that reaches
// the study (and the site, if one is named). The grant is a security event
// (AUD-05) naming grantee, site, fields and expiry; the reason stays with
// the grant.
func (s *Service) Grant(ctx context.Context, a gate.Actor, slug, studyID string, req GrantRequest) (DecryptGrant, error) {
	var g DecryptGrant
	err := s.Gate.Do(ctx, a, gate.Slug(slug), "decrypt.grant", func(t *gate.Tx) error {
		org := t.Org()
		t.Object("study", studyID)
		if err := t.Authorize(authz.DecryptGrant, authz.Resource{OrgID: org.ID, StudyID: studyID}); err != nil {
			return err
		}
		st, err := orgs.StudyByID(ctx, t, org.ID, studyID)
		if err != nil {
			return err
		}
		t.Security()
		if err := t.RequireStepUp(); err != nil {
			return err
		}
		if g, err = s.checkGrant(ctx, t, st, req); err != nil {
			return err
		}
		var site, expires any
		if g.SiteID != "" {
			site = g.SiteID
		}
		if !g.ExpiresAt.IsZero() {
			expires = g.ExpiresAt.UnixMicro()
		}
		if _, err := t.ExecContext(ctx, `INSERT INTO decrypt_grants
			(id, org_id, study_id, site_id, account_id, fields, reason, granted_by, created_at, expires_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
			g.ID, g.OrgID, g.StudyID, site, g.AccountID, joinFields(g.Fields), g.Reason, g.GrantedBy,
			g.CreatedAt.UnixMicro(), expires); err != nil {
			return fmt.Errorf("store decrypt grant: %w", err)
		}
		t.Object("decrypt_grant", g.ID)
		t.Detail("account", g.AccountID)
		t.Detail("site", g.SiteID)
		t.Detail("fields", joinFields(g.Fields))
		if !g.ExpiresAt.IsZero() {
			t.Detail("expires", g.ExpiresAt.UTC().Format(time.RFC3339))
		}
		return nil
	})
	return g, err
}

// checkGrant validates a request into a grant ready to store.
func (s *Service) checkGrant(ctx context.Context, t *gate.Tx, st orgs.Study, req GrantRequest) (DecryptGrant, error) {
	now := s.now()
	g := DecryptGrant{ID: ids.New(), OrgID: st.OrgID, StudyID: st.ID, GrantedBy: t.Subject.AccountID,
		CreatedAt: time.UnixMicro(now.UnixMicro()), ExpiresAt: req.ExpiresAt}
	g.Reason = strings.TrimSpace(req.Reason)
	switch {
	case g.Reason == "":
		return g, errs.E(errs.Invalid, "a reason is required")
	case !utf8.ValidString(g.Reason) || utf8.RuneCountInString(g.Reason) > maxReason:
		return g, errs.E(errs.Invalid, "the reason must be text of at most %d characters", maxReason)
	case strings.ContainsFunc(g.Reason, func(r rune) bool { return unicode.IsControl(r) && r != '\n' }):
		return g, errs.E(errs.Invalid, "the reason may not contain control characters")
	}
	if !g.ExpiresAt.IsZero() && !g.ExpiresAt.After(now) {
		return g, errs.E(errs.Invalid, "expires_at must be in the future")
	}
	if len(req.Fields) == 0 {
		g.Fields = SensitiveFields()
	}
	for _, name := range req.Fields {
		f, err := ParseField(name)
		switch {
		case err == nil && f.Sensitive():
		case strings.Contains(name, ".") && authz.CheckFieldName(name) == nil:
			// A sensitive field of a form, named form.field: its values
			// open under the grant (package entries).
			f = Field(name)
		default:
			return g, errs.E(errs.Invalid, "fields must name sensitive fields: %s, or fields of forms as form.field", joinFields(SensitiveFields()))
		}
		if !slices.Contains(g.Fields, f) {
			g.Fields = append(g.Fields, f)
		}
	}
	if req.SiteID != "" {
		if _, err := site(ctx, t, st.OrgID, st.ID, req.SiteID); err != nil {
			return g, errs.E(errs.Invalid, "site is not a site of this study")
		}
		g.SiteID = req.SiteID
	}
	noRole := errs.E(errs.Invalid, "that account holds no role in this study")
	if !ids.Valid(req.AccountID) {
		return g, noRole
	}
	as, err := authz.AssignmentsOf(ctx, t, st.OrgID, req.AccountID)
	if err != nil {
		return g, err
	}
	reaches := slices.ContainsFunc(as, func(as authz.Assignment) bool {
		switch as.Level() {
		case authz.LevelOrg:
			return true
		case authz.LevelStudy:
			return as.StudyID == st.ID
		}
		return as.StudyID == st.ID && (g.SiteID == "" || as.SiteID == g.SiteID)
	})
	if !reaches {
		return g, noRole
	}
	g.AccountID = req.AccountID
	return g, nil
}

// Revoke ends a decrypt grant at once; revoking a revoked grant changes
// nothing and succeeds. A security event.
func (s *Service) Revoke(ctx context.Context, a gate.Actor, slug, studyID, grantID string) error {
	return s.Gate.Do(ctx, a, gate.Slug(slug), "decrypt.revoke", func(t *gate.Tx) error {
		org := t.Org()
		t.Object("decrypt_grant", grantID)
		if err := t.Authorize(authz.DecryptGrant, authz.Resource{OrgID: org.ID, StudyID: studyID}); err != nil {
			return err
		}
		st, err := orgs.StudyByID(ctx, t, org.ID, studyID)
		if err != nil {
			return err
		}
		t.Security()
		if !ids.Valid(grantID) {
			return errs.E(errs.NotFound, "decrypt grant not found")
		}
		var revoked sql.NullInt64
		err = t.QueryRowContext(ctx, `SELECT revoked_at FROM decrypt_grants WHERE org_id = $1 AND study_id = $2 AND id = $3`,
			org.ID, st.ID, grantID).Scan(&revoked)
		if errors.Is(err, sql.ErrNoRows) {
			return errs.E(errs.NotFound, "decrypt grant not found")
		}
		if err != nil {
			return fmt.Errorf("find decrypt grant: %w", err)
		}
		if revoked.Valid {
			t.Detail("already_revoked", "true")
			return nil
		}
		_, err = t.ExecContext(ctx, `UPDATE decrypt_grants SET revoked_at = $1, revoked_by = $2
			WHERE org_id = $3 AND id = $4 AND revoked_at IS NULL`, sqldb.Now(), t.Subject.AccountID, org.ID, grantID)
		if err != nil {
			return fmt.Errorf("revoke decrypt grant: %w", err)
		}
		return nil
	})
}

// Grants lists the decrypt grants of a study, newest first, revoked and
// expired ones included.
func (s *Service) Grants(ctx context.Context, a gate.Actor, slug, studyID string) ([]DecryptGrant, error) {
	out := []DecryptGrant{}
	err := s.Gate.Do(ctx, a, gate.Slug(slug), "decrypt.list", func(t *gate.Tx) error {
		org := t.Org()
		t.Object("study", studyID)
		if err := t.Authorize(authz.DecryptGrant, authz.Resource{OrgID: org.ID, StudyID: studyID}); err != nil {
			return err
		}
		st, err := orgs.StudyByID(ctx, t, org.ID, studyID)
		if err != nil {
			return err
		}
		rows, err := t.QueryContext(ctx, `SELECT id, org_id, study_id, COALESCE(site_id, ''), account_id, fields, reason,
			granted_by, created_at, expires_at, revoked_at FROM decrypt_grants
			WHERE org_id = $1 AND study_id = $2 ORDER BY created_at DESC, id LIMIT 1000`, org.ID, st.ID)
		if err != nil {
			return fmt.Errorf("list decrypt grants: %w", err)
		}
		defer rows.Close()
		for rows.Next() {
			var (
				g                DecryptGrant
				fields           string
				created          int64
				expires, revoked sql.NullInt64
			)
			if err := rows.Scan(&g.ID, &g.OrgID, &g.StudyID, &g.SiteID, &g.AccountID, &fields, &g.Reason,
				&g.GrantedBy, &created, &expires, &revoked); err != nil {
				return fmt.Errorf("list decrypt grants: %w", err)
			}
			g.Fields = parseFields(fields)
			for name := range strings.SplitSeq(fields, ",") {
				if strings.Contains(name, ".") {
					g.Fields = append(g.Fields, Field(name))
				}
			}
			g.CreatedAt = time.UnixMicro(created)
			if expires.Valid {
				g.ExpiresAt = time.UnixMicro(expires.Int64)
			}
			if revoked.Valid {
				g.RevokedAt = time.UnixMicro(revoked.Int64)
			}
			out = append(out, g)
		}
		return rows.Err()
	})
	return out, err
}

func parseFields(s string) []Field {
	var out []Field
	for name := range strings.SplitSeq(s, ",") {
		if f, err := ParseField(name); err == nil && f.Sensitive() {
			out = append(out, f)
		}
	}
	return out
}

// GrantedFormFields reports which fields of the study's forms (form.field)
// the account may open now at site: those its live decrypt grants for the
// study name, where they cover the site.
func GrantedFormFields(ctx context.Context, q sqldb.Querier, accountID, orgID, studyID, siteID string, now time.Time) (map[string]bool, error) {
	rows, err := q.QueryContext(ctx, `SELECT fields FROM decrypt_grants
		WHERE org_id = $1 AND study_id = $2 AND account_id = $3 AND (site_id IS NULL OR site_id = $4)
		AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > $5)`,
		orgID, studyID, accountID, siteID, now.UnixMicro())
	if err != nil {
		return nil, fmt.Errorf("read decrypt grants: %w", err)
	}
	defer rows.Close()
	out := map[string]bool{}
	for rows.Next() {
		var fields string
		if err := rows.Scan(&fields); err != nil {
			return nil, fmt.Errorf("read decrypt grants: %w", err)
		}
		for name := range strings.SplitSeq(fields, ",") {
			if strings.Contains(name, ".") {
				out[name] = true
			}
		}
	}
	return out, rows.Err()
}

// grantedFields reports which sensitive fields of p the account may open
// now: those of its live grants for p's study that cover p's site.
func grantedFields(ctx context.Context, q sqldb.Querier, accountID string, p Participant, now time.Time) (map[Field]bool, error) {
	rows, err := q.QueryContext(ctx, `SELECT fields FROM decrypt_grants
		WHERE org_id = $1 AND study_id = $2 AND account_id = $3 AND (site_id IS NULL OR site_id = $4)
		AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > $5)`,
		p.OrgID, p.StudyID, accountID, p.SiteID, now.UnixMicro())
	if err != nil {
		return nil, fmt.Errorf("read decrypt grants: %w", err)
	}
	defer rows.Close()
	out := map[Field]bool{}
	for rows.Next() {
		var fields string
		if err := rows.Scan(&fields); err != nil {
			return nil, fmt.Errorf("read decrypt grants: %w", err)
		}
		for _, f := range parseFields(fields) {
			out[f] = true
		}
	}
	return out, rows.Err()
}
