-- Data keys of the identity database (CRY-04, CRY-09): the same shape as the
-- clinical database's data_keys, without the reference to organizations,
-- which live in the clinical database only. It holds each participant's own
-- key (scope_kind 'participant', scope_id the pseudonym), which seals that
-- participant's identifying data and nothing else, and each organization's
-- blind-index key ('index'). Erasure (LIFE-03) destroys a participant's key:
-- wrapped becomes NULL and destroyed_at is set.
CREATE TABLE data_keys (
	id           TEXT NOT NULL,
	version      INTEGER NOT NULL CHECK (version >= 1),
	org_id       TEXT NOT NULL,
	scope_kind   TEXT NOT NULL CHECK (scope_kind IN ('org', 'study', 'participant', 'index')),
	scope_id     TEXT NOT NULL,
	kek_id       TEXT NOT NULL,
	wrapped      BLOB,
	created_at   BIGINT NOT NULL,
	destroyed_at BIGINT,
	PRIMARY KEY (id, version),
	UNIQUE (org_id, scope_kind, scope_id, version),
	CHECK ((wrapped IS NULL) = (destroyed_at IS NOT NULL))
);

-- Identifying data of participants (CRY-09), linked to the clinical
-- database by the pseudonym alone. Every value is sealed under the
-- participant's key and bound to organization, study, pseudonym and field
-- (CRY-05); NULL means not given. national_id_index is a blind index of the
-- normalized national id (HMAC under a key derived from the organization's
-- index key), so a second enrolment of one person in a study is refused
-- without the id being stored in clear.
CREATE TABLE identities (
	participant_id    TEXT PRIMARY KEY,
	org_id            TEXT NOT NULL,
	study_id          TEXT NOT NULL,
	name              BLOB,
	birth_date        BLOB,
	email             BLOB,
	phone             BLOB,
	national_id       BLOB,
	national_id_index TEXT,
	created_at        BIGINT NOT NULL
);
CREATE UNIQUE INDEX identities_national_id ON identities (org_id, study_id, national_id_index);
CREATE INDEX identities_created ON identities (created_at);
