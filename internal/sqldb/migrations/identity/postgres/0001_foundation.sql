-- Instance identity, shared with the clinical database (see there).
CREATE TABLE instance (
	singleton   INTEGER PRIMARY KEY CHECK (singleton = 1),
	instance_id TEXT NOT NULL,
	created_at  BIGINT NOT NULL
);
