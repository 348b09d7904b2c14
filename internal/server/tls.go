// Package server holds the HTTPS front of Custodia.
package server

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/custodia/custodia/internal/atomicfile"
	"github.com/custodia/custodia/internal/errs"
)

// Names of the self-signed pair inside the data directory.
const (
	selfSignedSubdir   = "tls"
	selfSignedCertName = "self-signed.crt"
	selfSignedKeyName  = "self-signed.key"
)

// selfSignedMinRemaining is how long an existing self-signed certificate must
// still be valid to be reused; a certificate closer to its expiry is replaced.
const selfSignedMinRemaining = 7 * 24 * time.Hour

// selfSignedLifetime is the validity of a new self-signed certificate.
const selfSignedLifetime = 365 * 24 * time.Hour

// tls12CipherSuites are the only suites offered for TLS 1.2 (CRY-01): ECDHE
// key exchange for forward secrecy and AEAD encryption. TLS 1.3 suites are
// not configurable in crypto/tls and are all AEAD.
var tls12CipherSuites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
}

// curvePreferences lists the key exchanges the server accepts. The hybrid
// post-quantum X25519MLKEM768 is used by TLS 1.3 clients that offer it.
var curvePreferences = []tls.CurveID{
	tls.X25519MLKEM768,
	tls.X25519,
	tls.CurveP256,
	tls.CurveP384,
}

// TLSConfig returns the server TLS configuration required by control CRY-01:
// TLS 1.2 at least, TLS 1.3 whenever the client supports it, and for TLS 1.2
// only ECDHE key exchange with AEAD ciphers.
func TLSConfig(cert tls.Certificate) *tls.Config {
	return &tls.Config{
		MinVersion:       tls.VersionTLS12,
		MaxVersion:       tls.VersionTLS13,
		CipherSuites:     append([]uint16(nil), tls12CipherSuites...),
		CurvePreferences: append([]tls.CurveID(nil), curvePreferences...),
		NextProtos:       []string{"h2", "http/1.1"},
		Certificates:     []tls.Certificate{cert},
	}
}

// LoadCertificate loads a PEM certificate chain and its private key. The
// first certificate of certFile is the leaf; it must match the key and be
// valid now. The returned certificate has Leaf set.
func LoadCertificate(certFile, keyFile string) (tls.Certificate, error) {
	return loadCertificate(certFile, keyFile, time.Now())
}

func loadCertificate(certFile, keyFile string, now time.Time) (tls.Certificate, error) {
	certPEM, err := readPEMFile(certFile, "TLS certificate")
	if err != nil {
		return tls.Certificate{}, err
	}
	keyPEM, err := readPEMFile(keyFile, "TLS key")
	if err != nil {
		return tls.Certificate{}, err
	}

	leaf, err := parseLeaf(certFile, certPEM)
	if err != nil {
		return tls.Certificate{}, err
	}
	key, err := parseKey(keyFile, keyPEM)
	if err != nil {
		return tls.Certificate{}, err
	}
	pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(leaf.PublicKey) {
		return tls.Certificate{}, errs.E(errs.Invalid,
			"TLS key %s does not match the certificate in %s", keyFile, certFile)
	}
	if now.Before(leaf.NotBefore) {
		return tls.Certificate{}, errs.E(errs.Invalid,
			"TLS certificate %s is not valid yet: its validity starts %s",
			certFile, leaf.NotBefore.UTC().Format(time.RFC3339))
	}
	if now.After(leaf.NotAfter) {
		return tls.Certificate{}, errs.E(errs.Invalid,
			"TLS certificate %s expired on %s",
			certFile, leaf.NotAfter.UTC().Format(time.RFC3339))
	}

	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return tls.Certificate{}, errs.Wrap(errs.Invalid, err,
			fmt.Sprintf("cannot use TLS certificate %s with key %s", certFile, keyFile))
	}
	cert.Leaf = leaf
	return cert, nil
}

// readPEMFile reads a file named by the user, with an error that says which
// file is at fault and why.
func readPEMFile(path, what string) ([]byte, error) {
	data, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, errs.Wrap(errs.Invalid, err, fmt.Sprintf("%s file %s does not exist", what, path))
	case errors.Is(err, fs.ErrPermission):
		return nil, errs.Wrap(errs.Invalid, err, fmt.Sprintf("%s file %s is not readable: permission denied", what, path))
	case err != nil:
		return nil, errs.Wrap(errs.Invalid, err, fmt.Sprintf("cannot read %s file %s", what, path))
	}
	return data, nil
}

