-- Arms of a study: a visit may be held in some arms only (arms, the keys
-- of those arms separated by commas; empty: every arm), and a participant
-- is assigned to one arm (NULL: none yet, so only the visits of every arm
-- are theirs). The study's arms are those its visits name.
ALTER TABLE visits ADD COLUMN arms TEXT NOT NULL DEFAULT '';
ALTER TABLE participants ADD COLUMN arm TEXT;
