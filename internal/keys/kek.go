package keys

import (
	"bytes"
	"context"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/custodia/custodia/internal/atomicfile"
	"github.com/custodia/custodia/internal/errs"
)

// KEK is a key-encryption key: the master key that wraps data keys
// (CRY-04). Its key material never leaves the provider; the keyring sees
// only wrapped data keys. ad binds a wrapped key to its place (organization,
// scope, key id and version), so a wrapped key moved to another row does not
// unwrap. Providers (provider.go): LocalKEK (a key file in the data folder,
// the default), a PKCS#11 token, Vault/OpenBao Transit; a cloud KMS fits
// the same shape.
type KEK interface {
	// ID names the current version of the key-encryption key, stored
	// beside every data key it wrapped, so rows wrapped by an older version
	// can be found and re-wrapped (CRY-07). It must not reveal key material.
	ID() string
	Wrap(ctx context.Context, plaintext, ad []byte) ([]byte, error)
	Unwrap(ctx context.Context, wrapped, ad []byte) ([]byte, error)
}

// LocalKEK is the key-encryption key kept in <data>/keys/kek.key: one or
// more 32-byte keys, one per line in base64, oldest first. The last line is
// the current version, which wraps; every line unwraps, so that a rotation
// (RotateKEK adds a line) never leaves a data key unreadable while it
// re-wraps them, and RetireKEK removes a version once no wrapped key needs
// it (CRY-07). Wrapping is XChaCha20-Poly1305, or AES-256-GCM in FIPS mode
// (CRY-11).
//
// Whoever holds the data folder holds this key, so production should use an
// external KMS (OPS-01); the file exists so that a single machine
// installation encrypts at rest from the first start.
//
// Several processes may share one key file (a server and the custodia keys
// command): before each Wrap the file is looked at again, and an Unwrap that
// no known version opens reads it again, so a version added by a rotation
// elsewhere is used at once.
type LocalKEK struct {
	path string // "" for a key that lives in memory only

	mu       sync.RWMutex
	versions []*localKey // oldest first; the last is current
	stamp    fileStamp

	epochsOnce sync.Once
	epochs     *localEpochs // erasure epochs (epochs.go)
}

// localKey is one version of the local key-encryption key.
type localKey struct {
	id   string
	aead cipher.AEAD
	gcm  *sealKey // wraps in FIPS mode (CRY-11, fips.go)
}

// fileStamp tells whether the key file changed since it was read.
type fileStamp struct {
	size  int64
	mtime time.Time
	ino   uint64
}

// LocalKEKFile is where OpenLocalKEK keeps the key, under the data folder.
const LocalKEKFile = "keys/kek.key"

const (
	localKEKFormat = 1
	localKEKLabel  = "custodia.local-kek.wrap.v1"
	localKEKIDInfo = "custodia.local-kek.id.v1"

	// maxLocalKEKVersions bounds the key file: a rotation that would pass
	// it must wait until older versions are retired.
	maxLocalKEKVersions = 16
)

// ErrUnwrap is returned when a wrapped key does not unwrap: another
// key-encryption key wrapped it, or it was altered or moved.
var ErrUnwrap = errs.E(errs.Internal, "a data key could not be unwrapped with this key-encryption key")

// OpenLocalKEK loads the key-encryption key in <dataDir>/keys/kek.key,
// creating it from crypto/rand on first use (0600 in a 0700 folder). A key
// file that group or others may read or write is refused: it would hand
// every data key to any local user. Only the making of a new instance may
// create the key: where the databases hold keys wrapped by a local version
// already, a missing file is lost, and LoadLocalKEK refuses it instead.
func OpenLocalKEK(dataDir string) (*LocalKEK, error) {
	dir := filepath.Join(dataDir, filepath.Dir(LocalKEKFile))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, errs.Wrap(errs.Invalid, err, "create key folder "+dir)
	}
	k, err := LoadLocalKEK(dataDir)
	if !errors.Is(err, os.ErrNotExist) {
		return k, err
	}
	path := filepath.Join(dataDir, LocalKEKFile)
	if err := createLocalKEK(path); err != nil {
		return nil, err
	}
	return LoadLocalKEK(dataDir)
}

