//go:build pkcs11

package keys

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/miekg/pkcs11"

	"github.com/custodia/custodia/internal/errs"
)

// PKCS11Available reports whether this binary speaks PKCS#11: only when
// built with -tags pkcs11 (cgo), so that the default build stays pure Go.
const PKCS11Available = true

// PKCS11KEK is a key-encryption key held in a PKCS#11 token: a
// non-extractable, sensitive AES-256 key that wraps with CKM_AES_GCM (96-bit
// IV, 128-bit tag, associated data), so the key never leaves the token.
// Versions are keys of the same label whose CKA_ID is the version number;
// the highest is current. A wrapped key: 'P' (0x50) || version (uint32 big
// endian) || 12-byte IV || ciphertext || tag; the associated data names the
// key's label and version too.
type PKCS11KEK struct {
	cfg  PKCS11Config
	ctx  *pkcs11.Ctx
	slot uint

	mu       sync.Mutex // one operation at a time on the one session
	session  pkcs11.SessionHandle
	versions map[uint32]pkcs11.ObjectHandle
	current  uint32
}

var _ Provider = (*PKCS11KEK)(nil)
var _ Rotator = (*PKCS11KEK)(nil)
var _ Retirer = (*PKCS11KEK)(nil)

const (
	pkcs11Format = 'P'
	pkcs11Label  = "custodia.pkcs11-kek.wrap.v1"
	gcmIVSize    = 12
)

// OpenPKCS11 loads the module, logs in to the token and finds the key's
// versions, creating version 1 in the token if the label has none yet.
func OpenPKCS11(_ context.Context, cfg PKCS11Config) (Provider, error) {
	if cfg.Key == "" {
		cfg.Key = "custodia-kek"
	}
	k := &PKCS11KEK{cfg: cfg}
	p, err := loadModule(cfg.Module)
	if err != nil {
		return nil, err
	}
	k.ctx = p
	if err := k.open(); err != nil {
		k.Close()
		return nil, err
	}
	return k, nil
}

// modules are the loaded PKCS#11 modules: a module is initialized once per
// process and finalized when its last user closes.
var modules = struct {
	sync.Mutex
	m map[string]*module
}{m: map[string]*module{}}

type module struct {
	ctx  *pkcs11.Ctx
	refs int
}

func loadModule(path string) (*pkcs11.Ctx, error) {
	modules.Lock()
	defer modules.Unlock()
	if m, ok := modules.m[path]; ok {
		m.refs++
		return m.ctx, nil
	}
	p := pkcs11.New(path)
	if p == nil {
		return nil, errs.E(errs.Invalid, "--pkcs11-module %s cannot be loaded", path)
	}
	if err := p.Initialize(); err != nil {
		p.Destroy()
		return nil, errs.Wrap(errs.Unavailable, err, "PKCS#11 module "+path+": initialize")
	}
	modules.m[path] = &module{ctx: p, refs: 1}
	return p, nil
}

func unloadModule(path string) {
	modules.Lock()
	defer modules.Unlock()
	m, ok := modules.m[path]
	if !ok {
		return
	}
	if m.refs--; m.refs == 0 {
		m.ctx.Finalize()
		m.ctx.Destroy()
		delete(modules.m, path)
	}
}

func (k *PKCS11KEK) unavailable(err error, what string) error {
	return errs.Wrap(errs.Unavailable, err, "PKCS#11 token "+k.cfg.Token+": "+what)
}

