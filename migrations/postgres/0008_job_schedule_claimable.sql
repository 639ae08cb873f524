-- A row can be claimed once it is due and no live lease holds it: from GREATEST(due_at_ms,
-- lease_until_ms) on. Indexing that one value lets a claim read only claimable rows in order,
-- instead of scanning every due row and skipping the leased ones (about 2,000 per claim
-- under load with only due_at_ms indexed).
CREATE INDEX IF NOT EXISTS job_schedule_claimable ON job_schedule (GREATEST(due_at_ms, lease_until_ms));
