package instance

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/custodia/custodia/internal/atomicfile"
	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/keys"
	"golang.org/x/mod/sumdb/note"
)

// The audit key at rest (AUD-02, CRY-04). With the local key-encryption
// key the audit key sits beside it in the data folder, owner-only
// (audit.KeyPath): whoever reads one reads both. With a key-encryption key
// kept elsewhere (a PKCS#11 token, a KMS) the audit key is kept sealed by
// that key in <data>/audit/signing.key.sealed, like every other key, so a
// copy of the data folder and the databases (a backup, a stolen disk)
// cannot sign an event: only a process that the provider lets unwrap can.

const sealedAuditKeyFile = "signing.key.sealed"

// sealedAuditKey is the file's content.
type sealedAuditKey struct {
	Name    string `json:"name"`   // the key's name in signed notes
	KEKID   string `json:"kek_id"` // the key-encryption key version that wrapped it
	Wrapped []byte `json:"wrapped"`
}

func sealedAuditKeyPath(dataDir string) string {
	return filepath.Join(dataDir, "audit", sealedAuditKeyFile)
}

// auditKeyAD binds the wrapped key to its use and name.
func auditKeyAD(name string) []byte { return []byte("custodia audit signing key\x00" + name) }

func readSealedAuditKey(dataDir string) (sealedAuditKey, error) {
	path := sealedAuditKeyPath(dataDir)
	b, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return sealedAuditKey{}, err
		}
		return sealedAuditKey{}, errs.Wrap(errs.Invalid, err, "read the sealed audit key "+path)
	}
	var s sealedAuditKey
	if err := json.Unmarshal(b, &s); err != nil || s.Name == "" || len(s.Wrapped) == 0 {
		return sealedAuditKey{}, errs.E(errs.Invalid, "the sealed audit key %s is malformed", path)
	}
	return s, nil
}

func writeSealedAuditKey(dataDir string, s sealedAuditKey) error {
	b, err := json.Marshal(s)
	if err != nil {
		return errs.Wrap(errs.Internal, err, "encode the sealed audit key")
	}
	path := sealedAuditKeyPath(dataDir)
	if err := atomicfile.Write(path, append(b, '\n'), 0o600); err != nil {
		return errs.Wrap(errs.Invalid, err, "write the sealed audit key "+path)
	}
	return nil
}

// loadAuditKey loads the audit key of inst: the plain key file when there
// is one (made on an instance's first start), else only the verifier of a
// sealed key, which OpenAuditKey opens.
func (inst *Instance) loadAuditKey() error {
	name := AuditKeyName(inst.ID)
	_, plainErr := os.Stat(audit.KeyPath(inst.DataDir))
	sealed, err := readSealedAuditKey(inst.DataDir)
	switch {
	case err == nil && errors.Is(plainErr, os.ErrNotExist):
		if sealed.Name != name {
			return errs.E(errs.Invalid, "the sealed audit key %s is named %q, want %q; is this the data folder of another instance?", sealedAuditKeyPath(inst.DataDir), sealed.Name, name)
		}
		v, err := audit.ReadVerifier(audit.VerifierPath(inst.DataDir))
		if err != nil {
			return err
		}
		if v.Name() != name {
			return errs.E(errs.Invalid, "the audit verifier key %s is named %q, want %q", audit.VerifierPath(inst.DataDir), v.Name(), name)
		}
		inst.AuditVerifier = v
		inst.AuditKey = sealedSigner{v: v, path: sealedAuditKeyPath(inst.DataDir)}
		return nil
	case err != nil && !errors.Is(err, os.ErrNotExist):
		return err
	}
	inst.AuditKey, inst.AuditVerifier, err = audit.LoadOrCreateKey(inst.DataDir, name)
	return err
}

// AuditKeySealed reports whether the audit key is kept sealed and not yet
// opened: until OpenAuditKey or KeepAuditKey opens it, AuditKey refuses to sign, and nothing can
// be written to the trail.
func (inst *Instance) AuditKeySealed() bool {
	_, sealed := inst.AuditKey.(sealedSigner)
	return sealed
}

// sealedSigner stands for a sealed audit key that was not opened: it
// refuses to sign, so an event is never written unsigned (which the
// sequencer would never adopt).
type sealedSigner struct {
	v    note.Verifier
	path string
}

func (s sealedSigner) Name() string    { return s.v.Name() }
func (s sealedSigner) KeyHash() uint32 { return s.v.KeyHash() }
func (s sealedSigner) Sign([]byte) ([]byte, error) {
	return nil, errs.E(errs.Unavailable, "the audit key %s is sealed by the key-encryption key and was not opened: give the command the --kek provider that holds it", s.path)
}

// OpenAuditKey opens a sealed audit key with kek (during a change of
// provider, a chain that holds the previous one), and changes nothing on
// disk; a key in the clear is open already. A key kek cannot open is
// refused, naming the version that sealed it.
func (inst *Instance) OpenAuditKey(ctx context.Context, kek keys.Provider) error {
	_, err := inst.openSealed(ctx, kek)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return err
}

// openSealed opens the sealed audit key, returning its text; an error
// matching os.ErrNotExist says that none is sealed.
func (inst *Instance) openSealed(ctx context.Context, kek keys.Provider) (string, error) {
	name := AuditKeyName(inst.ID)
	s, err := readSealedAuditKey(inst.DataDir)
	if err != nil {
		return "", err
	}
	pt, err := kek.Unwrap(ctx, s.Wrapped, auditKeyAD(name))
	if err != nil {
		return "", errs.Wrap(errs.KindOf(err), err, fmt.Sprintf("the audit key %s is sealed by key-encryption key version %s, which --kek %s cannot open now; "+
			"give the provider that holds it (or --kek-previous during a change of provider)", sealedAuditKeyPath(inst.DataDir), s.KEKID, kek.Name()))
	}
	skey := string(pt)
	clear(pt)
	signer, verifier, err := audit.KeyFromText(inst.DataDir, skey, name)
	if err != nil {
		return "", err
	}
	inst.AuditKey, inst.AuditVerifier = signer, verifier
	return skey, nil
}

