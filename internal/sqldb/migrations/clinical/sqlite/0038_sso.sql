-- Single sign-on with an organization's OpenID Connect provider (AUTH-13).
-- Times are Unix microseconds.

-- An organization's provider: its issuer and client, the client's secret
-- wrapped by the key-encryption key named in kek_id (bound to the
-- organization, issuer and client id), and how the provider's answer is
-- read: which claim holds the e-mail address and which the groups, the
-- groups' roles (role_map, a JSON array of {group, role, study, site}), the
-- e-mail domains it may sign in (space-separated), whether it may create
-- accounts, and whether its own second factor (amr or acr values,
-- space-separated) stands for the organization's.
CREATE TABLE sso_providers (
	org_id              TEXT PRIMARY KEY REFERENCES organizations (id),
	issuer              TEXT NOT NULL,
	client_id           TEXT NOT NULL,
	client_secret       BLOB NOT NULL,
	kek_id              TEXT NOT NULL,
	scopes              TEXT NOT NULL DEFAULT '',
	email_claim         TEXT NOT NULL,
	groups_claim        TEXT NOT NULL,
	role_map            TEXT NOT NULL DEFAULT '[]',
	allowed_domains     TEXT NOT NULL DEFAULT '',
	create_accounts     BOOLEAN NOT NULL DEFAULT FALSE,
	accept_provider_mfa BOOLEAN NOT NULL DEFAULT FALSE,
	mfa_amr             TEXT NOT NULL DEFAULT '',
	mfa_acr             TEXT NOT NULL DEFAULT '',
	updated_at          BIGINT NOT NULL
);

-- A sign-in in progress at a provider: the digest of its state (the value
-- the provider hands back) and of the binding secret its browser holds in a
-- cookie, from which the PKCE verifier is derived (so neither is stored),
-- the nonce the ID token must carry and the page to return to. A flow is
-- spent once (used_at) and ends at expires_at.
CREATE TABLE sso_flows (
	id           TEXT PRIMARY KEY,
	state_hash   TEXT NOT NULL UNIQUE,
	binding_hash TEXT NOT NULL,
	org_id       TEXT NOT NULL REFERENCES organizations (id),
	nonce        TEXT NOT NULL,
	next_path    TEXT NOT NULL,
	created_at   BIGINT NOT NULL,
	expires_at   BIGINT NOT NULL,
	used_at      BIGINT
);
CREATE INDEX sso_flows_expires ON sso_flows (expires_at);

-- The account a provider's subject signs in to, linked at its first
-- sign-in (by its e-mail address, or by the account made for it).
CREATE TABLE sso_identities (
	org_id       TEXT NOT NULL REFERENCES organizations (id),
	issuer       TEXT NOT NULL,
	subject      TEXT NOT NULL,
	account_id   TEXT NOT NULL REFERENCES accounts (id),
	created_at   BIGINT NOT NULL,
	last_used_at BIGINT NOT NULL,
	PRIMARY KEY (org_id, issuer, subject)
);
CREATE INDEX sso_identities_account ON sso_identities (account_id);

-- The role assignments a provider's groups gave (sign-in keeps them as the
-- groups say; others are an administrator's and left alone), by the
-- assignment's id; a row whose assignment was removed meanwhile is cleared
-- at the account's next sign-in.
CREATE TABLE sso_grants (
	assignment_id TEXT PRIMARY KEY,
	org_id        TEXT NOT NULL REFERENCES organizations (id),
	account_id    TEXT NOT NULL REFERENCES accounts (id),
	created_at    BIGINT NOT NULL
);
CREATE INDEX sso_grants_account ON sso_grants (org_id, account_id);
