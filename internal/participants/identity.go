package participants

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/custodia/custodia/internal/ratelimit"

	"github.com/custodia/custodia/internal/accounts"
	"github.com/custodia/custodia/internal/authz"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/gate"
	"github.com/custodia/custodia/internal/ids"
	"github.com/custodia/custodia/internal/keys"
	"github.com/custodia/custodia/internal/sqldb"
)

// Field names one identifying field. Its name is also the column of the
// identities table and the last part of the sealed value's context.
type Field string

const (
	Name       Field = "name"
	BirthDate  Field = "birth_date"
	Email      Field = "email"
	Phone      Field = "phone"
	NationalID Field = "national_id"
)

// Fields lists the identifying fields in the order answers show them.
var Fields = []Field{Name, BirthDate, Email, Phone, NationalID}

// Sensitive reports whether f opens only under a decrypt grant (CRY-06):
// the national id identifies a person outright and across registries, and
// the birth date all but does so together with any other field.
func (f Field) Sensitive() bool { return f == BirthDate || f == NationalID }

// SensitiveFields lists the fields a decrypt grant can open.
func SensitiveFields() []Field { return []Field{BirthDate, NationalID} }

// ParseField checks a field named by a request.
func ParseField(s string) (Field, error) {
	for _, f := range Fields {
		if string(f) == s {
			return f, nil
		}
	}
	return "", errs.E(errs.Invalid, "unknown identity field (want one of %s)", joinFields(Fields))
}

// Identity is identifying data by field; a field missing or empty was not
// given.
type Identity map[Field]string

// check validates and normalizes every given field. Its errors name the
// field, never the value.
func (id Identity) check(now time.Time) (Identity, error) {
	out := Identity{}
	for f, v := range id {
		if _, err := ParseField(string(f)); err != nil {
			return nil, err
		}
		v = strings.TrimSpace(v)
		if v == "" {
			continue
		}
		if !utf8.ValidString(v) || strings.ContainsFunc(v, unicode.IsControl) {
			return nil, errs.E(errs.Invalid, "%s must be text without control characters", f)
		}
		var err error
		switch f {
		case Name:
			if utf8.RuneCountInString(v) > 200 {
				err = errs.E(errs.Invalid, "name must be at most 200 characters")
			}
		case BirthDate:
			d, perr := time.Parse(time.DateOnly, v)
			switch {
			case perr != nil:
				err = errs.E(errs.Invalid, "birth_date must be a date written YYYY-MM-DD")
			case d.Year() < 1880 || d.After(now.UTC()):
				err = errs.E(errs.Invalid, "birth_date must be a past date, from 1880 on")
			}
		case Email:
			if v, err = accounts.NormalizeEmail(v); err != nil {
				err = errs.E(errs.Invalid, "email must be a valid e-mail address")
			}
		case Phone:
			digits := 0
			for _, r := range v {
				switch {
				case r >= '0' && r <= '9':
					digits++
				case strings.ContainsRune("+-(). ", r):
				default:
					err = errs.E(errs.Invalid, "phone may hold digits, spaces and + - ( ) . only")
				}
			}
			if err == nil && (digits < 5 || digits > 20 || len(v) > 32) {
				err = errs.E(errs.Invalid, "phone must have 5 to 20 digits")
			}
		case NationalID:
			for _, r := range v {
				if !(r < utf8.RuneSelf && (unicode.IsLetter(r) || unicode.IsDigit(r)) || strings.ContainsRune(" -./", r)) {
					err = errs.E(errs.Invalid, "national_id may hold letters, digits, spaces and - . / only")
					break
				}
			}
			if err == nil && (len(v) > 64 || normalizeNationalID(v) == "") {
				err = errs.E(errs.Invalid, "national_id must have 1 to 64 letters or digits")
			}
		}
		if err != nil {
			return nil, err
		}
		out[f] = v
	}
	return out, nil
}

// normalizeNationalID is the form the blind index is taken of: letters and
// digits only, upper case, so that "123-45 678" and "12345678" match.
func normalizeNationalID(v string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= '0' && r <= '9', r >= 'A' && r <= 'Z':
			return r
		case r >= 'a' && r <= 'z':
			return r - 'a' + 'A'
		}
		return -1
	}, v)
}

// sealedAt is where a participant's field belongs: a sealed value opens
// only for this organization, study, pseudonym and field (CRY-05).
func sealedAt(p Participant, f Field) keys.Context {
	return keys.Context{OrgID: p.OrgID, StudyID: p.StudyID, RecordID: p.Pseudonym, Field: "identity." + string(f)}
}

