-- Conversations between a care provider and their client (ACL-05, ACL-06),
-- optionally with others of the participant's care team. Each has a key of
-- its own, sealed (sealed_key) under the participant's key in the identity
-- database, so that erasing the participant (LIFE-03) leaves every message
-- and attachment unopenable; message bodies and attachments (their content
-- and their names) are sealed under it (CRY-03), bound to the conversation
-- and the message (CRY-05). last_seq numbers the messages; a member's
-- read_seq is the last one they marked read (unread counts). A purged
-- participant takes their conversations with them.
CREATE TABLE conversations (
	id             TEXT PRIMARY KEY,
	org_id         TEXT NOT NULL,
	study_id       TEXT NOT NULL,
	site_id        TEXT NOT NULL,
	participant_id TEXT NOT NULL,
	sealed_key     BYTEA NOT NULL,
	last_seq       BIGINT NOT NULL DEFAULT 0 CHECK (last_seq >= 0),
	last_at        BIGINT NOT NULL,
	created_by     TEXT NOT NULL REFERENCES accounts (id),
	created_at     BIGINT NOT NULL,
	FOREIGN KEY (org_id, participant_id) REFERENCES participants (org_id, id) ON DELETE CASCADE
);
CREATE INDEX conversations_participant ON conversations (org_id, participant_id);
CREATE TABLE conversation_members (
	conversation_id TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
	account_id      TEXT NOT NULL REFERENCES accounts (id),
	read_seq        BIGINT NOT NULL DEFAULT 0 CHECK (read_seq >= 0),
	added_by        TEXT NOT NULL REFERENCES accounts (id),
	added_at        BIGINT NOT NULL,
	PRIMARY KEY (conversation_id, account_id)
);
CREATE INDEX conversation_members_account ON conversation_members (account_id);
CREATE TABLE conversation_attachments (
	id              TEXT PRIMARY KEY,
	conversation_id TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
	sealed_name     BYTEA NOT NULL,
	media_type      TEXT NOT NULL,
	size            BIGINT NOT NULL CHECK (size >= 0),
	sealed          BYTEA NOT NULL
);
CREATE TABLE conversation_messages (
	id              TEXT PRIMARY KEY,
	conversation_id TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
	seq             BIGINT NOT NULL CHECK (seq > 0),
	author_id       TEXT NOT NULL REFERENCES accounts (id),
	sealed_body     BYTEA NOT NULL,
	attachment_id   TEXT REFERENCES conversation_attachments (id) ON DELETE CASCADE,
	created_at      BIGINT NOT NULL,
	UNIQUE (conversation_id, seq)
);
CREATE INDEX conversation_messages_attachment ON conversation_messages (attachment_id);