func (k *PKCS11KEK) open() error {
	slots, err := k.ctx.GetSlotList(true)
	if err != nil {
		return k.unavailable(err, "list slots")
	}
	found := false
	for _, s := range slots {
		ti, err := k.ctx.GetTokenInfo(s)
		if err == nil && strings.TrimRight(ti.Label, " \x00") == k.cfg.Token {
			k.slot, found = s, true
			break
		}
	}
	if !found {
		return errs.E(errs.Invalid, "no PKCS#11 token labelled %q in %s", k.cfg.Token, k.cfg.Module)
	}
	k.session, err = k.ctx.OpenSession(k.slot, pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION)
	if err != nil {
		return k.unavailable(err, "open a session")
	}
	if err := k.ctx.Login(k.session, pkcs11.CKU_USER, k.cfg.PIN); err != nil && !isAlreadyLoggedIn(err) {
		return errs.E(errs.Invalid, "PKCS#11 token %s refused the PIN", k.cfg.Token)
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.findLocked(); err != nil {
		return err
	}
	if len(k.versions) == 0 {
		if _, err := k.generateLocked(1); err != nil {
			return err
		}
	}
	return nil
}

func isAlreadyLoggedIn(err error) bool {
	e, ok := err.(pkcs11.Error)
	return ok && e == pkcs11.CKR_USER_ALREADY_LOGGED_IN
}

// findLocked reads the versions of the key from the token.
func (k *PKCS11KEK) findLocked() error {
	tmpl := []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY),
		pkcs11.NewAttribute(pkcs11.CKA_LABEL, k.cfg.Key),
	}
	if err := k.ctx.FindObjectsInit(k.session, tmpl); err != nil {
		return k.unavailable(err, "find keys")
	}
	var handles []pkcs11.ObjectHandle
	for {
		hs, _, err := k.ctx.FindObjects(k.session, 32)
		if err != nil {
			k.ctx.FindObjectsFinal(k.session)
			return k.unavailable(err, "find keys")
		}
		if len(hs) == 0 {
			break
		}
		handles = append(handles, hs...)
	}
	if err := k.ctx.FindObjectsFinal(k.session); err != nil {
		return k.unavailable(err, "find keys")
	}
	versions := map[uint32]pkcs11.ObjectHandle{}
	var current uint32
	for _, h := range handles {
		attrs, err := k.ctx.GetAttributeValue(k.session, h, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_ID, nil)})
		if err != nil || len(attrs) != 1 {
			return k.unavailable(err, "read a key's id")
		}
		v, err := strconv.ParseUint(string(attrs[0].Value), 10, 32)
		if err != nil || v == 0 {
			return errs.E(errs.Invalid, "PKCS#11 key %q has id %q, not a version number", k.cfg.Key, attrs[0].Value)
		}
		if _, dup := versions[uint32(v)]; dup {
			return errs.E(errs.Invalid, "PKCS#11 token %s holds two keys %q of version %d; remove one", k.cfg.Token, k.cfg.Key, v)
		}
		versions[uint32(v)] = h
		current = max(current, uint32(v))
	}
	k.versions, k.current = versions, current
	return nil
}

// generateLocked makes version v of the key in the token: AES-256,
// sensitive, never extractable, for encryption and decryption only.
func (k *PKCS11KEK) generateLocked(v uint32) (string, error) {
	tmpl := []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY),
		pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_AES),
		pkcs11.NewAttribute(pkcs11.CKA_VALUE_LEN, 32),
		pkcs11.NewAttribute(pkcs11.CKA_LABEL, k.cfg.Key),
		pkcs11.NewAttribute(pkcs11.CKA_ID, []byte(strconv.FormatUint(uint64(v), 10))),
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true),
		pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, true),
		pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, true),
		pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, false),
		pkcs11.NewAttribute(pkcs11.CKA_ENCRYPT, true),
		pkcs11.NewAttribute(pkcs11.CKA_DECRYPT, true),
		pkcs11.NewAttribute(pkcs11.CKA_WRAP, false),
		pkcs11.NewAttribute(pkcs11.CKA_UNWRAP, false),
	}
	h, err := k.ctx.GenerateKey(k.session, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_KEY_GEN, nil)}, tmpl)
	if err != nil {
		return "", k.unavailable(err, "generate a key")
	}
	k.versions[v], k.current = h, v
	return k.idOf(v), nil
}

