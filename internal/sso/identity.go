package sso

import (
	"errors"
	"slices"
	"strings"

	"github.com/custodia/custodia/internal/accounts"
)

// Identity is the person a provider's verified answer names, read as the
// provider's settings say.
type Identity struct {
	Issuer, Subject string
	// Email is the normalized e-mail address of EmailClaim.
	Email string
	// Name is the name the provider gives, if any, for a new account.
	Name   string
	Groups []string
	// SecondFactor: the provider proved a second factor the organization
	// accepts (Provider.ProvesSecondFactor).
	SecondFactor bool
}

// Identity reads the person from c: their e-mail address (from
// EmailClaim; from "email" only with email_verified true) within the
// allowed domains, their groups (from GroupsClaim) and whether the
// provider proved a second factor. An address that is missing, unverified
// or malformed is the refusal ReasonEmail, one outside the allowed domains
// ReasonDomain.
func (p Provider) Identity(c Claims) (Identity, error) {
	id := Identity{Issuer: c.Issuer, Subject: c.Subject, SecondFactor: p.ProvesSecondFactor(c)}
	if c.Subject == "" {
		return Identity{}, Refuse(ReasonToken, errors.New("no subject"))
	}
	raw, _ := c.Raw[p.EmailClaim].(string)
	if p.EmailClaim == "email" {
		if verified, _ := c.Raw["email_verified"].(bool); !verified {
			return Identity{}, Refuse(ReasonEmail, errors.New("email not verified"))
		}
	}
	email, err := accounts.NormalizeEmail(raw)
	if err != nil {
		return Identity{}, Refuse(ReasonEmail, errors.New("no e-mail address in "+p.EmailClaim))
	}
	id.Email = email
	if len(p.AllowedDomains) > 0 && !slices.Contains(p.AllowedDomains, email[strings.LastIndexByte(email, '@')+1:]) {
		return Identity{}, Refuse(ReasonDomain, nil)
	}
	if name, ok := c.Raw["name"].(string); ok {
		if n, err := accounts.CheckDisplayName(name); err == nil {
			id.Name = n
		}
	}
	switch g := c.Raw[p.GroupsClaim].(type) {
	case []any:
		for _, v := range g {
			if s, ok := v.(string); ok && s != "" {
				id.Groups = append(id.Groups, s)
			}
		}
	case string:
		// One group, as some providers send a single value.
		if g != "" {
			id.Groups = []string{g}
		}
	}
	return id, nil
}

// ProvesSecondFactor reports whether the provider's answer proves a
// second factor that the organization accepts in place of its own: only
// where it says so (AcceptProviderMFA), by one of its amr values or its
// acr value.
func (p Provider) ProvesSecondFactor(c Claims) bool {
	if !p.AcceptProviderMFA {
		return false
	}
	for _, m := range c.AMR {
		if slices.Contains(p.MFAAMR, m) {
			return true
		}
	}
	return c.ACR != "" && slices.Contains(p.MFAACR, c.ACR)
}
