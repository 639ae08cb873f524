-- Fair claiming across users. Each schedule row carries its user and its rank in that user's
-- backlog when it was scheduled (how many of the user's jobs were already waiting). Claims take
-- claimable rows ordered by claimable time plus 100 ms per rank, so one user's 10,000 waiting
-- jobs stand behind another user's first few instead of in front of all of them; a user alone
-- still runs at full speed (the rank only orders, it never delays a claim).
ALTER TABLE job_schedule ADD COLUMN user_id text NOT NULL DEFAULT '';
ALTER TABLE job_schedule ADD COLUMN user_rank bigint NOT NULL DEFAULT 0;

-- Each user's jobs in the schedule, for the next rank.
CREATE TABLE IF NOT EXISTS schedule_user_load
(
    user_id text   PRIMARY KEY,
    pending bigint NOT NULL
);

CREATE INDEX IF NOT EXISTS job_schedule_fair
    ON job_schedule ((GREATEST(due_at_ms, lease_until_ms) + user_rank * 100));
