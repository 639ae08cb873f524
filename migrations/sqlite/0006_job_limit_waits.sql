-- Attempts that ended waiting for a rate limit or quota: they do not use up the retry budget,
-- so a job view shows them beside its attempts.
ALTER TABLE job_views ADD COLUMN limit_waits integer NOT NULL DEFAULT 0;