// KeepAuditKey keeps the audit key the way kek's provider asks, and opens
// it; serve and init call it at an instance's start, and a change of
// provider once every other key has moved:
//   - with the local key file (kek.Name() "local"), the audit key is kept
//     in the clear beside it; a sealed one is opened (by the previous
//     provider, at the end of a change) and written back in the clear;
//   - with any other provider, a key in the clear is sealed by kek and the
//     clear file removed.
//
// Sealing that fails (a KMS not answering) leaves the key in the clear to
// be sealed later, and returns an error of kind errs.Unavailable for the
// caller to report; a sealed key that does not open is an error, since no
// event could be written.
func (inst *Instance) KeepAuditKey(ctx context.Context, kek keys.Provider) error {
	sealedPath, plainPath := sealedAuditKeyPath(inst.DataDir), audit.KeyPath(inst.DataDir)
	local := kek.Name() == "local"
	skey, err := inst.openSealed(ctx, kek)
	switch {
	case errors.Is(err, os.ErrNotExist):
		if local {
			return nil
		}
		return inst.sealAuditKey(ctx, kek, AuditKeyName(inst.ID))
	case err != nil:
		return err
	case local:
		// Back to the local key file: the clear file first, so that a
		// crash between the two leaves a key that opens.
		if err := audit.WriteKeyText(inst.DataDir, skey); err != nil {
			return err
		}
		if err := os.Remove(sealedPath); err != nil {
			return errs.Wrap(errs.Invalid, err, "remove the sealed audit key "+sealedPath)
		}
	default:
		// A crash after sealing may have left the clear file behind.
		if err := os.Remove(plainPath); err != nil && !errors.Is(err, os.ErrNotExist) {
			return errs.Wrap(errs.Invalid, err, "remove the audit key in the clear "+plainPath)
		}
	}
	return nil
}

// sealAuditKey seals the clear audit key by kek, then removes the clear
// file.
func (inst *Instance) sealAuditKey(ctx context.Context, kek keys.Provider, name string) error {
	plainPath := audit.KeyPath(inst.DataDir)
	skey, err := audit.ReadKeyText(inst.DataDir)
	if err != nil {
		return err
	}
	wrapped, err := kek.Wrap(ctx, []byte(skey), auditKeyAD(name))
	if err != nil {
		return errs.Wrap(errs.Unavailable, err, "seal the audit key by --kek "+kek.Name()+" (it stays in "+plainPath+" until then)")
	}
	version, err := kek.VersionOf(ctx, wrapped, auditKeyAD(name))
	if err != nil {
		return errs.Wrap(errs.Unavailable, err, "seal the audit key by --kek "+kek.Name()+" (it stays in "+plainPath+" until then)")
	}
	if err := writeSealedAuditKey(inst.DataDir, sealedAuditKey{Name: name, KEKID: version, Wrapped: wrapped}); err != nil {
		return err
	}
	if err := os.Remove(plainPath); err != nil {
		return errs.Wrap(errs.Invalid, err, "remove the audit key in the clear "+plainPath)
	}
	return nil
}

// AuditKeyStore is the sealed audit key as one more secret the
// key-encryption key wrapped: rotation re-wraps it, a change of provider
// moves it, and an older version that wraps it is not retired.
func (inst *Instance) AuditKeyStore() keys.WrappedStore { return &auditKeyStore{inst: inst} }

type auditKeyStore struct{ inst *Instance }

func (s *auditKeyStore) Name() string { return "audit signing key" }

func (s *auditKeyStore) read() (sealedAuditKey, bool, error) {
	k, err := readSealedAuditKey(s.inst.DataDir)
	if errors.Is(err, os.ErrNotExist) {
		return sealedAuditKey{}, false, nil
	}
	return k, err == nil, err
}

func (s *auditKeyStore) Count(context.Context) (int, error) {
	_, ok, err := s.read()
	if ok {
		return 1, err
	}
	return 0, err
}

func (s *auditKeyStore) KEKUse(context.Context) (map[string]int, error) {
	k, ok, err := s.read()
	if !ok {
		return map[string]int{}, err
	}
	return map[string]int{k.KEKID: 1}, nil
}

func (s *auditKeyStore) Rewrap(ctx context.Context, kek keys.Provider, cursor string, _ int) (keys.Batch, error) {
	k, ok, err := s.read()
	if err != nil || !ok || cursor != "" {
		return keys.Batch{Cursor: cursor, Done: true}, err
	}
	done := keys.Batch{Cursor: sealedAuditKeyFile, Visited: 1, Done: true}
	out, version, changed, err := keys.RewrapSecret(ctx, kek, k.Wrapped, auditKeyAD(k.Name), k.KEKID)
	switch {
	case err != nil && keys.IsUnavailable(err):
		return keys.Batch{}, err
	case err != nil:
		done.Failed = 1
	case changed:
		if err := writeSealedAuditKey(s.inst.DataDir, sealedAuditKey{Name: k.Name, KEKID: version, Wrapped: out}); err != nil {
			return keys.Batch{}, err
		}
		done.Rewrapped = 1
	}
	return done, nil
}