func (k *PKCS11KEK) idOf(v uint32) string {
	return "pkcs11:" + k.cfg.Key + ":v" + strconv.FormatUint(uint64(v), 10)
}

// ID names the current version: "pkcs11:<key label>:v<N>".
func (k *PKCS11KEK) ID() string {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.idOf(k.current)
}

// Name is "pkcs11".
func (k *PKCS11KEK) Name() string { return "pkcs11" }

func pkcs11AD(v uint32, label string, ad []byte) []byte {
	b := appendFields(nil, pkcs11Label, label)
	b = binary.BigEndian.AppendUint32(b, v)
	return append(b, ad...)
}

// Wrap encrypts with the current version in the token.
func (k *PKCS11KEK) Wrap(_ context.Context, plaintext, ad []byte) ([]byte, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	v := k.current
	iv := make([]byte, gcmIVSize)
	if _, err := rand.Read(iv); err != nil {
		return nil, errs.Wrap(errs.Internal, err, "wrap data key: read random IV")
	}
	params := pkcs11.NewGCMParams(iv, pkcs11AD(v, k.cfg.Key, ad), 128)
	defer params.Free()
	if err := k.ctx.EncryptInit(k.session, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_GCM, params)}, k.versions[v]); err != nil {
		return nil, k.unavailable(err, "encrypt")
	}
	ct, err := k.ctx.Encrypt(k.session, plaintext)
	if err != nil {
		return nil, k.unavailable(err, "encrypt")
	}
	if got := params.IV(); len(got) == gcmIVSize {
		iv = got // some tokens choose the IV themselves
	}
	out := make([]byte, 0, 5+gcmIVSize+len(ct))
	out = append(out, pkcs11Format)
	out = binary.BigEndian.AppendUint32(out, v)
	out = append(out, iv...)
	return append(out, ct...), nil
}

func parsePKCS11(wrapped []byte) (uint32, []byte, []byte, bool) {
	if len(wrapped) < 5+gcmIVSize+TagSize || wrapped[0] != pkcs11Format {
		return 0, nil, nil, false
	}
	v := binary.BigEndian.Uint32(wrapped[1:5])
	return v, wrapped[5 : 5+gcmIVSize], wrapped[5+gcmIVSize:], v > 0
}

// Unwrap decrypts what Wrap made with the same ad, with the version it
// names, reading the token's keys again if that version is new here. A
// tampered key, or one moved to another row, is ErrUnwrap.
func (k *PKCS11KEK) Unwrap(_ context.Context, wrapped, ad []byte) ([]byte, error) {
	v, iv, ct, ok := parsePKCS11(wrapped)
	if !ok {
		return nil, ErrUnwrap
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	h, ok := k.versions[v]
	if !ok {
		if err := k.findLocked(); err != nil {
			return nil, err
		}
		if h, ok = k.versions[v]; !ok {
			return nil, ErrUnwrap
		}
	}
	params := pkcs11.NewGCMParams(slices.Clone(iv), pkcs11AD(v, k.cfg.Key, ad), 128)
	defer params.Free()
	if err := k.ctx.DecryptInit(k.session, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_GCM, params)}, h); err != nil {
		return nil, k.unavailable(err, "decrypt")
	}
	pt, err := k.ctx.Decrypt(k.session, ct)
	if err != nil {
		if tokenGone(err) {
			return nil, k.unavailable(err, "decrypt")
		}
		// A tag that does not verify: CKR_ENCRYPTED_DATA_INVALID by the
		// standard, CKR_GENERAL_ERROR from SoftHSM2.
		return nil, ErrUnwrap
	}
	return pt, nil
}

