//! Request log shared by the twins' inspection endpoints.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

/// Most recent requests kept per twin; benchmarks would otherwise grow it forever.
const MAX_RECORDS: usize = 10_000;

/// One request a twin received.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestRecord {
    /// HTTP method.
    pub method: String,
    /// Request path without the query string (queries may carry PKCE secrets).
    pub path: String,
    /// Response status; `None` while in flight or if the client went away first.
    pub status: Option<u16>,
    /// RFC 3339 time the request arrived.
    pub at: String,
}

/// Bounded, append-only request log.
#[derive(Debug, Default)]
pub struct RequestLog {
    next_seq: u64,
    records: VecDeque<(u64, RequestRecord)>,
}

impl RequestLog {
    /// Records an arriving request and returns its sequence number.
    pub fn start(&mut self, method: &str, path: &str) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        if self.records.len() == MAX_RECORDS {
            self.records.pop_front();
        }
        self.records.push_back((
            seq,
            RequestRecord {
                method: method.to_owned(),
                path: path.to_owned(),
                status: None,
                at: crate::rfc3339_now(),
            },
        ));
        seq
    }

    /// Sets the response status of request `seq` (if still kept).
    pub fn finish(&mut self, seq: u64, status: u16) {
        if let Some((_, rec)) = self.records.iter_mut().rev().find(|(s, _)| *s == seq) {
            rec.status = Some(status);
        }
    }

    /// All kept records, oldest first.
    pub fn records(&self) -> Vec<RequestRecord> {
        self.records.iter().map(|(_, r)| r.clone()).collect()
    }
}

/// A twin's scope under `path` that records every request but its own control routes
/// (`{path}/_sandbox/...`) in the twin's request log, with the response status.
pub(crate) fn recorded_scope<S: Send + Sync + 'static>(
    path: &'static str,
    state: std::sync::Arc<S>,
    start: fn(&S, &str, &str) -> u64,
    finish: fn(&S, u64, u16),
) -> actix_web::Scope<
    impl actix_web::dev::ServiceFactory<
        actix_web::dev::ServiceRequest,
        Config = (),
        Response = actix_web::dev::ServiceResponse<actix_web::body::BoxBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    use actix_web::dev::Service as _;
    let control = format!("{path}/_sandbox");
    actix_web::web::scope(path).wrap_fn(move |req, srv| {
        let seq = (!req.path().starts_with(&control))
            .then(|| start(&state, req.method().as_str(), req.path()));
        let fut = srv.call(req);
        let state = state.clone();
        async move {
            let res = fut.await?;
            if let Some(seq) = seq {
                finish(&state, seq, res.status().as_u16());
            }
            Ok(res)
        }
    })
}
