package audit

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/mod/sumdb/note"

	"github.com/custodia/custodia/internal/atomicfile"
	"github.com/custodia/custodia/internal/errs"
)

// File names under <dataDir>/audit.
const (
	signingKeyFile = "signing.key"
	verifierFile   = "verifier.pub"
)

// LoadOrCreateKey returns the checkpoint signing key kept in
// <dataDir>/audit/signing.key, creating it on first use, and its verifier,
// whose text form is kept in <dataDir>/audit/verifier.pub for operators to
// copy elsewhere: a checkpoint is only as trustworthy as the place its
// verifier key is kept. The key file is owner-only (0600, in a 0700 folder);
// one that others can read is refused. name is the key's name in signed
// notes, e.g. "custodia-audit-<instance id>"; an existing key of another
// name is refused.
func LoadOrCreateKey(dataDir, name string) (note.Signer, note.Verifier, error) {
	dir := filepath.Join(dataDir, "audit")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, nil, errs.Wrap(errs.Invalid, err, "create audit key folder "+dir)
	}
	keyPath := KeyPath(dataDir)
	skey, err := readSigningKey(keyPath)
	if errors.Is(err, os.ErrNotExist) {
		skey, err = createSigningKey(keyPath, name)
	}
	if err != nil {
		return nil, nil, err
	}
	return KeyFromText(dataDir, skey, name)
}

// KeyPath is where the audit key is kept in the clear, owner-only: beside
// the local key-encryption key file. An instance whose key-encryption key
// is kept elsewhere (a PKCS#11 token, a KMS) keeps it sealed by that key
// instead (package instance).
func KeyPath(dataDir string) string { return filepath.Join(dataDir, "audit", signingKeyFile) }

// ReadKeyText reads the audit key's text from KeyPath; an error matching
// os.ErrNotExist says there is none there.
func ReadKeyText(dataDir string) (string, error) { return readSigningKey(KeyPath(dataDir)) }

// WriteKeyText writes the audit key's text to KeyPath (owner-only), when a
// sealed key is opened for an instance whose key-encryption key is the
// local key file again.
func WriteKeyText(dataDir, skey string) error {
	path := KeyPath(dataDir)
	if err := atomicfile.Write(path, []byte(skey+"\n"), 0o600); err != nil {
		return errs.Wrap(errs.Invalid, err, "write audit signing key "+path)
	}
	return nil
}

// KeyFromText makes the signer and verifier of the audit key skey, whose
// name must be name, and checks that <dataDir>/audit/verifier.pub is its
// verifier, writing it when it is missing.
func KeyFromText(dataDir, skey, name string) (note.Signer, note.Verifier, error) {
	keyPath := KeyPath(dataDir)
	pubPath := filepath.Join(dataDir, "audit", verifierFile)
	signer, err := note.NewSigner(skey)
	if err != nil {
		return nil, nil, errs.E(errs.Invalid, "audit signing key %s is malformed", keyPath)
	}
	if name != "" && signer.Name() != name {
		return nil, nil, errs.E(errs.Invalid, "audit signing key %s is named %q, want %q; is this the data folder of another instance?", keyPath, signer.Name(), name)
	}
	vkey, err := verifierKey(skey)
	if err != nil {
		return nil, nil, errs.E(errs.Invalid, "audit signing key %s is malformed", keyPath)
	}
	verifier, err := note.NewVerifier(vkey)
	if err != nil {
		return nil, nil, errs.Wrap(errs.Internal, err, "derive audit verifier key")
	}
	// The verifier file is public and derived, so a missing one is written
	// again; one that names another key means a key file was swapped.
	switch b, err := os.ReadFile(pubPath); {
	case errors.Is(err, os.ErrNotExist):
		if err := atomicfile.Write(pubPath, []byte(vkey+"\n"), 0o644); err != nil {
			return nil, nil, errs.Wrap(errs.Invalid, err, "write audit verifier key "+pubPath)
		}
	case err != nil:
		return nil, nil, errs.Wrap(errs.Invalid, err, "read audit verifier key "+pubPath)
	case strings.TrimSpace(string(b)) != vkey:
		return nil, nil, errs.E(errs.Invalid, "audit verifier key %s does not belong to the signing key %s", pubPath, keyPath)
	}
	return signer, verifier, nil
}

// VerifierPath is where the audit key's public verifier is kept.
func VerifierPath(dataDir string) string { return filepath.Join(dataDir, "audit", verifierFile) }

func readSigningKey(path string) (string, error) {
	fi, err := os.Stat(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return "", err
		}
		return "", errs.Wrap(errs.Invalid, err, "read audit signing key "+path)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return "", errs.E(errs.Invalid, "audit signing key %s is accessible to other users (mode %04o); restrict it with chmod 600", path, fi.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", errs.Wrap(errs.Invalid, err, "read audit signing key "+path)
	}
	return strings.TrimSpace(string(b)), nil
}

// createSigningKey writes a fresh key. When two processes start on a new
// data folder at once, one key wins and both use it.
func createSigningKey(path, name string) (string, error) {
	skey, _, err := note.GenerateKey(rand.Reader, name)
	if err != nil {
		return "", errs.E(errs.Invalid, "audit key name %q is not valid (no spaces or '+')", name)
	}
	if err := atomicfile.Create(path, []byte(skey+"\n"), 0o600); err != nil {
		if errors.Is(err, os.ErrExist) {
			return readSigningKey(path)
		}
		return "", errs.Wrap(errs.Invalid, err, "write audit signing key "+path)
	}
	return skey, nil
}

// verifierKey derives the verifier key text from a signer key text
// ("PRIVATE+KEY+<name>+<hash>+<base64 of 0x01 and the Ed25519 seed>").
func verifierKey(skey string) (string, error) {
	parts := strings.SplitN(skey, "+", 5)
	if len(parts) != 5 {
		return "", errors.New("malformed signer key")
	}
	raw, err := base64.StdEncoding.DecodeString(parts[4])
	if err != nil || len(raw) != 1+ed25519.SeedSize || raw[0] != 1 {
		return "", errors.New("malformed signer key")
	}
	pub := ed25519.NewKeyFromSeed(raw[1:]).Public().(ed25519.PublicKey)
	return note.NewEd25519VerifierKey(parts[2], pub)
}

// ReadVerifier reads a verifier key in its text form, as LoadOrCreateKey
// writes it to verifier.pub.
func ReadVerifier(path string) (note.Verifier, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, errs.Wrap(errs.Invalid, err, "read audit verifier key "+path)
	}
	v, err := note.NewVerifier(strings.TrimSpace(string(b)))
	if err != nil {
		return nil, errs.E(errs.Invalid, "%s is not an audit verifier key (want the one-line text of verifier.pub)", path)
	}
	return v, nil
}

// verifierName is used in messages about checkpoints.
func verifierName(v note.Verifier) string {
	if v == nil {
		return "(none)"
	}
	return fmt.Sprintf("%s+%08x", v.Name(), v.KeyHash())
}
