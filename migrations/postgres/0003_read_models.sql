-- Read models built by projections; rebuildable from the events (herald replay).
CREATE TABLE IF NOT EXISTS job_views
(
    job_id             text PRIMARY KEY,
    user_id            text    NOT NULL,
    connection_id      text    NOT NULL,
    platform           text    NOT NULL,
    status             text    NOT NULL,
    text_preview       text    NOT NULL,
    part_count         integer NOT NULL,
    media_count        integer NOT NULL,
    publish_at_ms      bigint,
    attempts           integer NOT NULL,
    max_attempts       integer NOT NULL,
    uploads            text    NOT NULL,
    post_id            text,
    post_url           text,
    post_ids           text    NOT NULL,
    last_error_class   text,
    last_error_code    text,
    last_error_message text,
    retry_at_ms        bigint,
    created_at_ms      bigint  NOT NULL,
    updated_at_ms      bigint  NOT NULL,
    published_at_ms    bigint
);
CREATE INDEX IF NOT EXISTS job_views_user ON job_views (user_id, created_at_ms);

CREATE TABLE IF NOT EXISTS connection_views
(
    connection_id       text PRIMARY KEY,
    user_id             text   NOT NULL,
    platform            text   NOT NULL,
    account_id          text   NOT NULL,
    username            text   NOT NULL,
    display_name        text   NOT NULL,
    status              text   NOT NULL,
    status_reason       text,
    scopes              text   NOT NULL,
    token_expires_at_ms bigint,
    can_refresh         integer NOT NULL,
    connected_at_ms     bigint NOT NULL,
    updated_at_ms       bigint NOT NULL
);
CREATE INDEX IF NOT EXISTS connection_views_user ON connection_views (user_id);
CREATE INDEX IF NOT EXISTS job_views_user_status ON job_views (user_id, status, created_at_ms);
