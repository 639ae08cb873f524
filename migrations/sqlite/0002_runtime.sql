-- Consumer bookkeeping, scheduler, vault, idempotency keys and OAuth state.

-- Per consumer (projection or process manager) and stream, the last aggregate sequence applied,
-- written in the same transaction as the consumer's effect (ARCHITECTURE invariant 3).
CREATE TABLE IF NOT EXISTS consumer_stream_positions
(
    consumer      text   NOT NULL,
    stream_id     text   NOT NULL,
    last_sequence bigint NOT NULL,
    PRIMARY KEY (consumer, stream_id)
);

-- Offsets of consumers of the local event log (Kafka keeps its own).
CREATE TABLE IF NOT EXISTS log_consumer_offsets
(
    consumer text   PRIMARY KEY,
    position bigint NOT NULL
);

-- Messages a consumer could not handle after retries, kept so nothing is silently skipped.
CREATE TABLE IF NOT EXISTS parked_messages
(
    id          integer PRIMARY KEY AUTOINCREMENT,
    consumer    text   NOT NULL,
    topic       text   NOT NULL,
    partition   integer NOT NULL,
    "offset"    bigint NOT NULL,
    stream_id   text   NOT NULL,
    sequence    bigint NOT NULL,
    error       text   NOT NULL,
    payload     text   NOT NULL,
    parked_at   bigint NOT NULL
);

-- Jobs that are due at some time; claimed by one worker at a time through a lease.
CREATE TABLE IF NOT EXISTS job_schedule
(
    job_id        text   PRIMARY KEY,
    due_at_ms     bigint NOT NULL,
    lease_owner   text,
    lease_until_ms bigint NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS job_schedule_due ON job_schedule (due_at_ms);

-- Encrypted tokens (XChaCha20-Poly1305, associated data = connection id).
CREATE TABLE IF NOT EXISTS token_vault
(
    connection_id text   PRIMARY KEY,
    nonce         blob  NOT NULL,
    ciphertext    blob  NOT NULL,
    key_id        text   NOT NULL,
    updated_at_ms bigint NOT NULL
);

-- Pending OAuth authorizations: state → who asked, with the PKCE verifier encrypted.
CREATE TABLE IF NOT EXISTS oauth_pending
(
    state          text   PRIMARY KEY,
    user_id        text   NOT NULL,
    platform       text   NOT NULL,
    redirect_uri   text   NOT NULL,
    nonce          blob  NOT NULL,
    sealed_verifier blob NOT NULL,
    expires_at_ms  bigint NOT NULL
);

-- Idempotency-Key → the response already given.
CREATE TABLE IF NOT EXISTS idempotency_keys
(
    user_id       text   NOT NULL,
    key           text   NOT NULL,
    request_hash  text   NOT NULL,
    response      text   NOT NULL,
    created_at_ms bigint NOT NULL,
    PRIMARY KEY (user_id, key)
);

-- Single-flight token refresh across processes.
CREATE TABLE IF NOT EXISTS refresh_locks
(
    connection_id text PRIMARY KEY,
    owner         text   NOT NULL,
    until_ms      bigint NOT NULL
);

-- Shared rate-limit state (ARCHITECTURE invariant 6): per platform, account and endpoint.
CREATE TABLE IF NOT EXISTS rate_limits
(
    bucket        text   PRIMARY KEY,
    remaining     bigint NOT NULL,
    reset_at_ms   bigint NOT NULL,
    blocked_until_ms bigint NOT NULL DEFAULT 0
);