// parseLeaf returns the first certificate of a PEM chain, after checking that
// every certificate of the chain parses.
func parseLeaf(path string, data []byte) (*x509.Certificate, error) {
	var leaf *x509.Certificate
	sawPEM := false
	for rest := data; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		sawPEM = true
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, errs.Wrap(errs.Invalid, err,
				fmt.Sprintf("TLS certificate file %s holds a corrupt certificate", path))
		}
		if leaf == nil {
			leaf = c
		}
	}
	switch {
	case leaf != nil:
		return leaf, nil
	case sawPEM:
		return nil, errs.E(errs.Invalid, "TLS certificate file %s holds no CERTIFICATE block", path)
	default:
		return nil, errs.E(errs.Invalid, "TLS certificate file %s is not a PEM certificate", path)
	}
}

// parseKey returns the first private key of a PEM file.
func parseKey(path string, data []byte) (crypto.Signer, error) {
	sawPEM := false
	for rest := data; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		sawPEM = true
		if block.Type == "ENCRYPTED PRIVATE KEY" || strings.Contains(block.Headers["Proc-Type"], "ENCRYPTED") {
			return nil, errs.E(errs.Invalid,
				"TLS key %s is encrypted with a passphrase; an unencrypted key is needed", path)
		}
		if block.Type != "PRIVATE KEY" && !strings.HasSuffix(block.Type, " PRIVATE KEY") {
			continue
		}
		var key any
		var err error
		if key, err = x509.ParsePKCS8PrivateKey(block.Bytes); err != nil {
			if key, err = x509.ParsePKCS1PrivateKey(block.Bytes); err != nil {
				key, err = x509.ParseECPrivateKey(block.Bytes)
			}
		}
		if err != nil {
			return nil, errs.Wrap(errs.Invalid, err,
				fmt.Sprintf("TLS key file %s holds a corrupt private key", path))
		}
		signer, ok := key.(crypto.Signer)
		if !ok {
			return nil, errs.E(errs.Invalid, "TLS key file %s holds an unsupported kind of private key", path)
		}
		return signer, nil
	}
	if sawPEM {
		return nil, errs.E(errs.Invalid, "TLS key file %s holds no PRIVATE KEY block", path)
	}
	return nil, errs.E(errs.Invalid, "TLS key file %s is not a PEM private key", path)
}

// SelfSignedCertificate returns the self-signed certificate kept under
// dir/tls, creating it (created is true) when it is missing, unreadable,
// does not name every host, or expires within 7 days. The certificate always
// names localhost, 127.0.0.1 and ::1 besides hosts. An existing key that other
// users can read is refused rather than used or replaced, since it may have
// leaked.
func SelfSignedCertificate(dir string, hosts []string) (cert tls.Certificate, created bool, err error) {
	tlsDir := filepath.Join(dir, selfSignedSubdir)
	certPath := filepath.Join(tlsDir, selfSignedCertName)
	keyPath := filepath.Join(tlsDir, selfSignedKeyName)

	dnsNames, ips := splitHosts(hosts)
	now := time.Now()

	fi, err := os.Stat(keyPath)
	switch {
	case err == nil:
		if runtime.GOOS != "windows" && fi.Mode().Perm()&0o077 != 0 {
			return tls.Certificate{}, false, errs.E(errs.Invalid,
				"TLS key %s is readable by other users (mode %04o); restrict it with chmod 600 or delete it to generate a new one",
				keyPath, fi.Mode().Perm())
		}
		existing, err := loadCertificate(certPath, keyPath, now)
		if err == nil && reusable(existing.Leaf, dnsNames, ips, now) {
			return existing, false, nil
		}
	case !errors.Is(err, fs.ErrNotExist):
		return tls.Certificate{}, false, errs.Wrap(errs.Invalid, err,
			fmt.Sprintf("cannot inspect TLS key %s", keyPath))
	}

	certPEM, keyPEM, err := newSelfSigned(dnsNames, ips, now)
	if err != nil {
		return tls.Certificate{}, false, err
	}
	if err := os.MkdirAll(tlsDir, 0o700); err != nil {
		return tls.Certificate{}, false, errs.Wrap(errs.Invalid, err,
			fmt.Sprintf("cannot create TLS directory %s", tlsDir))
	}
	if err := atomicfile.Write(keyPath, keyPEM, 0o600); err != nil {
		return tls.Certificate{}, false, errs.Wrap(errs.Invalid, err,
			fmt.Sprintf("cannot write TLS key %s", keyPath))
	}
	if err := atomicfile.Write(certPath, certPEM, 0o644); err != nil {
		return tls.Certificate{}, false, errs.Wrap(errs.Invalid, err,
			fmt.Sprintf("cannot write TLS certificate %s", certPath))
	}

	cert, err = tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return tls.Certificate{}, false, errs.Wrap(errs.Internal, err, "cannot load the new self-signed TLS certificate")
	}
	if cert.Leaf == nil {
		if cert.Leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return tls.Certificate{}, false, errs.Wrap(errs.Internal, err, "cannot load the new self-signed TLS certificate")
		}
	}
	return cert, true, nil
}

