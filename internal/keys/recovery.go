package keys

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/fips140"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"os"
	"path/filepath"

	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/chacha20poly1305"

	"github.com/custodia/custodia/internal/atomicfile"
	"github.com/custodia/custodia/internal/errs"
)

// Recovery material is the local key-encryption key (every version of the
// key file) encrypted to a passphrase, for safekeeping away from the
// server: with it and a backup of the databases, the data can be read again
// after the data folder is lost. It is made only on a request approved by a
// second administrator (CRY-08, package keys/keyadmin).
//
// The passphrase becomes a key through argon2id (per-file random salt); the
// key file is sealed with XChaCha20-Poly1305, whose associated data is the
// file's header (format, KDF and its parameters, salt), so that no part of
// it can be changed without the material failing to open.
//
// In FIPS mode (CRY-11) only approved algorithms make new material: the
// key comes from PBKDF2-HMAC-SHA-256 and seals with AES-256-GCM. Material of
// either kind opens in either mode.
type recoveryFile struct {
	Format  string `json:"format"`
	KDF     string `json:"kdf"`
	Time    uint32 `json:"argon2_time"`
	Memory  uint32 `json:"argon2_memory_kib"`
	Threads uint8  `json:"argon2_threads"`
	// Iterations is PBKDF2's count, for KDF pbkdf2-sha256 only.
	Iterations uint32 `json:"pbkdf2_iterations,omitempty"`
	Salt       []byte `json:"salt"`
	Nonce      []byte `json:"nonce"`
	Sealed     []byte `json:"sealed"`
}

const (
	recoveryFormat = "custodia-kek-recovery-v1"
	// MinRecoveryPassphrase is the shortest passphrase recovery material
	// is encrypted to.
	MinRecoveryPassphrase = 16
	maxRecoveryMemory     = 1 << 20 // KiB: 1 GiB, bounding what a file may ask
	maxRecoveryTime       = 16
	// recoveryIterations is PBKDF2's count for new FIPS-mode material
	// (OWASP's 600,000 for passwords, doubled: the material is attacked
	// offline); maxRecoveryIterations bounds what a file may ask.
	recoveryIterations    = 1_200_000
	maxRecoveryIterations = 20_000_000
	kdfArgon2             = "argon2id"
	kdfPBKDF2             = "pbkdf2-sha256"
)

// recoveryParams are the argon2id parameters of new material: stronger
// than a password's, because the material is attacked offline.
var recoveryParams = struct {
	time, memory uint32
	threads      uint8
}{time: 3, memory: 128 << 10, threads: 4}

func (f recoveryFile) ad() []byte {
	h := f
	h.Nonce, h.Sealed = nil, nil
	b, _ := json.Marshal(h)
	return b
}

// RecoveryMaterial returns k's key file encrypted to passphrase.
func RecoveryMaterial(k *LocalKEK, passphrase []byte) ([]byte, error) {
	if len(passphrase) < MinRecoveryPassphrase {
		return nil, errs.E(errs.Invalid, "the passphrase must be at least %d characters", MinRecoveryPassphrase)
	}
	text, err := k.keyFile()
	if err != nil {
		return nil, err
	}
	defer clear(text)
	f := recoveryFile{Format: recoveryFormat, KDF: kdfArgon2, Time: recoveryParams.time, Memory: recoveryParams.memory,
		Threads: recoveryParams.threads, Salt: make([]byte, 16), Nonce: make([]byte, chacha20poly1305.NonceSizeX)}
	if fipsEnabled() {
		f = recoveryFile{Format: recoveryFormat, KDF: kdfPBKDF2, Iterations: recoveryIterations,
			Salt: make([]byte, 16)} // AES-GCM draws its own nonce
	}
	rand.Read(f.Salt)  // never fails (crypto/rand docs)
	rand.Read(f.Nonce) // idem
	a, err := f.aead(passphrase)
	if err != nil {
		return nil, errs.Wrap(errs.Internal, err, "recovery material")
	}
	f.Sealed = a.Seal(nil, f.Nonce, text, f.ad())
	out, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return nil, errs.Wrap(errs.Internal, err, "recovery material")
	}
	return append(out, '\n'), nil
}

