package participants

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"maps"
	"slices"
	"strings"

	"github.com/custodia/custodia/internal/authz"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/gate"
	"github.com/custodia/custodia/internal/keys"
	"github.com/custodia/custodia/internal/sqldb"
)

// Identifier fields: the fields of a study's forms that identify a
// participant (REDCap's "Identifier?": a hospital number, an address) are
// kept with the participant's identity, never among the entries: in the
// identity database, in one document per participant sealed under the
// participant's own key, so that erasure (LIFE-03) reaches them and every
// export, which reads entries only, leaves them out. They are shown on
// re-identification (Reveal), as the identity is; a sensitive one only
// under a decrypt grant naming it.

// identifierAction is the permission that shows identifier values: the
// identity's.
const identifierAction = authz.IdentityReveal

// Identifier is the value of an identifier field ("form.field"), and
// whether the field is sensitive.
type Identifier struct {
	Value     string `json:"v"`
	Sensitive bool   `json:"s,omitempty"`
}

// identifiersAt is where a participant's identifier document is sealed.
func identifiersAt(p Participant) keys.Context {
	return keys.Context{OrgID: p.OrgID, StudyID: p.StudyID, RecordID: p.Pseudonym, Field: "identity.identifiers"}
}

// StoreIdentifiers records identifier values of the participant with their
// identity, in the request's identity transaction: a value replaces the
// field's, an empty one removes it. The participant's identity is then
// recorded. A participant whose identity was erased takes none: nothing
// that identifies them is recorded again.
func StoreIdentifiers(ctx context.Context, t *gate.Tx, orgID, pseudonym string, values map[string]Identifier) error {
	p, err := ByPseudonym(ctx, t, orgID, pseudonym)
	if err != nil {
		return err
	}
	if p.Identity == IdentityErased {
		return errs.E(errs.Conflict, "this participant's identity was erased, so nothing that identifies them is recorded again")
	}
	it, err := t.Identity(ctx)
	if err != nil {
		return err
	}
	doc, exists, err := readIdentifiers(ctx, it, p)
	if err != nil {
		return err
	}
	if doc == nil {
		doc = map[string]Identifier{}
	}
	for name, v := range values {
		if v.Value == "" {
			delete(doc, name)
			continue
		}
		doc[name] = v
	}
	var sealed any
	if len(doc) > 0 {
		b, err := json.Marshal(doc)
		if err != nil {
			return errs.Wrap(errs.Internal, err, "record the identifiers")
		}
		if sealed, err = it.Vault().Seal(ctx, keys.ParticipantScope(p.OrgID, p.Pseudonym), identifiersAt(p), b); err != nil {
			return err
		}
	}
	if exists {
		_, err = it.ExecContext(ctx, `UPDATE identities SET identifiers = $1 WHERE participant_id = $2 AND org_id = $3`,
			sealed, p.Pseudonym, p.OrgID)
	} else {
		_, err = it.ExecContext(ctx, `INSERT INTO identities (participant_id, org_id, study_id, identifiers, created_at)
			VALUES ($1, $2, $3, $4, $5)`, p.Pseudonym, p.OrgID, p.StudyID, sealed, sqldb.Now())
	}
	if err != nil {
		return errs.Wrap(errs.Unavailable, err, "the identity database is unavailable, so the request was not carried out")
	}
	if p.Identity == IdentityNone {
		if _, err := t.ExecContext(ctx, `UPDATE participants SET identity = 'recorded' WHERE org_id = $1 AND id = $2 AND identity = 'none'`,
			p.OrgID, p.Pseudonym); err != nil {
			return errs.Wrap(errs.Unavailable, err, "record the participant's identity")
		}
	}
	return nil
}

// readIdentifiers opens a participant's identifier document: nil when
// there is none; exists reports whether the participant has a row of
// identity data at all.
func readIdentifiers(ctx context.Context, it *gate.IdentityTx, p Participant) (doc map[string]Identifier, exists bool, err error) {
	var sealed []byte
	err = it.QueryRowContext(ctx, `SELECT identifiers FROM identities WHERE participant_id = $1 AND org_id = $2`,
		p.Pseudonym, p.OrgID).Scan(&sealed)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return nil, false, nil
	case err != nil:
		return nil, false, errs.Wrap(errs.Unavailable, err, "the identity database is unavailable, so the request was not carried out")
	case sealed == nil:
		return nil, true, nil
	}
	b, err := it.Vault().Open(ctx, identifiersAt(p), sealed)
	if err != nil {
		return nil, true, err
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		return nil, true, errs.Wrap(errs.Internal, err, "read the identifiers")
	}
	return doc, true, nil
}

// revealIdentifiers adds a participant's identifier values to what Reveal
// answers: those the study's field rules let the requester see (ACL-04,
// named form.field), a sensitive one only under a decrypt grant naming it.
func revealIdentifiers(ctx context.Context, t *gate.Tx, it *gate.IdentityTx, p Participant, granted map[string]bool, out *Revealed) error {
	doc, _, err := readIdentifiers(ctx, it, p)
	if err != nil || len(doc) == 0 {
		return err
	}
	names := slices.Sorted(maps.Keys(doc))
	shown, err := t.VisibleFields(ctx, identifierAction, resourceOf(p), names)
	if err != nil {
		return err
	}
	out.Identifiers = map[string]string{}
	for _, name := range shown {
		v := doc[name]
		if v.Sensitive && !granted[name] {
			out.IdentifiersWithheld = append(out.IdentifiersWithheld, name)
			continue
		}
		out.Identifiers[name] = v.Value
	}
	if len(out.Identifiers) > 0 {
		t.Detail("identifiers_shown", strings.Join(slices.Sorted(maps.Keys(out.Identifiers)), ","))
	}
	if len(out.IdentifiersWithheld) > 0 {
		t.Detail("identifiers_withheld", strings.Join(out.IdentifiersWithheld, ","))
	}
	return nil
}