// tokenGone reports whether a PKCS#11 error means the token, its session
// or the device cannot be used now, rather than that the input was bad.
func tokenGone(err error) bool {
	e, ok := err.(pkcs11.Error)
	if !ok {
		return true
	}
	switch e {
	case pkcs11.CKR_DEVICE_ERROR, pkcs11.CKR_DEVICE_MEMORY, pkcs11.CKR_DEVICE_REMOVED, pkcs11.CKR_TOKEN_NOT_PRESENT,
		pkcs11.CKR_SESSION_CLOSED, pkcs11.CKR_SESSION_HANDLE_INVALID, pkcs11.CKR_USER_NOT_LOGGED_IN,
		pkcs11.CKR_CRYPTOKI_NOT_INITIALIZED, pkcs11.CKR_HOST_MEMORY, pkcs11.CKR_FUNCTION_FAILED:
		return true
	}
	return false
}

// Owns reports whether wrapped is in this provider's format.
func (k *PKCS11KEK) Owns(wrapped []byte) bool {
	_, _, _, ok := parsePKCS11(wrapped)
	return ok
}

// VersionOf reads the version from the wrapped key.
func (k *PKCS11KEK) VersionOf(_ context.Context, wrapped, _ []byte) (string, error) {
	v, _, _, ok := parsePKCS11(wrapped)
	if !ok {
		return "", ErrUnwrap
	}
	return k.idOf(v), nil
}

// Knows reports whether id names a version of this key in the token.
func (k *PKCS11KEK) Knows(id string) bool {
	rest, ok := strings.CutPrefix(id, "pkcs11:"+k.cfg.Key+":v")
	v, err := strconv.ParseUint(rest, 10, 32)
	if !ok || err != nil {
		return false
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if _, ok := k.versions[uint32(v)]; ok {
		return true
	}
	if k.findLocked() != nil {
		return false
	}
	_, ok = k.versions[uint32(v)]
	return ok
}

// Check reads the key's versions from the token, which answers only while
// the token is there and the session logged in.
func (k *PKCS11KEK) Check(context.Context) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.findLocked(); err != nil {
		return err
	}
	if len(k.versions) == 0 {
		return errs.E(errs.Unavailable, "PKCS#11 token %s holds no key %q", k.cfg.Token, k.cfg.Key)
	}
	return nil
}

// Versions lists the versions in the token, the current one first.
func (k *PKCS11KEK) Versions() []string {
	k.mu.Lock()
	defer k.mu.Unlock()
	vs := make([]uint32, 0, len(k.versions))
	for v := range k.versions {
		vs = append(vs, v)
	}
	slices.Sort(vs)
	slices.Reverse(vs)
	out := make([]string, len(vs))
	for i, v := range vs {
		out[i] = k.idOf(v)
	}
	return out
}

// RotateKEK generates the next version in the token and makes it current.
func (k *PKCS11KEK) RotateKEK(context.Context) (string, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.findLocked(); err != nil {
		return "", err
	}
	return k.generateLocked(k.current + 1)
}

// RetireKEK destroys an older version in the token. The caller must have
// made sure no wrapped key needs it; the current version is never retired.
func (k *PKCS11KEK) RetireKEK(_ context.Context, id string) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.findLocked(); err != nil {
		return err
	}
	for v, h := range k.versions {
		if k.idOf(v) != id {
			continue
		}
		if v == k.current {
			return errs.E(errs.Invalid, "the current key-encryption key cannot be retired")
		}
		if err := k.ctx.DestroyObject(k.session, h); err != nil {
			return k.unavailable(err, "destroy version "+id)
		}
		delete(k.versions, v)
	}
	return nil
}

// Close logs out and unloads the module.
func (k *PKCS11KEK) Close() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.session != 0 && k.ctx != nil {
		k.ctx.CloseSession(k.session)
		k.session = 0
	}
	if k.ctx != nil {
		unloadModule(k.cfg.Module)
		k.ctx = nil
	}
	return nil
}

func (k *PKCS11KEK) String() string { return "PKCS#11 key " + k.cfg.Key + " in token " + k.cfg.Token }