// indexField names the blind index of national ids; the index is scoped to
// the study, so one person may take part in several studies.
const indexField = "identity.national_id"

// errDuplicate answers a second enrolment of one national id in a study.
var errDuplicate = errs.E(errs.Conflict, "a participant with this national id is enrolled in this study already")

// Enrol enrols a participant at a site and returns their record. Identity
// fields are optional; those given are sealed under the participant's new
// key in the identity database (CRY-03, CRY-09) and only their names enter
// the audit event.
func (s *Service) Enrol(ctx context.Context, a gate.Actor, slug, studyID, siteID string, id Identity) (Participant, error) {
	var p Participant
	err := s.Gate.Do(ctx, a, gate.Slug(slug), "participant.enrol", func(t *gate.Tx) error {
		org := t.Org()
		t.Object("site", siteID)
		if err := t.Authorize(authz.ParticipantEnrol, authz.Resource{OrgID: org.ID, StudyID: studyID, SiteID: siteID}); err != nil {
			return err
		}
		if err := s.paceEnrolment(t.Subject.AccountID, org.ID); err != nil {
			return err
		}
		clean, err := id.check(s.now())
		if err != nil {
			return err
		}
		state := IdentityNone
		if len(clean) > 0 {
			state = IdentityRecorded
		}
		// The insert finds the site of the study, by the participants'
		// foreign key, or answers that it is not there.
		if p, err = insert(ctx, t, org.ID, studyID, siteID, ids.New(), state); err != nil {
			return err
		}
		if len(clean) > 0 {
			it, err := t.Identity(ctx)
			if err != nil {
				return err
			}
			if err := storeIdentity(ctx, it, p, clean); err != nil {
				return err
			}
		}
		t.Object("participant", p.Pseudonym)
		t.Participant(p.Pseudonym)
		var given []Field
		for _, f := range Fields {
			if _, ok := clean[f]; ok {
				given = append(given, f)
			}
		}
		t.Detail("identity_fields", joinFields(given))
		return nil
	})
	return p, err
}

