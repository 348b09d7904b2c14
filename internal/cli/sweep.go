package cli

import (
	"context"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/custodia/custodia/internal/gate"
	"github.com/custodia/custodia/internal/instance"
	"github.com/custodia/custodia/internal/keys"
	"github.com/custodia/custodia/internal/participants"
)

// sweepInterval is how often a server shreds unreachable identity data.
const sweepInterval = time.Hour

// sweepIdentities shreds, at start and then every sweepInterval until ctx
// ends, the identity data that no request can reach: those left by an
// enrolment or an erasure cut short between the identity and the clinical
// database (CRY-09, LIFE-03; see participants.Sweep). Several servers may
// sweep at once.
func sweepIdentities(ctx context.Context, log *slog.Logger, inst *instance.Instance, kek keys.KEK) {
	svc := &participants.Service{Gate: gate.New(gate.Config{
		Clinical: inst.Clinical, Identity: inst.Identity,
		IdentityKeys: &keys.Keyring{DB: inst.Identity, KEK: kek, EpochDir: filepath.Join(inst.DataDir, keys.LocalEpochsDir)},
	})}
	t := time.NewTicker(sweepInterval)
	defer t.Stop()
	for {
		n, err := svc.Sweep(ctx)
		switch {
		case err != nil && ctx.Err() == nil:
			log.Warn("identity sweep", "err", err)
		case n > 0:
			log.Info("identity sweep", "shredded", n)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
