package keys

import (
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
	"strings"

	"github.com/custodia/custodia/internal/errs"
)

// KEK is a key-encryption key: the master key that wraps data keys
// (CRY-04). Its key material never leaves the provider; the keyring sees
// only wrapped data keys. ad binds a wrapped key to its place (organization,
// scope, key id and version), so a wrapped key moved to another row does not
// unwrap. Providers: LocalKEK (a key file in the data folder, the default);
// PKCS#11 tokens, Vault/OpenBao Transit and cloud KMSs fit the same shape.
type KEK interface {
	// ID names the key-encryption key, stored beside every data key it
	// wrapped, so rows wrapped by an older master key can be found and
	// re-wrapped (CRY-07). It must not reveal key material.
	ID() string
	Wrap(ctx context.Context, plaintext, ad []byte) ([]byte, error)
	Unwrap(ctx context.Context, wrapped, ad []byte) ([]byte, error)
}

// LocalKEK is a 32-byte key-encryption key kept in <data>/keys/kek.key,
// wrapping with XChaCha20-Poly1305. Whoever holds the data folder holds
// this key, so production should use an external KMS (OPS-01); the file
// exists so that a single machine installation encrypts at rest from the
// first start.
type LocalKEK struct {
	id   string
	aead cipher.AEAD
}

// LocalKEKFile is where OpenLocalKEK keeps the key, under the data folder.
const LocalKEKFile = "keys/kek.key"

const (
	localKEKFormat = 1
	localKEKLabel  = "custodia.local-kek.wrap.v1"
	localKEKIDInfo = "custodia.local-kek.id.v1"
)

// ErrUnwrap is returned when a wrapped key does not unwrap: another
// key-encryption key wrapped it, or it was altered or moved.
var ErrUnwrap = errs.E(errs.Internal, "a data key could not be unwrapped with this key-encryption key")

// OpenLocalKEK loads the key-encryption key in <dataDir>/keys/kek.key,
// creating it from crypto/rand on first use (0600 in a 0700 folder). A key
// file that group or others may read or write is refused: it would hand
// every data key to any local user.
func OpenLocalKEK(dataDir string) (*LocalKEK, error) {
	dir := filepath.Join(dataDir, filepath.Dir(LocalKEKFile))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, errs.Wrap(errs.Invalid, err, "create key folder "+dir)
	}
	if fi, err := os.Stat(dir); err == nil && fi.Mode().Perm()&0o077 != 0 {
		return nil, errs.E(errs.Invalid, "key folder %s is accessible to other users (mode %04o); restrict it with chmod 700 %s", dir, fi.Mode().Perm(), dir)
	}
	path := filepath.Join(dataDir, LocalKEKFile)
	key, err := readLocalKEK(path)
	if errors.Is(err, os.ErrNotExist) {
		key, err = createLocalKEK(path)
	}
	if err != nil {
		return nil, err
	}
	defer clear(key)
	return newLocalKEK(key)
}

func newLocalKEK(key []byte) (*LocalKEK, error) {
	a, err := newXChaCha(key)
	if err != nil {
		return nil, errs.Wrap(errs.Internal, err, "key-encryption key")
	}
	h := sha256.New()
	h.Write([]byte(localKEKIDInfo))
	h.Write(key)
	return &LocalKEK{id: "local:" + hex.EncodeToString(h.Sum(nil)[:8]), aead: a}, nil
}

func readLocalKEK(path string) ([]byte, error) {
	fi, err := os.Stat(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, err
		}
		return nil, errs.Wrap(errs.Invalid, err, "read key-encryption key "+path)
	}
	if !fi.Mode().IsRegular() {
		return nil, errs.E(errs.Invalid, "key-encryption key %s is not a regular file", path)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, errs.E(errs.Invalid, "key-encryption key %s is accessible to other users (mode %04o); restrict it with chmod 600 %s", path, fi.Mode().Perm(), path)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, errs.Wrap(errs.Invalid, err, "read key-encryption key "+path)
	}
	defer clear(b)
	key, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(b)))
	if err != nil || len(key) != 32 {
		clear(key)
		return nil, errs.E(errs.Invalid, "key-encryption key %s is malformed (want 32 bytes in base64 on one line)", path)
	}
	return key, nil
}

// createLocalKEK writes a fresh key. When two processes start on a new data
// folder at once, one key wins and both use it.
func createLocalKEK(path string) ([]byte, error) {
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, errs.Wrap(errs.Internal, err, "generate key-encryption key")
	}
	text := []byte(base64.StdEncoding.EncodeToString(key) + "\n")
	defer clear(text)
	if err := writeNewFile(path, text, 0o600); err != nil {
		clear(key)
		if errors.Is(err, os.ErrExist) {
			return readLocalKEK(path)
		}
		return nil, errs.Wrap(errs.Invalid, err, "write key-encryption key "+path)
	}
	return key, nil
}

// writeNewFile writes data to a temporary file, syncs it and links it to
// path, so a crash never leaves a partial key. An existing path is kept and
// the error is os.ErrExist.
func writeNewFile(path string, data []byte, mode os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
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
	if err := os.Link(tmp, path); err != nil {
		return err
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

// ID names the key by a digest of it: "local:" and 16 hex digits.
func (k *LocalKEK) ID() string { return k.id }

// Wrap encrypts a data key: format byte (1) || 24-byte nonce || ciphertext
// || tag, with associated data that differs from every sealed value's.
func (k *LocalKEK) Wrap(_ context.Context, plaintext, ad []byte) ([]byte, error) {
	out := make([]byte, 1+NonceSize, 1+NonceSize+len(plaintext)+TagSize)
	out[0] = localKEKFormat
	if _, err := rand.Read(out[1:]); err != nil {
		return nil, errs.Wrap(errs.Internal, err, "wrap data key: read random nonce")
	}
	return sealAEAD(k.aead, out, out[1:], plaintext, localKEKAD(ad))
}

// Unwrap decrypts what Wrap made with the same ad, or fails with ErrUnwrap.
func (k *LocalKEK) Unwrap(_ context.Context, wrapped, ad []byte) ([]byte, error) {
	if len(wrapped) < 1+NonceSize+TagSize || wrapped[0] != localKEKFormat {
		return nil, ErrUnwrap
	}
	pt, err := openAEAD(k.aead, wrapped[1:1+NonceSize], wrapped[1+NonceSize:], localKEKAD(ad))
	if err != nil {
		return nil, ErrUnwrap
	}
	return pt, nil
}

func localKEKAD(ad []byte) []byte {
	return append(appendFields(nil, localKEKLabel), ad...)
}

func (k *LocalKEK) String() string { return fmt.Sprintf("local key-encryption key %s", k.id) }
