//! Fault injection shared by all platform twins.
//!
//! Faults are queued per endpoint and consumed in FIFO order; each queued fault
//! applies to `times` consecutive requests. A fault queued for the wildcard
//! endpoint applies to any request whose own queue is empty.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A misbehaviour a twin can be told to exhibit, tagged by `"kind"` in JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Fault {
    /// Answer 429 with `Retry-After` and an exhausted rate-limit window.
    RateLimited {
        /// Seconds until the client may retry.
        retry_after_secs: u64,
    },
    /// Answer with this 5xx status and the platform's error body.
    ServerError {
        /// HTTP status, 500..=599.
        status: u16,
    },
    /// Sleep, then answer 503 without any effect (the client should time out first).
    Timeout {
        /// Seconds to sleep (fractions allowed).
        secs: f64,
    },
    /// Perform the real effect, then sleep before answering, so the client
    /// times out without learning the outcome.
    TimeoutAfterSuccess {
        /// Seconds to sleep (fractions allowed).
        secs: f64,
    },
    /// Media processing takes this long.
    SlowProcessing {
        /// Seconds of processing (fractions allowed).
        secs: f64,
    },
    /// Media processing ends in `failed`.
    RejectMedia,
    /// The caller's access token is treated as expired from now on.
    ExpireToken,
    /// The caller's whole grant (access and refresh tokens) is revoked.
    RevokeGrant,
    /// The content is refused by the platform's policy checks (403).
    ContentRejected {
        /// Problem detail returned to the client.
        #[serde(default = "default_rejection_detail")]
        detail: String,
    },
}

fn default_rejection_detail() -> String {
    "This request looks like it might be automated.".to_owned()
}

impl Fault {
    /// Checks the parameters (status range, finite durations).
    pub fn validate(&self) -> Result<(), String> {
        match self {
            Fault::ServerError { status } if !(500..=599).contains(status) => Err(format!(
                "server_error status must be 500..=599, got {status}"
            )),
            Fault::Timeout { secs }
            | Fault::TimeoutAfterSuccess { secs }
            | Fault::SlowProcessing { secs }
                if !(secs.is_finite() && *secs >= 0.0 && *secs <= 86_400.0) =>
            {
                Err(format!("secs must be within 0..=86400, got {secs}"))
            }
            _ => Ok(()),
        }
    }
}

/// Converts fault seconds (already validated) into a `Duration`.
pub fn secs(secs: f64) -> Duration {
    Duration::from_secs_f64(secs.clamp(0.0, 86_400.0))
}

/// One queued fault and how many more requests it applies to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueuedFault<E> {
    /// Endpoint the fault is queued for.
    pub endpoint: E,
    /// The fault.
    pub fault: Fault,
    /// Requests it still applies to.
    pub remaining: u32,
}

/// Per-endpoint FIFO queues of faults; `any` is the wildcard endpoint key.
#[derive(Debug)]
pub struct FaultQueue<E> {
    any: E,
    queues: HashMap<E, VecDeque<QueuedFault<E>>>,
}

impl<E: Copy + Eq + Hash> FaultQueue<E> {
    /// An empty queue whose wildcard endpoint is `any`.
    pub fn new(any: E) -> Self {
        Self {
            any,
            queues: HashMap::new(),
        }
    }

    /// Queues `fault` for the next `times` requests to `endpoint` (0 is a no-op).
    pub fn push(&mut self, endpoint: E, fault: Fault, times: u32) {
        if times == 0 {
            return;
        }
        self.queues
            .entry(endpoint)
            .or_default()
            .push_back(QueuedFault {
                endpoint,
                fault,
                remaining: times,
            });
    }

    /// Consumes one application of the next fault for `endpoint`, falling back
    /// to the wildcard queue.
    pub fn take(&mut self, endpoint: E) -> Option<Fault> {
        self.take_from(endpoint)
            .or_else(|| self.take_from(self.any))
    }

    fn take_from(&mut self, key: E) -> Option<Fault> {
        let queue = self.queues.get_mut(&key)?;
        let front = queue.front_mut()?;
        let fault = front.fault.clone();
        front.remaining -= 1;
        if front.remaining == 0 {
            queue.pop_front();
        }
        Some(fault)
    }

    /// Removes every queued fault, returning how many entries were dropped.
    pub fn clear(&mut self) -> usize {
        let n = self.queues.values().map(VecDeque::len).sum();
        self.queues.clear();
        n
    }

    /// All queued faults (order within an endpoint is FIFO).
    pub fn pending(&self) -> Vec<QueuedFault<E>> {
        self.queues
            .values()
            .flat_map(|q| q.iter().cloned())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    enum Ep {
        A,
        B,
        Any,
    }

    #[test]
    fn fifo_per_endpoint_with_times() {
        let mut q = FaultQueue::new(Ep::Any);
        q.push(Ep::A, Fault::RejectMedia, 2);
        q.push(Ep::A, Fault::ExpireToken, 1);
        assert_eq!(q.take(Ep::B), None);
        assert_eq!(q.take(Ep::A), Some(Fault::RejectMedia));
        assert_eq!(q.take(Ep::A), Some(Fault::RejectMedia));
        assert_eq!(q.take(Ep::A), Some(Fault::ExpireToken));
        assert_eq!(q.take(Ep::A), None);
    }

    #[test]
    fn wildcard_applies_when_specific_queue_empty() {
        let mut q = FaultQueue::new(Ep::Any);
        q.push(Ep::Any, Fault::ServerError { status: 503 }, 1);
        q.push(Ep::A, Fault::RejectMedia, 1);
        assert_eq!(q.take(Ep::A), Some(Fault::RejectMedia));
        assert_eq!(q.take(Ep::B), Some(Fault::ServerError { status: 503 }));
        assert_eq!(q.take(Ep::A), None);
    }

    #[test]
    fn fault_json_format() {
        let f: Fault =
            serde_json::from_str(r#"{"kind":"rate_limited","retry_after_secs":7}"#).unwrap();
        assert_eq!(
            f,
            Fault::RateLimited {
                retry_after_secs: 7
            }
        );
        let f: Fault = serde_json::from_str(r#"{"kind":"content_rejected"}"#).unwrap();
        assert!(matches!(f, Fault::ContentRejected { .. }));
        assert!(Fault::ServerError { status: 404 }.validate().is_err());
        assert!(Fault::Timeout { secs: -1.0 }.validate().is_err());
    }
}
