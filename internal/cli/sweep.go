package cli

import (
	"context"
	"log/slog"
	"time"

	"github.com/custodia/custodia/internal/consent"
	"github.com/custodia/custodia/internal/entries"
	"github.com/custodia/custodia/internal/gate"
	"github.com/custodia/custodia/internal/notify"
	"github.com/custodia/custodia/internal/participants"
	"github.com/custodia/custodia/internal/retention"
)

// sweepInterval is how often a server shreds unreachable identity data.
const sweepInterval = time.Hour

// sweepIdentities shreds, at start and then every interval (sweepInterval
// but in tests, see sweepEvery) until ctx ends, the identity data that no
// request can reach: those left by an enrolment or an erasure cut short
// between the identity and the clinical database (CRY-09, LIFE-03; see
// participants.Sweep). Then it purges the entries deleted longer than
// their retention period ago (LIFE-01; see entries.Purge), the deletions
// of form versions whose entries it erased (entries.PurgeVersions), and
// the participants deleted longer than that ago, with their identity,
// entries and files (entries.PurgeParticipants), and the files no save
// named within a day (entries.PurgeUnattachedFiles), and notices and
// purges the accounts and participants inactive past their organization's
// period (LIFE-02; retention.Sweep). Several servers may sweep at once.
func sweepIdentities(ctx context.Context, log *slog.Logger, g *gate.Gate, every time.Duration) {
	svc := &participants.Service{Gate: g}
	data := &entries.Service{Gate: g}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		n, err := svc.Sweep(ctx)
		switch {
		case err != nil && ctx.Err() == nil:
			log.Warn("identity sweep", "err", err)
		case n > 0:
			log.Info("identity sweep", "shredded", n)
		}
		purged, err := data.Purge(ctx)
		switch {
		case err != nil && ctx.Err() == nil:
			log.Warn("purge of deleted entries", "err", err)
		case purged > 0:
			log.Info("purge of deleted entries", "purged", purged)
		}
		purged, err = data.PurgeVersions(ctx)
		switch {
		case err != nil && ctx.Err() == nil:
			log.Warn("purge of deleted form versions", "err", err)
		case purged > 0:
			log.Info("purge of deleted form versions", "purged", purged)
		}
		purged, err = data.PurgeParticipants(ctx)
		switch {
		case err != nil && ctx.Err() == nil:
			log.Warn("purge of deleted participants", "err", err)
		case purged > 0:
			log.Info("purge of deleted participants", "purged", purged)
		}
		if swept, err := (&retention.Service{Gate: g}).Sweep(ctx); err != nil && ctx.Err() == nil {
			log.Warn("retention of inactive data", "err", err)
		} else if swept != (retention.Swept{}) {
			log.Info("retention of inactive data", "noticed", swept.Noticed, "ended", swept.Ended, "purged", swept.Purged)
		}
		if n, err := (&consent.Service{Gate: g}).QueueToSign(ctx); err != nil && ctx.Err() == nil {
			log.Warn("notices of consents to sign", "err", err)
		} else if n > 0 {
			log.Info("notices of consents to sign", "queued", n)
		}
		if n, err := data.QueueDueForms(ctx); err != nil && ctx.Err() == nil {
			log.Warn("notices of forms to fill in", "err", err)
		} else if n > 0 {
			log.Info("notices of forms to fill in", "queued", n)
		}
		purged, err = data.PurgeUnattachedFiles(ctx)
		switch {
		case err != nil && ctx.Err() == nil:
			log.Warn("purge of unattached files", "err", err)
		case purged > 0:
			log.Info("purge of unattached files", "purged", purged)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// noticeInterval is how often a server sends the notices that wait.
const noticeInterval = 30 * time.Second

// sendNotices sends, every noticeInterval until ctx ends, the notices that
// something waits (notify.Service.Send).
func sendNotices(ctx context.Context, log *slog.Logger, svc *notify.Service) {
	t := time.NewTicker(noticeInterval)
	defer t.Stop()
	for {
		if n, err := svc.Send(ctx); err != nil && ctx.Err() == nil {
			log.Warn("send notices", "err", err)
		} else if n > 0 {
			log.Info("send notices", "sent", n)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
