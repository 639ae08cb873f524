-- Outbound webhooks: the users' subscriptions, the deliveries the event log gives them, and
-- every attempt at sending one.

-- A user's endpoint and the event types it wants. The signing secret is sealed with the vault
-- key (associated data: the subscription id) and shown only in the creation response.
CREATE TABLE IF NOT EXISTS webhook_subscriptions
(
    subscription_id      text   PRIMARY KEY,
    user_id              text   NOT NULL,
    url                  text   NOT NULL,
    -- Comma-separated event type names (job.published,...).
    event_types          text   NOT NULL,
    nonce                bytea  NOT NULL,
    sealed_secret        bytea  NOT NULL,
    key_id               text   NOT NULL,
    -- active, or disabled (deliveries kept failing, with the reason).
    status               text   NOT NULL,
    disabled_reason      text,
    disabled_at_ms       bigint,
    consecutive_failures bigint NOT NULL DEFAULT 0,
    created_at_ms        bigint NOT NULL
);
CREATE INDEX IF NOT EXISTS webhook_subscriptions_user ON webhook_subscriptions (user_id);

-- One event for one subscription. The id is the Standard Webhooks `webhook-id`, derived from the
-- subscription and the event's stream and sequence, so recording it again changes nothing and a
-- receiver sees the same id on every retry. The body is kept as first built, so every attempt
-- sends the same bytes. A subscription's deliveries of one stream (a job, a connection) are
-- sent in sequence order: only the lowest pending one is ever claimed.
CREATE TABLE IF NOT EXISTS webhook_deliveries
(
    delivery_id         text   PRIMARY KEY,
    subscription_id     text   NOT NULL,
    user_id             text   NOT NULL,
    event_type          text   NOT NULL,
    stream_id           text   NOT NULL,
    stream_seq          bigint NOT NULL,
    body                text   NOT NULL,
    occurred_at_ms      bigint NOT NULL,
    created_at_ms       bigint NOT NULL,
    -- pending, delivered, or failed (gave up at the end of the retry window).
    status              text   NOT NULL,
    attempts            bigint NOT NULL DEFAULT 0,
    next_attempt_at_ms  bigint NOT NULL,
    first_attempt_at_ms bigint,
    delivered_at_ms     bigint,
    last_status_code    bigint,
    last_error          text,
    -- Which worker holds it (a fresh token per claim) and until when.
    lease_token         text,
    lease_until_ms      bigint NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS webhook_deliveries_due
    ON webhook_deliveries (next_attempt_at_ms) WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS webhook_deliveries_stream
    ON webhook_deliveries (subscription_id, stream_id, stream_seq) WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS webhook_deliveries_listed
    ON webhook_deliveries (subscription_id, created_at_ms);

-- Every attempt at sending a delivery, for its owner to see.
CREATE TABLE IF NOT EXISTS webhook_attempts
(
    delivery_id      text    NOT NULL,
    attempt_number   bigint  NOT NULL,
    attempted_at_ms  bigint  NOT NULL,
    status_code      bigint,
    latency_ms       bigint  NOT NULL,
    error            text,
    next_retry_at_ms bigint,
    PRIMARY KEY (delivery_id, attempt_number)
);
