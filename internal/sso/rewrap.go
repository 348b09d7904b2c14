package sso

import "github.com/custodia/custodia/internal/gate"

// Secrets is the table of providers' wrapped client secrets as a
// keys.WrappedStore: a rotation of the key-encryption key re-wraps them
// with the data keys (CRY-07), recorded as sso.secrets.rewrap. A secret is
// bound to its organization, issuer and client id.
func Secrets(g *gate.Gate) *gate.WrappedTable {
	return &gate.WrappedTable{Gate: g, Label: "single sign-on client secrets", Action: "sso.secrets",
		Table: "sso_providers", Key: "org_id", KEKID: "kek_id", Wrapped: "client_secret", Bound: []string{"issuer", "client_id"},
		AD: func(org string, bound []string) []byte { return SecretAD(org, bound[0], bound[1]) }}
}
