// Package relyingparty is Custodia's WebAuthn relying party: the
// cryptography of passkey ceremonies (mfa.RelyingParty) over
// github.com/go-webauthn/webauthn, in calls that take and give bytes.
//
// It is apart from package mfa because the library's protocol package also
// parses from *http.Request, and the domain packages know nothing of HTTP;
// like a database driver behind sqldb, it is handed to mfa.Service by the
// server.
//
// It promises that the relying party ID is the host of the server's public
// URL and the only accepted origin is that URL's origin, so an answer made
// for another site (a phishing copy) does not verify; that every ceremony
// requires user verification (a PIN or biometric on the authenticator); and
// that no attestation is asked for, so no authenticator identifies its
// owner beyond its model.
package relyingparty

import (
	"encoding/json"
	"fmt"
	"net/url"
	"strings"

	"github.com/go-webauthn/webauthn/protocol"
	"github.com/go-webauthn/webauthn/webauthn"

	"github.com/custodia/custodia/internal/mfa"
)

// RP is a relying party for one public URL.
type RP struct {
	wa *webauthn.WebAuthn
}

var _ mfa.RelyingParty = (*RP)(nil)

// New returns the relying party of the server reached at publicURL
// (https://host[:port]). The host must be a name: WebAuthn refuses IP
// addresses as relying party IDs.
func New(publicURL string) (*RP, error) {
	u, err := url.Parse(publicURL)
	if err != nil || u.Host == "" || u.Scheme != "https" {
		return nil, fmt.Errorf("passkeys need an https public URL, not %q", publicURL)
	}
	if err := protocol.ValidateRPID(u.Hostname()); err != nil {
		return nil, fmt.Errorf("passkeys need a host name in the public URL %q: %w", publicURL, err)
	}
	rpID := strings.ToLower(u.Hostname())
	host := strings.ToLower(u.Host)
	if u.Port() == "443" {
		host = rpID // a browser leaves the default port out of the origin
	}
	wa, err := webauthn.New(&webauthn.Config{
		RPID:                  rpID,
		RPDisplayName:         "Custodia",
		RPOrigins:             []string{"https://" + host},
		AttestationPreference: protocol.PreferNoAttestation,
		AuthenticatorSelection: protocol.AuthenticatorSelection{
			ResidentKey:        protocol.ResidentKeyRequirementPreferred,
			RequireResidentKey: &[]bool{false}[0],
			UserVerification:   protocol.VerificationRequired,
		},
	})
	if err != nil {
		return nil, fmt.Errorf("passkeys: %w", err)
	}
	return &RP{wa: wa}, nil
}

// ID is the relying party ID, the public URL's host.
func (rp *RP) ID() string { return rp.wa.Config.RPID }

// Origin is the one origin answers must come from.
func (rp *RP) Origin() string { return rp.wa.Config.RPOrigins[0] }

// user is an account as go-webauthn wants it.
type user struct {
	u     mfa.PasskeyUser
	creds []webauthn.Credential
}

func (u user) WebAuthnID() []byte                         { return u.u.Handle }
func (u user) WebAuthnName() string                       { return u.u.Name }
func (u user) WebAuthnDisplayName() string                { return u.u.Name }
func (u user) WebAuthnCredentials() []webauthn.Credential { return u.creds }

func toCredential(p mfa.Passkey) webauthn.Credential {
	transports := make([]protocol.AuthenticatorTransport, len(p.Transports))
	for i, t := range p.Transports {
		transports[i] = protocol.AuthenticatorTransport(t)
	}
	return webauthn.Credential{
		ID: p.CredentialID, PublicKey: p.PublicKey,
		AttestationType: p.AttestationType, AttestationFormat: p.AttestationFormat,
		Transport: transports,
		Flags: webauthn.CredentialFlags{
			UserPresent: true, UserVerified: p.UserVerified,
			BackupEligible: p.BackupEligible, BackupState: p.BackupState,
		},
		Authenticator: webauthn.Authenticator{AAGUID: p.AAGUID, SignCount: p.SignCount},
	}
}