// ErrRecovery answers material that does not open: a wrong passphrase, or
// a damaged or altered file. It never says which.
var ErrRecovery = errs.E(errs.Invalid, "the recovery material does not open with this passphrase, or it is damaged")

// OpenRecovery decrypts recovery material and returns the key file it
// holds, checked. The caller clears it.
func OpenRecovery(material, passphrase []byte) ([]byte, error) {
	var f recoveryFile
	if err := json.Unmarshal(material, &f); err != nil || f.Format != recoveryFormat || !f.valid() {
		return nil, ErrRecovery
	}
	var text []byte
	var err error
	open := func() {
		var a cipher.AEAD
		if a, err = f.aead(passphrase); err == nil {
			text, err = a.Open(nil, f.Nonce, f.Sealed, f.ad())
		}
	}
	if f.KDF == kdfArgon2 {
		// Material made before FIPS mode was switched on still opens
		// when the module is enforced, as sealed values do (CRY-11).
		fips140.WithoutEnforcement(open)
	} else {
		open()
	}
	if err != nil {
		return nil, ErrRecovery
	}
	keys, err := parseLocalKEK(text)
	if err != nil {
		clear(text)
		return nil, ErrRecovery
	}
	for _, k := range keys {
		clear(k)
	}
	return text, nil
}

// valid checks the header's parameters, bounding the work a file may ask.
func (f recoveryFile) valid() bool {
	if len(f.Salt) < 16 {
		return false
	}
	switch f.KDF {
	case kdfArgon2:
		return len(f.Nonce) == chacha20poly1305.NonceSizeX && f.Iterations == 0 &&
			f.Time >= 1 && f.Time <= maxRecoveryTime && f.Threads >= 1 &&
			f.Memory >= 8*uint32(f.Threads) && f.Memory <= maxRecoveryMemory
	case kdfPBKDF2:
		return len(f.Nonce) == 0 && f.Time == 0 && f.Memory == 0 && f.Threads == 0 &&
			f.Iterations >= recoveryIterations/2 && f.Iterations <= maxRecoveryIterations
	}
	return false
}

// aead derives the key from the passphrase by the file's KDF and returns
// the AEAD that goes with it: XChaCha20-Poly1305 after argon2id, AES-256-GCM
// after PBKDF2 (its nonce inside Sealed).
func (f recoveryFile) aead(passphrase []byte) (cipher.AEAD, error) {
	if f.KDF == kdfPBKDF2 {
		key, err := pbkdf2.Key(sha256.New, string(passphrase), f.Salt, int(f.Iterations), 32)
		if err != nil {
			return nil, err
		}
		defer clear(key)
		b, err := aes.NewCipher(key)
		if err != nil {
			return nil, err
		}
		// The module's GCM with a nonce of its own drawing, prefixed to the
		// output: the GCM that FIPS 140-3 mode approves.
		return cipher.NewGCMWithRandomNonce(b)
	}
	key := argon2.IDKey(passphrase, f.Salt, f.Time, f.Memory, f.Threads, 32)
	defer clear(key)
	return chacha20poly1305.NewX(key)
}

// RestoreLocalKEK writes a key file recovered with OpenRecovery into a data
// folder that has none: it never replaces a key file.
func RestoreLocalKEK(dataDir string, keyFile []byte) error {
	keys, err := parseLocalKEK(keyFile)
	if err != nil {
		return ErrRecovery
	}
	for _, k := range keys {
		clear(k)
	}
	dir := filepath.Join(dataDir, filepath.Dir(LocalKEKFile))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return errs.Wrap(errs.Invalid, err, "create key folder "+dir)
	}
	path := filepath.Join(dataDir, LocalKEKFile)
	if err := atomicfile.Create(path, keyFile, 0o600); err != nil {
		if os.IsExist(err) {
			return errs.E(errs.Conflict, "%s exists already; move it away first", path)
		}
		return errs.Wrap(errs.Invalid, err, "write key-encryption key "+path)
	}
	return nil
}
