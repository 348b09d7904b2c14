-- The alert watcher's place is set when the schema is made, not at the
-- watcher's first round: an alert raised between an instance's first start
-- and that round (an account locked in its first seconds) is announced too.
-- On a database whose watcher has run already this changes nothing; on one
-- whose watcher never ran, the place is the end of the log, as the first
-- round would have set it.
INSERT OR IGNORE INTO alert_watch (name, next_seq)
	SELECT 'alerts', COALESCE(MAX(seq) + 1, 0) FROM audit_log;
