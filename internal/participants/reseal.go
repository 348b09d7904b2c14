package participants

import (
	"context"
	"errors"
	"slices"
	"strconv"

	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/gate"
	"github.com/custodia/custodia/internal/keys"
)

// Identities are the sealed identity values of an organization as a
// rotation re-encrypts them (keyadmin.Resealer, ASVS V11.2.2): after a
// rotation of the data keys, every value is sealed again under its
// participant key's new version and the current algorithm, so no value
// stays under a key or an algorithm that was replaced.
type Identities struct {
	Gate *gate.Gate // with the identity database and its keyring
}

// Name names the store in a rotation's progress and events.
func (Identities) Name() string { return "identity values" }

// Reseal re-encrypts the identity values of up to limit participants of
// org after the pseudonym cursor ("" is the start), in one operator
// transaction recorded as identity.reseal. A value that does not open
// (damaged, moved) is left as it is and counted as failed; it is reported
// by the rotation and found by every read.
func (s Identities) Reseal(ctx context.Context, orgID, cursor string, limit int) (keys.Batch, error) {
	var out keys.Batch
	err := s.Gate.Operate(ctx, "identity.reseal", func(o *gate.OpTx) error {
		out = keys.Batch{Cursor: cursor}
		o.Org(orgID)
		it, err := o.Identity(ctx)
		if err != nil {
			return err
		}
		rows, err := it.QueryContext(ctx, `SELECT participant_id, study_id, name, birth_date, email, phone, national_id, identifiers
			FROM identities WHERE org_id = $1 AND participant_id > $2 ORDER BY participant_id LIMIT $3`, orgID, cursor, limit)
		if err != nil {
			return errs.Wrap(errs.Unavailable, err, "read identities")
		}
		type row struct {
			p           Participant
			values      [5][]byte
			identifiers []byte
		}
		var page []row
		for rows.Next() {
			r := row{p: Participant{OrgID: orgID}}
			if err := rows.Scan(&r.p.Pseudonym, &r.p.StudyID, &r.values[0], &r.values[1], &r.values[2], &r.values[3], &r.values[4], &r.identifiers); err != nil {
				rows.Close()
				return errs.Wrap(errs.Unavailable, err, "read identities")
			}
			page = append(page, r)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return errs.Wrap(errs.Unavailable, err, "read identities")
		}
		for _, r := range page {
			out.Cursor = r.p.Pseudonym
			out.Visited++
			scope := keys.ParticipantScope(orgID, r.p.Pseudonym)
			// The identity's fields, then the identifier document (column
			// identifiers), each resealed in its own column.
			for i, f := range append(slices.Clone(Fields), "identifiers") {
				value, at := r.identifiers, identifiersAt(r.p)
				if i < len(r.values) {
					value, at = r.values[i], sealedAt(r.p, f)
				}
				if value == nil {
					continue
				}
				sealed, changed, err := it.Reseal(ctx, scope, at, value)
				switch {
				case errors.Is(err, keys.ErrKeyDestroyed):
					continue // erased: the sweep removes what is left
				case errors.Is(err, keys.ErrCorrupt):
					out.Failed++
					continue
				case err != nil:
					return err
				case !changed:
					continue
				}
				// The column is one of Fields or identifiers, never input.
				if _, err := it.ExecContext(ctx, `UPDATE identities SET `+string(f)+` = $1 WHERE participant_id = $2 AND `+string(f)+` = $3`,
					sealed, r.p.Pseudonym, value); err != nil {
					return errs.Wrap(errs.Unavailable, err, "store a re-encrypted identity value")
				}
				out.Rewrapped++
			}
		}
		out.Done = len(page) < limit
		o.Detail("participants_count", strconv.Itoa(out.Visited))
		o.Detail("values_resealed_count", strconv.Itoa(out.Rewrapped))
		o.Detail("values_failed_count", strconv.Itoa(out.Failed))
		return nil
	})
	return out, err
}
