package sqldb

import (
	"context"
	"database/sql"
	"time"
)

// AcquireLease takes or renews the named lease (table leases) for holder
// until now+ttl and reports whether holder has it: one node of several
// runs a background job. A lease held by another holder is taken once it
// has expired, or when it ends further ahead than its holder's renewals
// can have set it (beyond now+2·ttl): written by a clock that ran fast, it
// would otherwise stand until the wall clock caught up. The margin lets
// nodes whose clocks differ by less than ttl keep their turns.
func AcquireLease(ctx context.Context, db *DB, name, holder string, ttl time.Duration, now int64) (bool, error) {
	var got string
	err := db.InTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `INSERT INTO leases (name, holder, expires_at) VALUES ($1, $2, $3)
			ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
			WHERE leases.holder = excluded.holder OR leases.expires_at <= $4 OR leases.expires_at > $5`,
			name, holder, now+ttl.Microseconds(), now, now+2*ttl.Microseconds()); err != nil {
			return err
		}
		return tx.QueryRowContext(ctx, `SELECT holder FROM leases WHERE name = $1`, name).Scan(&got)
	})
	return got == holder, err
}

// ReleaseLease gives the lease up, so that another node need not wait for
// it to expire.
func ReleaseLease(ctx context.Context, db *DB, name, holder string) error {
	_, err := db.ExecContext(ctx, `DELETE FROM leases WHERE name = $1 AND holder = $2`, name, holder)
	return err
}
