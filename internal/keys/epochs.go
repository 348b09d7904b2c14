package keys

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/custodia/custodia/internal/atomicfile"
	"github.com/custodia/custodia/internal/errs"
)

// Erasure epochs carry erasure into backups (LIFE-03). A participant's data
// key is sealed under the key of an erasure epoch and the result wrapped by
// the key-encryption key, so that opening it needs both. The epoch key lives
// with the key provider only, never in a database, so a backup of a
// database holds no epoch key. An epoch gathers up to EpochSize
// participants. Erasing one of them moves the keys of the others to a
// fresh epoch in the erasure's transaction and retires the old epoch; after
// the commit the provider destroys the retired epoch's key, and from then on
// no copy of the database taken before the erasure opens the erased
// participant's key: its epoch is gone. Such copies lose the other members
// of that epoch too, whose live keys are under the fresh epoch.
//
// Rotation of the key-encryption key (CRY-07) re-wraps the outer layer only
// and never needs an epoch key; epoch keys are not wrapped by the
// key-encryption key and are not rotated: each lives until an erasure
// retires it.

// DefaultEpochSize is how many participants an erasure epoch takes when
// Keyring.EpochSize is zero: an erasure re-wraps at most this many keys.
const DefaultEpochSize = 256

// EpochKeeper holds the keys of erasure epochs at the key provider.
type EpochKeeper interface {
	// NewEpoch makes a fresh epoch key and returns its id.
	NewEpoch(ctx context.Context) (string, error)
	// SealEpoch encrypts a data key under an epoch's key, bound to ad.
	SealEpoch(ctx context.Context, epoch string, plaintext, ad []byte) ([]byte, error)
	// OpenEpoch decrypts what SealEpoch made, or fails with
	// ErrEpochDestroyed once the epoch is destroyed.
	OpenEpoch(ctx context.Context, epoch string, sealed, ad []byte) ([]byte, error)
	// DestroyEpoch destroys an epoch's key for good; destroying one that
	// is gone already is no error.
	DestroyEpoch(ctx context.Context, epoch string) error
}

// EpochProvider is a key provider that keeps erasure epochs.
type EpochProvider interface {
	Epochs() (EpochKeeper, error)
}

var (
	// ErrEpochsUnsupported refuses an erasure whose provider keeps no
	// erasure epochs: destroying the key in the database alone would leave
	// the participant readable in every backup taken before.
	ErrEpochsUnsupported = errs.E(errs.Invalid, "no erasure epochs are kept (the key provider keeps none and no epoch folder is set), so an erasure could not reach backups taken before it")
	// ErrEpochDestroyed is the answer for a key whose erasure epoch was
	// destroyed: a copy of the database from before an erasure.
	ErrEpochDestroyed = errs.E(errs.NotFound, "the erasure epoch of this key has been destroyed")
)

// epochsOf returns the epoch keeper of kek's provider.
func epochsOf(kek KEK) (EpochKeeper, error) {
	p, ok := kek.(EpochProvider)
	if !ok {
		return nil, ErrEpochsUnsupported
	}
	return p.Epochs()
}

// Epochs returns the erasure epochs of Primary.
func (c *Chain) Epochs() (EpochKeeper, error) { return epochsOf(c.Primary) }

// LocalEpochsDir is where the local provider keeps epoch keys, under the
// data folder, beside the key-encryption key.
const LocalEpochsDir = "keys/epochs"

const localEpochLabel = "custodia.erasure-epoch.v1"

// Epochs returns the erasure epochs of the local provider: one file per
// epoch in the folder epochs beside the key file (0600 in a 0700 folder),
// holding a 32-byte key in base64. A key that lives in memory keeps its
// epochs in memory.
func (k *LocalKEK) Epochs() (EpochKeeper, error) {
	k.epochsOnce.Do(func() {
		if k.path == "" {
			k.epochs = &localEpochs{mem: map[string][]byte{}}
			return
		}
		k.epochs = &localEpochs{dir: filepath.Join(filepath.Dir(k.path), filepath.Base(LocalEpochsDir))}
	})
	return k.epochs, nil
}

// localEpochs keeps epoch keys in files of a folder, or in memory. Every
// use looks at the file again, so an epoch destroyed by another process
// that shares the folder is gone here at once; a file unchanged since it
// was read (same size, time and inode) is not read again.
type localEpochs struct {
	dir string

	mu     sync.Mutex
	mem    map[string][]byte // when dir is ""
	loaded map[string]loadedEpoch
}

// loadedEpoch is an epoch key read from its file, and the file's stamp
// when it was read.
type loadedEpoch struct {
	key   *localKey
	stamp fileStamp
}

// maxLoadedEpochs bounds the epoch keys kept loaded; past it the oldest
// are read again from their files when next used.
const maxLoadedEpochs = 64

func (e *localEpochs) path(epoch string) (string, error) {
	b, err := hex.DecodeString(epoch)
	if err != nil || len(b) != 16 {
		return "", errs.E(errs.Internal, "malformed erasure epoch id")
	}
	return filepath.Join(e.dir, epoch+".key"), nil
}

