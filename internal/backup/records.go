package backup

import (
	"context"
	"database/sql"
	"errors"
	"path/filepath"
	"time"

	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/sqldb"
)

// Record notes a written backup in the clinical database, in q, the
// transaction that records its event.
func Record(ctx context.Context, q sqldb.Querier, res Result) error {
	_, err := q.ExecContext(ctx, `INSERT INTO backups (name, location, created_at, size, sha256) VALUES ($1, $2, $3, $4, $5)`,
		filepath.Base(res.Where), res.Where, res.Manifest.Created.UnixMicro(), res.FileSize, res.FileSHA256)
	if err != nil {
		return errs.Wrap(errs.Unavailable, err, "record the backup")
	}
	return nil
}

// Last is the newest backup recorded, if any.
type Last struct {
	Name     string
	Location string
	Created  time.Time
}

// Latest reads the newest backup recorded; ok is false when none is.
func Latest(ctx context.Context, q sqldb.Querier) (last Last, ok bool, err error) {
	var at int64
	err = q.QueryRowContext(ctx, `SELECT name, location, created_at FROM backups WHERE removed_at IS NULL ORDER BY created_at DESC LIMIT 1`).
		Scan(&last.Name, &last.Location, &at)
	if errors.Is(err, sql.ErrNoRows) {
		return Last{}, false, nil
	}
	if err != nil {
		return Last{}, false, errs.Wrap(errs.Unavailable, err, "read the newest backup")
	}
	last.Created = time.UnixMicro(at).UTC()
	return last, true, nil
}