func toCredentials(ps []mfa.Passkey) []webauthn.Credential {
	out := make([]webauthn.Credential, len(ps))
	for i, p := range ps {
		out[i] = toCredential(p)
	}
	return out
}

// BeginRegistration implements mfa.RelyingParty.
func (rp *RP) BeginRegistration(u mfa.PasskeyUser, existing []mfa.Passkey) ([]byte, []byte, error) {
	creds := toCredentials(existing)
	creation, session, err := rp.wa.BeginRegistration(user{u: u, creds: creds},
		webauthn.WithExclusions(webauthn.Credentials(creds).CredentialDescriptors()))
	if err != nil {
		return nil, nil, err
	}
	return marshalPair(creation, session)
}

// FinishRegistration implements mfa.RelyingParty.
func (rp *RP) FinishRegistration(u mfa.PasskeyUser, state, response []byte) (mfa.Passkey, error) {
	var session webauthn.SessionData
	if err := json.Unmarshal(state, &session); err != nil {
		return mfa.Passkey{}, fmt.Errorf("read ceremony state: %w", err)
	}
	parsed, err := protocol.ParseCredentialCreationResponseBytes(response)
	if err != nil {
		return mfa.Passkey{}, err
	}
	c, err := rp.wa.CreateCredential(user{u: u}, session, parsed)
	if err != nil {
		return mfa.Passkey{}, err
	}
	if !c.Flags.UserVerified {
		return mfa.Passkey{}, fmt.Errorf("the authenticator did not verify its user")
	}
	transports := make([]string, 0, len(c.Transport))
	for _, t := range c.Transport {
		if s := string(t); s != "" && !strings.ContainsAny(s, " \t\n") && len(s) <= 32 {
			transports = append(transports, s)
		}
	}
	return mfa.Passkey{
		CredentialID: c.ID, PublicKey: c.PublicKey,
		AttestationType: c.AttestationType, AttestationFormat: c.AttestationFormat,
		AAGUID: c.Authenticator.AAGUID, SignCount: c.Authenticator.SignCount, Transports: transports,
		UserVerified: c.Flags.UserVerified, BackupEligible: c.Flags.BackupEligible, BackupState: c.Flags.BackupState,
	}, nil
}

// BeginLogin implements mfa.RelyingParty.
func (rp *RP) BeginLogin(u mfa.PasskeyUser, existing []mfa.Passkey) ([]byte, []byte, error) {
	assertion, session, err := rp.wa.BeginLogin(user{u: u, creds: toCredentials(existing)},
		webauthn.WithUserVerification(protocol.VerificationRequired))
	if err != nil {
		return nil, nil, err
	}
	return marshalPair(assertion, session)
}

// FinishLogin implements mfa.RelyingParty.
func (rp *RP) FinishLogin(u mfa.PasskeyUser, existing []mfa.Passkey, state, response []byte) (mfa.Assertion, error) {
	var session webauthn.SessionData
	if err := json.Unmarshal(state, &session); err != nil {
		return mfa.Assertion{}, fmt.Errorf("read ceremony state: %w", err)
	}
	if session.UserVerification != protocol.VerificationRequired {
		return mfa.Assertion{}, fmt.Errorf("ceremony state without user verification")
	}
	parsed, err := protocol.ParseCredentialRequestResponseBytes(response)
	if err != nil {
		return mfa.Assertion{}, err
	}
	c, err := rp.wa.ValidateLogin(user{u: u, creds: toCredentials(existing)}, session, parsed)
	if err != nil {
		return mfa.Assertion{}, err
	}
	return mfa.Assertion{
		CredentialID: c.ID, SignCount: parsed.Response.AuthenticatorData.Counter,
		CloneWarning: c.Authenticator.CloneWarning, BackupState: c.Flags.BackupState,
	}, nil
}

func marshalPair(options, state any) ([]byte, []byte, error) {
	o, err := json.Marshal(options)
	if err != nil {
		return nil, nil, err
	}
	s, err := json.Marshal(state)
	if err != nil {
		return nil, nil, err
	}
	return o, s, nil
}