// LoadLocalKEK loads the key-encryption key in <dataDir>/keys/kek.key,
// which must exist: a missing file is an error that matches os.ErrNotExist
// and names the file. It creates nothing.
func LoadLocalKEK(dataDir string) (*LocalKEK, error) {
	dir := filepath.Join(dataDir, filepath.Dir(LocalKEKFile))
	path := filepath.Join(dataDir, LocalKEKFile)
	fi, err := os.Stat(dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return nil, errs.Wrap(errs.Unavailable, err, "the key-encryption key file "+path+" does not exist")
	case err != nil:
		return nil, errs.Wrap(errs.Invalid, err, "key folder "+dir+" is not usable")
	case fi.Mode().Perm()&0o077 != 0:
		return nil, errs.E(errs.Invalid, "key folder %s is accessible to other users (mode %04o); restrict it with chmod 700 %s", dir, fi.Mode().Perm(), dir)
	}
	k := &LocalKEK{path: path}
	if err := k.load(); errors.Is(err, os.ErrNotExist) {
		return nil, errs.Wrap(errs.Unavailable, err, "the key-encryption key file "+path+" does not exist")
	} else if err != nil {
		return nil, err
	}
	return k, nil
}

// Path is the key file, "" for a key that lives in memory only.
func (k *LocalKEK) Path() string { return k.path }

func newLocalKey(key []byte) (*localKey, error) {
	a, err := legacyXChaCha(key) // wraps only outside FIPS mode
	if err != nil {
		return nil, errs.Wrap(errs.Internal, err, "key-encryption key")
	}
	g, err := newSealKey(key, localKEKGCMLabel)
	if err != nil {
		return nil, errs.Wrap(errs.Internal, err, "key-encryption key")
	}
	return &localKey{id: localKEKID(key), aead: a, gcm: g}, nil
}

// localKEKID names a version by a digest of it: "local:" and 16 hex digits.
func localKEKID(key []byte) string {
	h := sha256.New()
	h.Write([]byte(localKEKIDInfo))
	h.Write(key)
	return "local:" + hex.EncodeToString(h.Sum(nil)[:8])
}

func stampOf(fi os.FileInfo) fileStamp {
	s := fileStamp{size: fi.Size(), mtime: fi.ModTime()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		s.ino = uint64(st.Ino)
	}
	return s
}

// load reads the key file into k.
func (k *LocalKEK) load() error {
	keys, stamp, err := readLocalKEK(k.path)
	if err != nil {
		return err
	}
	defer func() {
		for _, key := range keys {
			clear(key)
		}
	}()
	versions := make([]*localKey, 0, len(keys))
	for _, key := range keys {
		v, err := newLocalKey(key)
		if err != nil {
			return err
		}
		versions = append(versions, v)
	}
	k.mu.Lock()
	k.versions, k.stamp = versions, stamp
	k.mu.Unlock()
	return nil
}

// refresh reads the key file again if it changed since it was read. A file
// that cannot be read now keeps the versions already known.
func (k *LocalKEK) refresh() error {
	if k.path == "" {
		return nil
	}
	fi, err := os.Stat(k.path)
	if err != nil {
		return errs.Wrap(errs.Unavailable, err, "key-encryption key "+k.path+" is not readable")
	}
	k.mu.RLock()
	same := k.stamp == stampOf(fi)
	k.mu.RUnlock()
	if same {
		return nil
	}
	return k.load()
}

// readLocalKEK reads the versions in the key file, oldest first.
func readLocalKEK(path string) ([][]byte, fileStamp, error) {
	fi, err := os.Stat(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fileStamp{}, err
		}
		return nil, fileStamp{}, errs.Wrap(errs.Invalid, err, "read key-encryption key "+path)
	}
	if !fi.Mode().IsRegular() {
		return nil, fileStamp{}, errs.E(errs.Invalid, "key-encryption key %s is not a regular file", path)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fileStamp{}, errs.E(errs.Invalid, "key-encryption key %s is accessible to other users (mode %04o); restrict it with chmod 600 %s", path, fi.Mode().Perm(), path)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fileStamp{}, errs.Wrap(errs.Invalid, err, "read key-encryption key "+path)
	}
	defer clear(b)
	keys, err := parseLocalKEK(b)
	if err != nil {
		return nil, fileStamp{}, errs.E(errs.Invalid, "key-encryption key %s is malformed (want 32-byte keys in base64, one per line)", path)
	}
	return keys, stampOf(fi), nil
}

