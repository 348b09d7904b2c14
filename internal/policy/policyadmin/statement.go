package policyadmin

import (
	"context"
	"errors"
	"time"

	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/authz"
	"github.com/custodia/custodia/internal/backup"
	"github.com/custodia/custodia/internal/gate"
	"github.com/custodia/custodia/internal/orgs"
	"github.com/custodia/custodia/internal/policy"
	"github.com/custodia/custodia/internal/sso"
)

// Statement is what the security statement (OPS-02) shows an
// organization's administrators beside the map of controls: the
// organization's policy and the instance's live state.
type Statement struct {
	Org    orgs.Organization
	Policy policy.Security
	// Backup is the newest backup recorded (HasBackup false while none).
	Backup    backup.Last
	HasBackup bool
	// CheckpointSize and CheckpointAt describe the newest signed audit
	// checkpoint (HasCheckpoint false while none).
	CheckpointSize int64
	CheckpointAt   time.Time
	HasCheckpoint  bool
	// SSO says how the organization's people sign in through a provider
	// (AUTH-13).
	SSO string
}

// Statement reads the statement's live values, for those who may manage
// the organization's security, in one transaction.
func (s *Service) Statement(ctx context.Context, a gate.Actor, slug string) (Statement, error) {
	var st Statement
	err := s.Gate.Do(ctx, a, gate.Slug(slug), "org.statement.read", func(t *gate.Tx) error {
		st.Org = t.Org()
		t.Object("organization", st.Org.ID)
		if err := t.Authorize(authz.SecurityManage, authz.Resource{OrgID: st.Org.ID}); err != nil {
			return err
		}
		var err error
		if st.Policy, err = policy.Of(ctx, t, st.Org.ID); err != nil {
			return err
		}
		if st.Backup, st.HasBackup, err = backup.Latest(ctx, t); err != nil {
			return err
		}
		if st.CheckpointSize, st.CheckpointAt, st.HasCheckpoint, err = audit.Newest(ctx, t); err != nil {
			return err
		}
		p, _, err := sso.Load(ctx, t, st.Org.ID)
		switch {
		case errors.Is(err, sso.ErrNotConfigured):
			st.SSO = "no provider: people sign in with their password"
		case err != nil:
			return err
		default:
			st.SSO = "OpenID Connect provider " + p.Issuer + " (code flow with PKCE, issuer, audience and nonce checked)"
			if p.AcceptProviderMFA {
				st.SSO += "; its second factor (amr/acr) stands for the policy's"
			} else {
				st.SSO += "; the policy's second factor still asked"
			}
		}
		return nil
	})
	return st, err
}
