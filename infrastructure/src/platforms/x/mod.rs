//! X (Twitter) API v2 adapter.
