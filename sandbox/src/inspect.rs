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