// splitHosts turns host names and addresses into the SANs of a self-signed
// certificate, always including the loopback names. A port, as in
// "example.org:8443", is dropped. Unspecified addresses
// such as 0.0.0.0 are left out: no client connects to them by that name.
func splitHosts(hosts []string) (dnsNames []string, ips []net.IP) {
	seenDNS := map[string]bool{}
	seenIP := map[string]bool{}
	add := func(h string) {
		h = strings.TrimSpace(h)
		if net.ParseIP(h) == nil {
			if host, _, err := net.SplitHostPort(h); err == nil {
				h = host
			}
		}
		h = strings.TrimSuffix(strings.TrimPrefix(h, "["), "]")
		if h == "" {
			return
		}
		if ip := net.ParseIP(h); ip != nil {
			if ip.IsUnspecified() {
				return
			}
			if v4 := ip.To4(); v4 != nil {
				ip = v4
			}
			if !seenIP[ip.String()] {
				seenIP[ip.String()] = true
				ips = append(ips, ip)
			}
			return
		}
		h = strings.ToLower(strings.TrimSuffix(h, "."))
		if h != "" && !seenDNS[h] {
			seenDNS[h] = true
			dnsNames = append(dnsNames, h)
		}
	}
	for _, h := range []string{"localhost", "127.0.0.1", "::1"} {
		add(h)
	}
	for _, h := range hosts {
		add(h)
	}
	return dnsNames, ips
}

// reusable reports whether an existing self-signed leaf may be served again.
func reusable(leaf *x509.Certificate, dnsNames []string, ips []net.IP, now time.Time) bool {
	if leaf == nil || now.Before(leaf.NotBefore) || leaf.NotAfter.Sub(now) <= selfSignedMinRemaining {
		return false
	}
	for _, name := range dnsNames {
		if leaf.VerifyHostname(name) != nil {
			return false
		}
	}
	for _, ip := range ips {
		if leaf.VerifyHostname(ip.String()) != nil {
			return false
		}
	}
	return true
}

// newSelfSigned creates an ECDSA P-256 self-signed server certificate and
// returns it and its PKCS #8 key, PEM encoded.
func newSelfSigned(dnsNames []string, ips []net.IP, now time.Time) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, errs.Wrap(errs.Internal, err, "cannot generate a TLS key")
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, nil, errs.Wrap(errs.Internal, err, "cannot generate a certificate serial number")
	}
	commonName := "localhost"
	for _, n := range dnsNames {
		if n != "localhost" {
			commonName = n
			break
		}
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: commonName, Organization: []string{"Custodia self-signed"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(selfSignedLifetime),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  false,
		DNSNames:              dnsNames,
		IPAddresses:           ips,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, errs.Wrap(errs.Invalid, err,
			fmt.Sprintf("cannot create a self-signed TLS certificate for %s", strings.Join(dnsNames, ", ")))
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, errs.Wrap(errs.Internal, err, "cannot encode the TLS key")
	}
	certPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	return certPEM, keyPEM, nil
}

// leafOf returns the parsed leaf of cert, or nil when it has none.
func leafOf(cert tls.Certificate) *x509.Certificate {
	if cert.Leaf != nil {
		return cert.Leaf
	}
	if len(cert.Certificate) == 0 {
		return nil
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		return nil
	}
	return leaf
}

// Fingerprint returns the SHA-256 of the leaf certificate as uppercase hex
// bytes separated by colons, the way browsers show it. It is empty for a
// certificate without a leaf.
func Fingerprint(cert tls.Certificate) string {
	var der []byte
	switch {
	case cert.Leaf != nil:
		der = cert.Leaf.Raw
	case len(cert.Certificate) > 0:
		der = cert.Certificate[0]
	default:
		return ""
	}
	sum := sha256.Sum256(der)
	var b strings.Builder
	b.Grow(len(sum)*3 - 1)
	const hexDigits = "0123456789ABCDEF"
	for i, c := range sum {
		if i > 0 {
			b.WriteByte(':')
		}
		b.WriteByte(hexDigits[c>>4])
		b.WriteByte(hexDigits[c&0x0f])
	}
	return b.String()
}

// IsSelfSigned reports whether the leaf of cert names itself as issuer and
// is signed by its own key. A leaf that names itself as issuer but is signed
// with an algorithm too weak to check (such as SHA-1) also counts as
// self-signed: nothing vouches for it either way.
func IsSelfSigned(cert tls.Certificate) bool {
	leaf := leafOf(cert)
	if leaf == nil || !bytes.Equal(leaf.RawIssuer, leaf.RawSubject) {
		return false
	}
	err := leaf.CheckSignature(leaf.SignatureAlgorithm, leaf.RawTBSCertificate, leaf.Signature)
	if err == nil {
		return true
	}
	var weak x509.InsecureAlgorithmError
	return errors.As(err, &weak)
}
