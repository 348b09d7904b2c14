package gate

import (
	"context"

	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/keys"
	"github.com/custodia/custodia/internal/sqldb"
)

// Account runs work about an account for a requester who may not have
// proved yet that they hold it: a sign-in and its second step, a one-time
// link, a session's end, a second factor's set-up. from tells where the
// request comes from and, once known, the account and session; the work
// names the account it finds (OpTx.As), may record another action than the
// one it began as (OpTx.Action) and records a refusal that must stand
// (OpTx.Outcome): a wrong password commits its count towards the lockout
// and the spent rate-limit budget together with its failure event. Like
// Own, it commits together with concurrent requests.
func (g *Gate) Account(ctx context.Context, from Actor, action string, work func(o *OpTx) error) error {
	return g.unscoped(ctx, g.lane(), audit.Event{Action: action, ActorAccount: from.AccountID, ActorSession: from.SessionID,
		RemoteAddr: from.RemoteAddr, UserAgent: from.UserAgent}, false, work)
}

// Attempt is Account for an attempt that counts against limits and
// lockouts many requests share: a sign-in and its second step, a one-time
// link, an access token presented. Such work changes a few rows that
// concurrent requests change too (the rate-limit buckets of one source
// address, the failure count of one account), and holds them until its
// batch commits. On PostgreSQL the gate runs several batches at once, and
// two of them each waiting for a row the other holds would deadlock, failing
// every request of one batch. Attempts therefore all run in one lane: they
// still commit together, one after another in its batches, and wait for
// other lanes' work only as long as one of those batches runs.
func (g *Gate) Attempt(ctx context.Context, from Actor, action string, work func(o *OpTx) error) error {
	return g.unscoped(ctx, g.lanes[0], audit.Event{Action: action, ActorAccount: from.AccountID, ActorSession: from.SessionID,
		RemoteAddr: from.RemoteAddr, UserAgent: from.UserAgent}, false, work)
}

// As names the account, and the session if there is one, the work acts
// for, once it found them (e.g. by the e-mail address of a sign-in).
func (o *OpTx) As(accountID, sessionID string) {
	o.event.ActorAccount, o.event.ActorSession = accountID, sessionID
}

// Action records the work as action instead of the one it began as: a
// sign-in that turns out to need a second factor is recorded as the
// challenge it issued.
func (o *OpTx) Action(action string) { o.event.Action = action }

// Outcome records the work's outcome: a refusal (audit.Failure,
// audit.Denied) whose work must commit all the same, such as a failed
// attempt counted towards a lockout. Work that returns an error commits
// nothing; work that returns nil commits with the outcome set here
// (audit.Success unless told).
func (o *OpTx) Outcome(out audit.Outcome) { o.event.Outcome = out }

// Secrets returns the vault of an account's secrets (second-factor
// secrets, phone numbers, one-time codes), which wraps them with the
// key-encryption key, each bound to its own associated data.
func (o *OpTx) Secrets() (*Secrets, error) {
	if o.gate.keys == nil || o.gate.keys.KEK == nil {
		return nil, errNoKeys
	}
	return &Secrets{kek: o.gate.keys.KEK}, nil
}

// Secrets seals and opens an account's secrets; work never holds the key
// that does.
type Secrets struct{ kek keys.KEK }

// Seal wraps secret, bound to ad, and names the key-encryption key version
// that wrapped it, to be stored beside it (CRY-07).
func (s *Secrets) Seal(ctx context.Context, secret, ad []byte) (sealed []byte, kekID string, err error) {
	sealed, err = s.kek.Wrap(ctx, secret, ad)
	if err != nil {
		return nil, "", keysUnavailable(err)
	}
	return sealed, s.kek.ID(), nil
}

// Open unwraps what Seal sealed for the same ad.
func (s *Secrets) Open(ctx context.Context, sealed, ad []byte) ([]byte, error) {
	secret, err := s.kek.Unwrap(ctx, sealed, ad)
	if err != nil {
		return nil, keysUnavailable(err)
	}
	return secret, nil
}

// Identify runs read, unaudited, on connections that refuse every write:
// for the lookups that tell who a request comes from before any work can
// be recorded for them (the session or access token presented, the account
// an e-mail address names, a pending challenge), and for an account's own
// settings that sign-in needs. It changes nothing and waits for no writer.
// Each statement reads one consistent state, without a transaction around
// them (on PostgreSQL a BEGIN and a ROLLBACK, two round trips, for every
// request): a lookup of several statements may see a change committed
// between two of them, as a request a moment earlier or later would have
// seen it. Only the packages that authenticate requests call it
// (TestOneDoor).
func (g *Gate) Identify(ctx context.Context, read func(q sqldb.Querier) error) error {
	return sqldb.Unavailable(read(g.db.Reader()), "")
}

// secrets (OpTx.Secrets): whether the gate has a key-encryption key. A
// service asks it to refuse at once, before any work, a step that would
// need one.
func (g *Gate) SecretsAvailable() bool {
	return g.keys != nil && g.keys.KEK != nil
}

// Stamp runs work that keeps the bookkeeping of authentication, which the
// trail does not record: when a session or an access token was last used,
// and the rate-limit budgets an attempt spends before its outcome is known
// (the outcome is recorded through Attempt). It commits with concurrent
// requests, in the lane of attempts, whose rows it shares. It records no
// event, so only the packages that authenticate requests may call it
// (TestOneDoor), and only for such bookkeeping.
func (g *Gate) Stamp(ctx context.Context, work func(q sqldb.Querier) error) error {
	return g.answer(g.lanes[0].do(ctx, false, func(j *job) error {
		if err := j.begin(); err != nil {
			return err
		}
		if err := work(txQuerier{j.b.clinical, g.db}); err != nil {
			j.undo()
			return err
		}
		return j.keep()
	}))
}
