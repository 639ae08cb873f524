-- An authorization the platform granted, waiting for the Herald user who started it to claim it
-- (POST /{platform}/connect/complete). The callback is opened by whoever holds the
-- authorization URL, so it only stores the platform's answer here, sealed, under a one-time code
-- (kept as its SHA-256, never as the code itself); the bearer who claims it must be the user who
-- started the flow.
CREATE TABLE IF NOT EXISTS oauth_completions
(
    code_hash     text   PRIMARY KEY,
    user_id       text   NOT NULL,
    platform      text   NOT NULL,
    nonce         blob  NOT NULL,
    sealed_login  blob  NOT NULL,
    expires_at_ms bigint NOT NULL
);

-- Where the callback sends the browser with that code: a return URL of the client application,
-- one of HERALD_OAUTH_RETURN_URLS; none: the callback answers with the code itself.
ALTER TABLE oauth_pending ADD COLUMN return_url text;
