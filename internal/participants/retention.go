package participants

import (
	"context"
	"errors"

	"github.com/custodia/custodia/internal/authz"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/gate"
	"github.com/custodia/custodia/internal/keys"
)

// Retention and data subjects' requests (LIFE-02; package retention keeps
// the notices, holds and bundles): a participant inactive past their
// organization's period is purged as a deleted one is (PurgeInactive), and
// a data subject's export reads their identity in full (SubjectIdentity).

// PurgeInactive purges a participant for good while due says they are
// due, in the two steps of Purge, recorded as action: their identity
// erased (the key destroyed), then data erases the rest and their
// relations, invitations and record go. It reports whether the purge ran;
// the retired erasure epoch is destroyed after it, so that backups taken
// before no longer open the participant either.
func (s *Service) PurgeInactive(ctx context.Context, action, orgID, pseudonym string, data PurgeData, due Due) (bool, error) {
	done, err := s.purgeOne(ctx, action, orgID, pseudonym, data, due)
	if err != nil || !done {
		return done, err
	}
	if ring := s.Gate.IdentityKeys(); ring != nil {
		if _, err := s.destroyRetiredEpochs(ctx, ring); err != nil {
			return true, errs.Wrap(errs.Unavailable, err, "the purge is recorded, but the key of its erasure epoch is not destroyed yet; the next sweep completes it")
		}
	}
	return true, nil
}

// AuthorizeSubject allows a data subject's export (authz.SubjectExport) of
// the participant a request names by study, site and pseudonym, and finds
// them; those who read the participant but may not export are told so
// (Forbidden), anyone else finds nothing (ACL-08).
func AuthorizeSubject(ctx context.Context, t *gate.Tx, studyID, siteID, pseudonym string) (Participant, error) {
	return authorizeAt(ctx, t, authz.SubjectExport, studyID, siteID, pseudonym,
		"exporting everything about a person is not among your permissions here")
}

// SubjectIdentity is a participant's identity as a data subject's export
// holds it: every field and identifier, sensitive or not, opened.
type SubjectIdentity struct {
	State       IdentityState     `json:"state"`
	Values      map[Field]string  `json:"values,omitempty"`
	Identifiers map[string]string `json:"identifiers,omitempty"`
}

// ReadSubjectIdentity opens the whole identity of p for a data subject's
// export, in the request's identity transaction. The work must be allowed
// authz.SubjectExport on p (AuthorizeSubject): the export is the one read
// of a person's identity that neither a decrypt grant nor field visibility
// narrows, since it is for the person themselves. An erased identity
// answers its state only.
func ReadSubjectIdentity(ctx context.Context, t *gate.Tx, p Participant) (SubjectIdentity, error) {
	if !t.Allowed(authz.SubjectExport, resourceOf(p)) {
		return SubjectIdentity{}, gate.ErrDenied
	}
	out := SubjectIdentity{State: p.Identity}
	if p.Identity != IdentityRecorded {
		return out, nil
	}
	it, err := t.Identity(ctx)
	if err != nil {
		return SubjectIdentity{}, err
	}
	sealed, found, err := sealedIdentity(ctx, it, p)
	if err != nil {
		return SubjectIdentity{}, err
	}
	if found {
		out.Values = map[Field]string{}
		for _, f := range Fields {
			b, ok := sealed[f]
			if !ok {
				continue
			}
			pt, err := it.Vault().Open(ctx, sealedAt(p, f), b)
			if errors.Is(err, keys.ErrKeyDestroyed) {
				return SubjectIdentity{State: IdentityErased}, nil
			}
			if err != nil {
				return SubjectIdentity{}, err
			}
			out.Values[f] = string(pt)
		}
	}
	doc, _, err := readIdentifiers(ctx, it, p)
	if errors.Is(err, keys.ErrKeyDestroyed) {
		return SubjectIdentity{State: IdentityErased}, nil
	}
	if err != nil {
		return SubjectIdentity{}, err
	}
	if len(doc) > 0 {
		out.Identifiers = map[string]string{}
		for name, v := range doc {
			out.Identifiers[name] = v.Value
		}
	}
	return out, nil
}
