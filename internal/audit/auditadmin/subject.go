package auditadmin

import (
	"context"

	"github.com/custodia/custodia/internal/authz"
	"github.com/custodia/custodia/internal/gate"
	"github.com/custodia/custodia/internal/participants"
)

// SubjectAccessLog reads, for a data subject's export (LIFE-02), the whole
// access log of participant p in the request's transaction, oldest first,
// told as the participant reads it at /me/access-log: who by role, what
// in plain words, never a name or an address. The actions of self, the
// participant's own account ("" for none), are left out, as there. The
// work must be allowed authz.SubjectExport on p.
func SubjectAccessLog(ctx context.Context, t *gate.Tx, p participants.Participant, self string) ([]Access, error) {
	r := authz.Resource{OrgID: p.OrgID, StudyID: p.StudyID, SiteID: p.SiteID, ParticipantID: p.Pseudonym}
	if !t.Allowed(authz.SubjectExport, r) {
		return nil, gate.ErrDenied
	}
	if self == "" {
		self = "-" // no account is "-"
	}
	evs, err := othersAccesses(ctx, t, p, self, "", -1)
	if err != nil {
		return nil, err
	}
	out := make([]Access, 0, len(evs))
	name := t.Org().Name
	for i := len(evs) - 1; i >= 0; i-- {
		out = append(out, accessOf(evs[i], name))
	}
	return out, nil
}
