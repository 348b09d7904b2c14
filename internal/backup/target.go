package backup

import (
	"context"
	"errors"
	"os"
	"path/filepath"

	"github.com/custodia/custodia/internal/errs"
)

// Target is where backups are kept: a folder (a mounted volume) or a
// bucket of an S3-compatible object store.
type Target interface {
	// Put keeps the finished backup file at file as name and returns its
	// location; the file is moved or removed.
	Put(ctx context.Context, file, name string) (string, error)
	// Remove removes the backup at location, one of this target's.
	Remove(ctx context.Context, location string) error
	// Holds reports whether location is one of this target's.
	Holds(location string) bool
	// Staging is the folder a backup is written in before Put: the
	// folder itself, so Put is a rename, or "" for a temporary one.
	Staging() string
	String() string
}

// Dir is the target of a folder, which must exist.
func Dir(dir string) (Target, error) {
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		return nil, errs.E(errs.Invalid, "the backup folder %s does not exist or is not a folder", dir)
	}
	return dirTarget(filepath.Clean(dir)), nil
}

// SyncDir makes a rename in dir durable.
func SyncDir(dir string) { syncDir(dir) }

// dirTarget is a folder.
type dirTarget string

func (d dirTarget) Staging() string { return string(d) }
func (d dirTarget) String() string  { return string(d) }

func (d dirTarget) Put(ctx context.Context, file, name string) (string, error) {
	final := filepath.Join(string(d), name)
	if _, err := os.Stat(final); err == nil {
		return "", errs.E(errs.Conflict, "a backup named %s exists already", final)
	}
	if err := os.Rename(file, final); err != nil {
		return "", errs.Wrap(errs.Unavailable, err, "name the backup file")
	}
	syncDir(string(d))
	return final, nil
}

func (d dirTarget) Holds(location string) bool { return filepath.Dir(location) == string(d) }

func (d dirTarget) Remove(ctx context.Context, location string) error {
	if err := os.Remove(location); err != nil && !errors.Is(err, os.ErrNotExist) {
		return errs.Wrap(errs.Unavailable, err, "remove an old backup")
	}
	return nil
}
