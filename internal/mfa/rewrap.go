package mfa

import "github.com/custodia/custodia/internal/gate"

// Secrets is the table of wrapped factor secrets, TOTP secrets and the
// phone numbers of text-message factors, as a keys.WrappedStore: a
// rotation of the key-encryption key re-wraps them with the data keys
// (CRY-07), recorded as mfa.secrets.rewrap. A factor's secret is bound to
// what it is: a TOTP secret, or the phone number of a text-message factor.
func Secrets(g *gate.Gate) *gate.WrappedTable {
	return &gate.WrappedTable{Gate: g, Label: "TOTP secrets", Action: "mfa.secrets",
		Table: "account_factors", Key: "id", KEKID: "kek_id", Wrapped: "wrapped", Bound: []string{"account_id", "kind"},
		AD: func(id string, bound []string) []byte {
			if bound[1] == "sms" {
				return phoneAD(bound[0], id)
			}
			return secretAD(bound[0], id)
		}}
}