// storeIdentity seals the fields under the participant's key and stores
// them, with the national id's blind index, in the identity transaction.
func storeIdentity(ctx context.Context, it *gate.IdentityTx, p Participant, clean Identity) error {
	v := it.Vault()
	var index any
	if nid, ok := clean[NationalID]; ok {
		tok, err := v.BlindIndex(ctx, keys.StudyScope(p.OrgID, p.StudyID), indexField, []byte(normalizeNationalID(nid)))
		if err != nil {
			return err
		}
		// A national id enrolled in the study already is refused by the
		// identities' unique index, at the insert below; the request's
		// savepoint then takes back the key made for it.
		index = tok
	}
	scope := keys.ParticipantScope(p.OrgID, p.Pseudonym)
	if err := v.Create(ctx, scope); err != nil {
		return err
	}
	sealed := map[Field][]byte{}
	for f, val := range clean {
		b, err := v.Seal(ctx, scope, sealedAt(p, f), []byte(val))
		if err != nil {
			return err
		}
		sealed[f] = b
	}
	_, err := it.ExecContext(ctx, `INSERT INTO identities
		(participant_id, org_id, study_id, name, birth_date, email, phone, national_id, national_id_index, created_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
		p.Pseudonym, p.OrgID, p.StudyID, nullBytes(sealed[Name]), nullBytes(sealed[BirthDate]), nullBytes(sealed[Email]),
		nullBytes(sealed[Phone]), nullBytes(sealed[NationalID]), index, sqldb.Now())
	if sqldb.IsUniqueViolation(err) {
		return errDuplicate
	}
	if err != nil {
		return errs.Wrap(errs.Unavailable, err, "the identity database is unavailable, so the request was not carried out")
	}
	return nil
}

func nullBytes(b []byte) any {
	if b == nil {
		return nil
	}
	return b
}

// sealedIdentity reads the sealed fields of a participant, or reports
// found == false.
func sealedIdentity(ctx context.Context, q sqldb.Querier, p Participant) (map[Field][]byte, bool, error) {
	var cols [5][]byte
	err := q.QueryRowContext(ctx, `SELECT name, birth_date, email, phone, national_id FROM identities
		WHERE participant_id = $1 AND org_id = $2 AND study_id = $3`, p.Pseudonym, p.OrgID, p.StudyID).
		Scan(&cols[0], &cols[1], &cols[2], &cols[3], &cols[4])
	if errors.Is(err, sql.ErrNoRows) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, errs.Wrap(errs.Unavailable, err, "the identity database is unavailable, so the request was not carried out")
	}
	out := map[Field][]byte{}
	for i, f := range Fields {
		if cols[i] != nil {
			out[f] = cols[i]
		}
	}
	return out, true, nil
}

// Revealed is the answer to a re-identification.
type Revealed struct {
	Participant Participant
	// State is the participant's identity state; values exist only when it
	// is IdentityRecorded.
	State IdentityState
	// Values holds the fields shown; Shown lists them, and Withheld the
	// sensitive fields that exist but were not opened, for want of a
	// decrypt grant (CRY-06).
	Values   map[Field]string
	Shown    []Field
	Withheld []Field
	// Identifiers are the values of the study's identifier fields
	// (form.field) shown; IdentifiersWithheld the sensitive ones not
	// opened, for want of a decrypt grant naming them.
	Identifiers         map[string]string
	IdentifiersWithheld []string
}

// RevealsPerHour is how many participants one account may re-identify in an
// hour; past it Reveal answers RateLimited, recorded as a failure.
var RevealsPerHour = 120

// Reveal re-identifies a participant (CRY-09): it needs identity.reveal at
// the participant's site and a fresh confirmation of the requester
// (ACL-09), and is a security event naming the participant and the fields
// shown and withheld. Sensitive fields open only under a decrypt grant.
func (s *Service) Reveal(ctx context.Context, a gate.Actor, slug, studyID, siteID, pseudonym string) (Revealed, error) {
	var out Revealed
	err := s.Gate.Do(ctx, a, gate.Slug(slug), "identity.reveal", func(t *gate.Tx) error {
		p, err := authorizeAt(ctx, t, authz.IdentityReveal, studyID, siteID, pseudonym, "re-identification is not among your permissions here")
		if err != nil {
			return err
		}
		if err := t.RequireStepUp(); err != nil {
			return err
		}
		t.Security()
		// Re-identification one participant at a time is a person's work;
		// more than RevealsPerHour is a harvest (ASVS V2.4.1).
		if err := (&ratelimit.Limiter{DB: t, Now: s.now}).Check(ctx, ratelimit.Rule{
			Bucket: "identity.reveal:account:" + t.Subject.AccountID, Limit: RevealsPerHour, Window: time.Hour}); err != nil {
			return err
		}
		out = Revealed{Participant: p, State: p.Identity, Values: map[Field]string{}}
		t.Detail("identity", string(p.Identity))
		if p.Identity != IdentityRecorded {
			return nil
		}
		granted, err := grantedFields(ctx, t, t.Subject.AccountID, p, s.now())
		if err != nil {
			return err
		}
		// A field hidden from the requester's roles in this study is left
		// out altogether, neither shown nor withheld (ACL-04).
		visible, err := visibleFields(ctx, t, p)
		if err != nil {
			return err
		}
		it, err := t.Identity(ctx)
		if err != nil {
			return err
		}
		sealed, found, err := sealedIdentity(ctx, it, p)
		if err != nil {
			return err
		}
		if !found {
			return errs.E(errs.Unavailable, "the identity data of this participant are missing, so nothing was served")
		}
		for _, f := range Fields {
			b, ok := sealed[f]
			switch {
			case !ok || !visible[f]:
				continue
			case f.Sensitive() && !granted[f]:
				out.Withheld = append(out.Withheld, f)
				continue
			}
			pt, err := it.Vault().Open(ctx, sealedAt(p, f), b)
			if errors.Is(err, keys.ErrKeyDestroyed) {
				// Only erasure destroys a participant key, and it marks the
				// clinical record first; answer as that mark will.
				out = Revealed{Participant: p, State: IdentityErased, Values: map[Field]string{}}
				t.Detail("identity", string(IdentityErased))
				return nil
			}
			if err != nil {
				return err
			}
			out.Values[f] = string(pt)
			out.Shown = append(out.Shown, f)
		}
		t.Detail("shown", joinFields(out.Shown))
		t.Detail("withheld", joinFields(out.Withheld))
		formGrants, err := GrantedFormFields(ctx, t, t.Subject.AccountID, p.OrgID, p.StudyID, p.SiteID, s.now())
		if err != nil {
			return err
		}
		return revealIdentifiers(ctx, t, it, p, formGrants, &out)
	})
	if err != nil {
		return Revealed{}, err
	}
	return out, nil
}

// visibleFields reports which identity fields the requester may see of p
// under the study's field-visibility rules (ACL-04), where the fields are
// named identity.<field>.
func visibleFields(ctx context.Context, t *gate.Tx, p Participant) (map[Field]bool, error) {
	names := make([]string, len(Fields))
	for i, f := range Fields {
		names[i] = "identity." + string(f)
	}
	shown, err := t.VisibleFields(ctx, authz.IdentityReveal, resourceOf(p), names)
	if err != nil {
		return nil, err
	}
	out := map[Field]bool{}
	for _, n := range shown {
		out[Field(strings.TrimPrefix(n, "identity."))] = true
	}
	return out, nil
}

// Erase erases a participant's identifying data for good (LIFE-03): the
// clinical record is marked erased and the event committed first, then the
// participant's key is destroyed and the sealed values deleted from the
// identity database (see gate.IdentityTx); the pseudonymous record
// remains. Destroying the key retires the participant's erasure epoch and
// moves the other keys of the epoch to a fresh one (keys/epochs.go); once
// the identity transaction has committed, the key provider destroys the
// retired epoch, so that no backup taken before opens the participant's
// key either. A provider without erasure epochs makes the erasure refuse.
// It needs identity.erase and a fresh confirmation (ACL-09), and repeating
// it repeats the destruction, so a request that failed half way is
// completed by asking again (or by Sweep).
func (s *Service) Erase(ctx context.Context, a gate.Actor, slug, studyID, siteID, pseudonym string) (Participant, error) {
	var p Participant
	err := s.Gate.DoAlone(ctx, a, gate.Slug(slug), "identity.erase", func(t *gate.Tx) error {
		var err error
		if p, err = authorizeAt(ctx, t, authz.IdentityErase, studyID, siteID, pseudonym, "erasure is not among your permissions here"); err != nil {
			return err
		}
		if err := t.RequireStepUp(); err != nil {
			return err
		}
		t.Security()
		t.Detail("previous", string(p.Identity))
		if p.Identity != IdentityErased {
			now := sqldb.Now()
			if _, err := t.ExecContext(ctx, `UPDATE participants SET identity = 'erased', erased_at = $1
				WHERE org_id = $2 AND id = $3`, now, p.OrgID, p.Pseudonym); err != nil {
				return fmt.Errorf("mark participant erased: %w", err)
			}
			p.Identity, p.ErasedAt = IdentityErased, time.UnixMicro(now)
		}
		it, err := t.Identity(ctx)
		if err != nil {
			return err
		}
		it.CommitAfterEvent()
		return shred(ctx, it, it.Vault(), p.OrgID, p.Pseudonym)
	})
	if err != nil {
		return p, err
	}
	if _, err := s.destroyRetiredEpochs(ctx, s.Gate.IdentityKeys()); err != nil {
		return p, errs.Wrap(errs.Unavailable, err, "the erasure is recorded, but the key of its erasure epoch is not destroyed yet, so backups may still hold the identity; ask again, or the next sweep completes it")
	}
	return p, nil
}

// shred destroys a participant's key and deletes their sealed values.
func shred(ctx context.Context, q sqldb.Querier, v interface {
	Destroy(context.Context, keys.Scope) error
}, orgID, pseudonym string) error {
	if err := v.Destroy(ctx, keys.ParticipantScope(orgID, pseudonym)); err != nil {
		return err
	}
	// The row holds the identifier fields too.
	if _, err := q.ExecContext(ctx, `DELETE FROM identities WHERE participant_id = $1 AND org_id = $2`, pseudonym, orgID); err != nil {
		return errs.Wrap(errs.Unavailable, err, "the identity database is unavailable, so the request was not carried out")
	}
	return nil
}

// paceEnrolment counts an enrolment by account in org (EnrolmentsPerHour).
func (s *Service) paceEnrolment(account, org string) error {
	if s.EnrolmentsPerHour <= 0 {
		return nil
	}
	if err := s.pace.Check(ratelimit.Rule{Bucket: "participant.enrol:account:" + account, Limit: s.EnrolmentsPerHour, Window: time.Hour}); err != nil {
		return err
	}
	return s.pace.Check(ratelimit.Rule{Bucket: "participant.enrol:org:" + org, Limit: 10 * s.EnrolmentsPerHour, Window: time.Hour})
}