// parseLocalKEK reads the key file's text: base64 keys of 32 bytes, one per
// line, at least one.
func parseLocalKEK(b []byte) ([][]byte, error) {
	var keys [][]byte
	for line := range strings.SplitSeq(strings.TrimSpace(string(b)), "\n") {
		key, err := base64.StdEncoding.DecodeString(strings.TrimSpace(line))
		if err != nil || len(key) != 32 || len(keys) == maxLocalKEKVersions {
			clear(key)
			for _, k := range keys {
				clear(k)
			}
			return nil, errors.New("malformed key file")
		}
		keys = append(keys, key)
	}
	return keys, nil
}

func formatLocalKEK(keys [][]byte) []byte {
	var b bytes.Buffer
	for _, key := range keys {
		b.WriteString(base64.StdEncoding.EncodeToString(key))
		b.WriteByte('\n')
	}
	return b.Bytes()
}

// createLocalKEK writes a fresh key. When two processes start on a new data
// folder at once, one key wins and both use it.
func createLocalKEK(path string) error {
	key := make([]byte, 32)
	defer clear(key)
	if _, err := rand.Read(key); err != nil {
		return errs.Wrap(errs.Internal, err, "generate key-encryption key")
	}
	text := formatLocalKEK([][]byte{key})
	defer clear(text)
	if err := atomicfile.Create(path, text, 0o600); err != nil && !errors.Is(err, os.ErrExist) {
		return errs.Wrap(errs.Invalid, err, "write key-encryption key "+path)
	}
	return nil
}

func (k *LocalKEK) current() *localKey {
	k.mu.RLock()
	defer k.mu.RUnlock()
	return k.versions[len(k.versions)-1]
}

// ID names the current version by a digest of it: "local:" and 16 hex
// digits.
func (k *LocalKEK) ID() string { return k.current().id }

// Name is the provider's name.
func (k *LocalKEK) Name() string { return "local" }

// Wrap encrypts a data key under the current version: format byte (1) ||
// 24-byte nonce || ciphertext || tag, with associated data that differs
// from every sealed value's. In FIPS mode it is AES-256-GCM: format byte
// (2) || 12-byte nonce || ciphertext || tag.
func (k *LocalKEK) Wrap(_ context.Context, plaintext, ad []byte) ([]byte, error) {
	if err := k.refresh(); err != nil {
		return nil, err
	}
	return k.current().wrap(plaintext, ad)
}

func (v *localKey) wrap(plaintext, ad []byte) ([]byte, error) {
	if FIPS().On {
		return v.gcm.wrapGCM(plaintext, ad)
	}
	out := make([]byte, 1+NonceSize, 1+NonceSize+len(plaintext)+TagSize)
	out[0] = localKEKFormat
	if _, err := rand.Read(out[1:]); err != nil {
		return nil, errs.Wrap(errs.Internal, err, "wrap data key: read random nonce")
	}
	return sealAEAD(v.aead, out, out[1:], plaintext, localKEKAD(ad))
}

func (v *localKey) unwrap(wrapped, ad []byte) ([]byte, error) {
	if len(wrapped) > 0 && wrapped[0] == localKEKFormatGCM {
		return v.gcm.unwrapGCM(wrapped, ad)
	}
	if len(wrapped) < 1+NonceSize+TagSize || wrapped[0] != localKEKFormat {
		return nil, ErrUnwrap
	}
	pt, err := openAEAD(v.aead, wrapped[1:1+NonceSize], wrapped[1+NonceSize:], localKEKAD(ad))
	if err != nil {
		return nil, ErrUnwrap
	}
	return pt, nil
}

// Unwrap decrypts what Wrap made with the same ad under any version, or
// fails with ErrUnwrap.
func (k *LocalKEK) Unwrap(ctx context.Context, wrapped, ad []byte) ([]byte, error) {
	pt, _, err := k.open(wrapped, ad)
	return pt, err
}

// open unwraps with whichever version opens wrapped, newest first, reading
// the key file again once if none does.
func (k *LocalKEK) open(wrapped, ad []byte) ([]byte, string, error) {
	if !k.Owns(wrapped) {
		return nil, "", ErrUnwrap
	}
	for attempt := range 2 {
		if attempt == 1 {
			before := k.Versions()
			if err := k.refresh(); err != nil || slices.Equal(before, k.Versions()) {
				break
			}
		}
		k.mu.RLock()
		versions := slices.Clone(k.versions)
		k.mu.RUnlock()
		for i := len(versions) - 1; i >= 0; i-- {
			if pt, err := versions[i].unwrap(wrapped, ad); err == nil {
				return pt, versions[i].id, nil
			}
		}
	}
	return nil, "", ErrUnwrap
}

