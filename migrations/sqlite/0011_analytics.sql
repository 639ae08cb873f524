-- The analytics read model (issue 12): publishing figures per user, connection and hour,
-- rebuilt from the PublishingJob events by `herald replay`. A day is the sum of its hours.

-- What the projection must remember about each job between its events (who, where, when it was
-- accepted and due, what its uploads weigh), and each published job's latencies: percentiles
-- over any range are computed exactly from these rows.
CREATE TABLE IF NOT EXISTS analytics_jobs
(
    job_id                  text PRIMARY KEY,
    user_id                 text   NOT NULL,
    connection_id           text   NOT NULL,
    platform                text   NOT NULL,
    accepted_at_ms          bigint NOT NULL,
    due_at_ms               bigint NOT NULL,
    upload_bytes            text   NOT NULL,
    published_at_ms         bigint,
    accepted_to_published_ms bigint,
    due_to_published_ms     bigint
);
CREATE INDEX IF NOT EXISTS analytics_jobs_published ON analytics_jobs (user_id, published_at_ms);
CREATE INDEX IF NOT EXISTS analytics_jobs_published_all ON analytics_jobs (published_at_ms);

-- Counters per hour in which the events happened.
CREATE TABLE IF NOT EXISTS analytics_hourly
(
    user_id          text   NOT NULL,
    connection_id    text   NOT NULL,
    platform         text   NOT NULL,
    hour_ms          bigint NOT NULL,
    accepted         bigint NOT NULL,
    published        bigint NOT NULL,
    failed           bigint NOT NULL,
    cancelled        bigint NOT NULL,
    attempts         bigint NOT NULL,
    retries          bigint NOT NULL,
    limit_waits      bigint NOT NULL,
    bytes_uploaded   bigint NOT NULL,
    PRIMARY KEY (user_id, connection_id, hour_ms)
);
CREATE INDEX IF NOT EXISTS analytics_hourly_hour ON analytics_hourly (hour_ms);

-- Failed attempts per hour, error class and code, with the latest message and its job.
CREATE TABLE IF NOT EXISTS analytics_errors
(
    user_id         text   NOT NULL,
    connection_id   text   NOT NULL,
    platform        text   NOT NULL,
    hour_ms         bigint NOT NULL,
    error_class     text   NOT NULL,
    error_code      text   NOT NULL,
    failures        bigint NOT NULL,
    latest_at_ms    bigint NOT NULL,
    latest_job_id   text   NOT NULL,
    latest_message  text   NOT NULL,
    PRIMARY KEY (user_id, connection_id, hour_ms, error_class, error_code)
);
CREATE INDEX IF NOT EXISTS analytics_errors_hour ON analytics_errors (hour_ms);
