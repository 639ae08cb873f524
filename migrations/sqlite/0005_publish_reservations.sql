-- Publishes reserved from a platform's rolling posts-per-24-hours quota (Instagram, Threads),
-- shared by every worker (ARCHITECTURE invariant 6). What is used is the platform's live count
-- plus the reservations that count may not include yet.

-- One row per quota: every reservation updates it first, so reservations of one quota are taken
-- one at a time whatever the number of workers.
CREATE TABLE IF NOT EXISTS publish_quotas
(
    quota        text   PRIMARY KEY,
    reservations bigint NOT NULL
);

-- One row per reserved publish until it leaves the window or its publish is refused.
CREATE TABLE IF NOT EXISTS publish_reservations
(
    id              text   PRIMARY KEY,
    quota           text   NOT NULL,
    reserved_at_ms  bigint NOT NULL,
    -- When it no longer counts: the window after the reservation, plus the longest a publish
    -- call can take.
    expires_at_ms   bigint NOT NULL,
    -- When the platform answered with the post; NULL while in flight or when the outcome is
    -- unknown (then it counts until it expires).
    published_at_ms bigint
);
CREATE INDEX IF NOT EXISTS publish_reservations_quota ON publish_reservations (quota, expires_at_ms);