// Owns reports whether wrapped is in a format of the local key-encryption
// key.
func (k *LocalKEK) Owns(wrapped []byte) bool {
	return len(wrapped) > 0 && (wrapped[0] == localKEKFormat || wrapped[0] == localKEKFormatGCM)
}

// VersionOf reports which version wrapped a key, by unwrapping it.
func (k *LocalKEK) VersionOf(_ context.Context, wrapped, ad []byte) (string, error) {
	pt, id, err := k.open(wrapped, ad)
	clear(pt)
	return id, err
}

// Knows reports whether id is a version of this key, reading the key file
// again if it is not one known yet.
func (k *LocalKEK) Knows(id string) bool {
	if slices.Contains(k.Versions(), id) {
		return true
	}
	if k.refresh() != nil {
		return false
	}
	return slices.Contains(k.Versions(), id)
}

// Versions lists the ids of the versions that unwrap, the current one
// first.
func (k *LocalKEK) Versions() []string {
	k.mu.RLock()
	defer k.mu.RUnlock()
	out := make([]string, len(k.versions))
	for i, v := range k.versions {
		out[len(out)-1-i] = v.id
	}
	return out
}

// Check reports whether the key file is still readable.
func (k *LocalKEK) Check(context.Context) error { return k.refresh() }

// RotateKEK adds a fresh version to the key file and makes it current
// (CRY-07): from now on Wrap uses it, here and, through the file, in every
// other process that shares it. Older versions keep unwrapping until
// RetireKEK removes them.
func (k *LocalKEK) RotateKEK(context.Context) (string, error) {
	var id string
	err := k.rewrite(func(keys [][]byte) ([][]byte, error) {
		if len(keys) >= maxLocalKEKVersions {
			return nil, errs.E(errs.Conflict, "the key file holds %d versions already; finish the running rotation so older ones are retired", len(keys))
		}
		key := make([]byte, 32)
		if _, err := rand.Read(key); err != nil {
			return nil, errs.Wrap(errs.Internal, err, "generate key-encryption key")
		}
		id = localKEKID(key)
		return append(keys, key), nil
	})
	return id, err
}

// RetireKEK removes version id from the key file. The caller must have
// made sure that no wrapped key needs it any more; the current version is
// never retired. Retiring a version that is gone already is no error.
func (k *LocalKEK) RetireKEK(_ context.Context, id string) error {
	return k.rewrite(func(keys [][]byte) ([][]byte, error) {
		if localKEKID(keys[len(keys)-1]) == id {
			return nil, errs.E(errs.Invalid, "the current key-encryption key cannot be retired")
		}
		return slices.DeleteFunc(keys, func(key []byte) bool {
			if localKEKID(key) == id {
				clear(key)
				return true
			}
			return false
		}), nil
	})
}

// rewrite changes the key file under an exclusive lock, so two processes
// never lose each other's version, and loads the result.
func (k *LocalKEK) rewrite(change func([][]byte) ([][]byte, error)) error {
	if k.path == "" {
		return errs.E(errs.Internal, "this key-encryption key has no key file")
	}
	lock, err := os.OpenFile(k.path+".lock", os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return errs.Wrap(errs.Unavailable, err, "lock key-encryption key "+k.path)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return errs.Wrap(errs.Unavailable, err, "lock key-encryption key "+k.path)
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)
	keys, _, err := readLocalKEK(k.path)
	if err != nil {
		return err
	}
	defer func() {
		for _, key := range keys {
			clear(key)
		}
	}()
	next, err := change(keys)
	if err != nil {
		return err
	}
	keys = next
	text := formatLocalKEK(keys)
	defer clear(text)
	if err := atomicfile.Write(k.path, text, 0o600); err != nil {
		return errs.Wrap(errs.Unavailable, err, "write key-encryption key "+k.path)
	}
	return k.load()
}

// keyFile returns the text of the key file, every version, for recovery
// material (recovery.go). The caller clears it.
func (k *LocalKEK) keyFile() ([]byte, error) {
	if k.path == "" {
		return nil, errs.E(errs.Internal, "this key-encryption key has no key file")
	}
	keys, _, err := readLocalKEK(k.path)
	if err != nil {
		return nil, err
	}
	defer func() {
		for _, key := range keys {
			clear(key)
		}
	}()
	return formatLocalKEK(keys), nil
}

func localKEKAD(ad []byte) []byte {
	return append(appendFields(nil, localKEKLabel), ad...)
}

func (k *LocalKEK) String() string { return fmt.Sprintf("local key-encryption key %s", k.ID()) }
