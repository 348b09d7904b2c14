-- Network restriction (ACL-07): the address ranges from which an
-- organization, or one study of it, may be reached. A row with no study_id
-- belongs to the organization, a row with one to that study. A scope without
-- rows is not restricted; a study's ranges apply on top of its
-- organization's. Ranges are stored in canonical CIDR form.
CREATE TABLE network_ranges (
	org_id     TEXT NOT NULL REFERENCES organizations (id),
	study_id   TEXT,
	prefix     TEXT NOT NULL,
	created_at BIGINT NOT NULL,
	FOREIGN KEY (org_id, study_id) REFERENCES studies (org_id, id)
);
CREATE UNIQUE INDEX network_ranges_unique
	ON network_ranges (org_id, COALESCE(study_id, ''), prefix);