// NewEpoch writes a fresh random key under a fresh random id.
func (e *localEpochs) NewEpoch(context.Context) (string, error) {
	var id [16]byte
	key := make([]byte, 32)
	defer clear(key)
	if _, err := rand.Read(id[:]); err != nil {
		return "", errs.Wrap(errs.Internal, err, "generate erasure epoch id")
	}
	if _, err := rand.Read(key); err != nil {
		return "", errs.Wrap(errs.Internal, err, "generate erasure epoch key")
	}
	epoch := hex.EncodeToString(id[:])
	if e.dir == "" {
		e.mu.Lock()
		e.mem[epoch] = append([]byte(nil), key...)
		e.mu.Unlock()
		return epoch, nil
	}
	if err := os.MkdirAll(e.dir, 0o700); err != nil {
		return "", errs.Wrap(errs.Unavailable, err, "create erasure epoch folder "+e.dir)
	}
	if fi, err := os.Stat(e.dir); err == nil && fi.Mode().Perm()&0o077 != 0 {
		return "", errs.E(errs.Invalid, "erasure epoch folder %s is accessible to other users (mode %04o); restrict it with chmod 700 %s", e.dir, fi.Mode().Perm(), e.dir)
	}
	path, _ := e.path(epoch)
	text := []byte(base64.StdEncoding.EncodeToString(key) + "\n")
	defer clear(text)
	if err := atomicfile.Create(path, text, 0o600); err != nil {
		return "", errs.Wrap(errs.Unavailable, err, "write erasure epoch key "+path)
	}
	return epoch, nil
}

// key loads an epoch's key as the local key-encryption key's AEADs.
func (e *localEpochs) key(epoch string) (*localKey, error) {
	var raw []byte
	if e.dir == "" {
		e.mu.Lock()
		k, ok := e.mem[epoch]
		raw = append([]byte(nil), k...)
		e.mu.Unlock()
		if !ok {
			return nil, ErrEpochDestroyed
		}
	} else {
		path, err := e.path(epoch)
		if err != nil {
			return nil, err
		}
		fi, err := os.Stat(path)
		switch {
		case errors.Is(err, os.ErrNotExist):
			e.forget(epoch)
			return nil, ErrEpochDestroyed
		case err != nil:
			return nil, errs.Wrap(errs.Unavailable, err, "read erasure epoch key "+path)
		case !fi.Mode().IsRegular() || fi.Mode().Perm()&0o077 != 0:
			e.forget(epoch)
			return nil, errs.E(errs.Invalid, "erasure epoch key %s must be a regular file of mode 0600", path)
		}
		stamp := stampOf(fi)
		e.mu.Lock()
		l, ok := e.loaded[epoch]
		e.mu.Unlock()
		if ok && l.stamp == stamp {
			return l.key, nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, errs.Wrap(errs.Unavailable, err, "read erasure epoch key "+path)
		}
		raw, err = base64.StdEncoding.DecodeString(strings.TrimSpace(string(b)))
		clear(b)
		if err != nil || len(raw) != 32 {
			clear(raw)
			return nil, errs.E(errs.Invalid, "erasure epoch key %s is malformed", path)
		}
		defer clear(raw)
		k, err := newLocalKey(raw)
		if err != nil {
			return nil, err
		}
		e.mu.Lock()
		if e.loaded == nil || len(e.loaded) >= maxLoadedEpochs {
			e.loaded = map[string]loadedEpoch{}
		}
		e.loaded[epoch] = loadedEpoch{key: k, stamp: stamp}
		e.mu.Unlock()
		return k, nil
	}
	defer clear(raw)
	return newLocalKey(raw)
}

// forget drops the loaded key of an epoch.
func (e *localEpochs) forget(epoch string) {
	e.mu.Lock()
	delete(e.loaded, epoch)
	e.mu.Unlock()
}

func epochAD(epoch string, ad []byte) []byte {
	return append(appendFields(nil, localEpochLabel, epoch), ad...)
}

// SealEpoch seals with the epoch's key as LocalKEK.Wrap does, bound to the
// epoch and ad.
func (e *localEpochs) SealEpoch(_ context.Context, epoch string, plaintext, ad []byte) ([]byte, error) {
	k, err := e.key(epoch)
	if err != nil {
		return nil, err
	}
	return k.wrap(plaintext, epochAD(epoch, ad))
}

// OpenEpoch opens what SealEpoch made.
func (e *localEpochs) OpenEpoch(_ context.Context, epoch string, sealed, ad []byte) ([]byte, error) {
	k, err := e.key(epoch)
	if err != nil {
		return nil, err
	}
	return k.unwrap(sealed, epochAD(epoch, ad))
}

// DestroyEpoch overwrites the epoch's key file, syncs it and removes it.
// What the file system or the disk keeps of overwritten blocks is the
// operator's affair (full-disk encryption, OPS-03).
func (e *localEpochs) DestroyEpoch(_ context.Context, epoch string) error {
	if e.dir == "" {
		e.mu.Lock()
		clear(e.mem[epoch])
		delete(e.mem, epoch)
		e.mu.Unlock()
		return nil
	}
	e.forget(epoch)
	path, err := e.path(epoch)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return errs.Wrap(errs.Unavailable, err, "destroy erasure epoch key "+path)
	}
	fi, err := f.Stat()
	if err == nil {
		_, err = f.WriteAt(make([]byte, fi.Size()), 0)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Remove(path)
	}
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return errs.Wrap(errs.Unavailable, err, "destroy erasure epoch key "+path)
	}
	if d, err := os.Open(e.dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}
