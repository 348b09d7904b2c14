// Package atomicfile writes the small files the instance cannot afford to
// lose or find half-written: keys, certificates, recovery material. The
// data go to a temporary file beside the destination with its final mode
// from the start, are synced to disk, and then take the destination's name
// in one step (a rename, or a hard link for a file that must be new); the
// folder is synced after, so that the name survives a crash as well. A
// crash at any point leaves the old file or the whole new one.
package atomicfile

import (
	"os"
	"path/filepath"
)

// Write replaces path with data, with mode.
func Write(path string, data []byte, mode os.FileMode) error {
	return write(path, data, mode, true)
}

// Create writes data to path, which must not exist yet: if it does, also
// when another process created it meanwhile, the error is os.ErrExist and
// the file is left as it is.
func Create(path string, data []byte, mode os.FileMode) error {
	return write(path, data, mode, false)
}

func write(path string, data []byte, mode os.FileMode, replace bool) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if replace {
		err = os.Rename(tmp, path)
	} else {
		err = os.Link(tmp, path)
	}
	if err != nil {
		return err
	}
	return SyncDir(filepath.Dir(path))
}

// SyncDir flushes the entries of folder dir to disk, so that a file just
// named there survives a crash. Where the platform cannot sync a folder it
// does nothing.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !isUnsupported(err) {
		return err
	}
	return nil
}
