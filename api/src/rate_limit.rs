//! Per-user API rate limits: a token bucket (GCRA, by `governor`) per user and route class, so
//! one user's burst of requests is answered 429 while everyone else's go on. Every answer to an
//! authenticated request says where its user stands, in the IETF `RateLimit-Policy` and
//! `RateLimit` headers (draft-ietf-httpapi-ratelimit-headers); a refusal adds `Retry-After`.
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use actix_web::http::{Method, StatusCode};
use actix_web::HttpMessage;
use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::{DefaultKeyedRateLimiter, Quota};

use crate::problem::ApiError;

/// Which budget a request spends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteClass {
    /// Reads: jobs, connections, history.
    Queries,
    /// Everything that changes something: publish, schedule, connect, retry, cancel, disconnect.
    Commands,
}

impl RouteClass {
    pub fn of(method: &Method) -> Self {
        if method == Method::GET || method == Method::HEAD {
            Self::Queries
        } else {
            Self::Commands
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Queries => "queries",
            Self::Commands => "commands",
        }
    }
}

type Limiter = DefaultKeyedRateLimiter<String, StateInformationMiddleware>;

/// One class's budget: `per_minute` requests per user and minute, all of them at once at most.
struct Budget {
    per_minute: NonZeroU32,
    limiter: Limiter,
}

/// Where a user stands after a request, for its response's headers.
#[derive(Debug, Clone)]
pub struct Standing {
    class: RouteClass,
    per_minute: u32,
    remaining: u32,
}

impl Standing {
    /// `RateLimit-Policy` and `RateLimit` as the draft names them.
    pub fn headers(&self) -> [(&'static str, String); 2] {
        let name = self.class.name();
        // Seconds until the bucket is full again, at `per_minute` a minute.
        let used = self.per_minute.saturating_sub(self.remaining);
        let reset = (u64::from(used) * 60).div_ceil(u64::from(self.per_minute.max(1)));
        [
            (
                "ratelimit-policy",
                format!("\"{name}\";q={};w=60", self.per_minute),
            ),
            (
                "ratelimit",
                format!("\"{name}\";r={};t={reset}", self.remaining),
            ),
        ]
    }
}

/// The per-user limits of this process. Each API process counts on its own: behind a load
/// balancer spreading users over N processes a user gets up to N times the budget.
#[derive(Clone, Default)]
pub struct ApiRateLimits {
    queries: Option<Arc<Budget>>,
    commands: Option<Arc<Budget>>,
}

impl ApiRateLimits {
    /// Budgets per user and minute for each class; 0 switches a class's limit off.
    pub fn new(queries_per_minute: u32, commands_per_minute: u32) -> Self {
        let budget = |per_minute: u32| {
            NonZeroU32::new(per_minute).map(|per_minute| {
                Arc::new(Budget {
                    per_minute,
                    limiter: governor::RateLimiter::keyed(Quota::per_minute(per_minute))
                        .with_middleware::<StateInformationMiddleware>(),
                })
            })
        };
        Self {
            queries: budget(queries_per_minute),
            commands: budget(commands_per_minute),
        }
    }

    /// Spends one request of `user`'s `class` budget, or says when the next one is allowed.
    pub fn spend(&self, user: &str, class: RouteClass) -> Result<Option<Standing>, ApiError> {
        let budget = match class {
            RouteClass::Queries => &self.queries,
            RouteClass::Commands => &self.commands,
        };
        let Some(budget) = budget else {
            return Ok(None);
        };
        let per_minute = budget.per_minute.get();
        match budget.limiter.check_key(&user.to_owned()) {
            Ok(snapshot) => Ok(Some(Standing {
                class,
                per_minute,
                remaining: snapshot.remaining_burst_capacity(),
            })),
            Err(not_until) => {
                let wait = not_until.wait_time_from(DefaultClock::default().now());
                let seconds = wait.max(Duration::from_millis(1)).as_secs_f64().ceil() as u64;
                let standing = Standing {
                    class,
                    per_minute,
                    remaining: 0,
                };
                let [policy, state] = standing.headers();
                Err(ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "rate-limited",
                    format!(
                        "more than {per_minute} {} a minute for this user: try again in {seconds} s",
                        class.name()
                    ),
                )
                .with_header("Retry-After", seconds.to_string())
                .with_header(policy.0, policy.1)
                .with_header(state.0, state.1))
            }
        }
    }

    /// Spends a request's budget and keeps the standing for its response's headers.
    pub fn spend_for(&self, req: &actix_web::HttpRequest, user: &str) -> Result<(), ApiError> {
        if let Some(standing) = self.spend(user, RouteClass::of(req.method()))? {
            req.extensions_mut().insert(standing);
        }
        Ok(())
    }

    /// Drops users who have not asked for a while, so the table stays as small as the set of
    /// active users.
    pub fn forget_idle(&self) {
        for budget in [&self.queries, &self.commands].into_iter().flatten() {
            budget.limiter.retain_recent();
            budget.limiter.shrink_to_fit();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_users_budget_runs_out_and_others_are_untouched() {
        let limits = ApiRateLimits::new(3, 0);
        for left in [2, 1, 0] {
            let standing = limits.spend("alice", RouteClass::Queries).unwrap().unwrap();
            assert_eq!(standing.remaining, left);
        }
        let refused = limits.spend("alice", RouteClass::Queries).unwrap_err();
        assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
        let retry_after: u64 = refused
            .headers
            .iter()
            .find(|(name, _)| *name == "Retry-After")
            .map(|(_, value)| value.parse().unwrap())
            .unwrap();
        // One request comes back every 20 s at 3 a minute.
        assert!((1..=20).contains(&retry_after), "{retry_after}");
        assert!(limits.spend("bob", RouteClass::Queries).is_ok());
        // Commands are not limited here (0).
        assert!(limits
            .spend("alice", RouteClass::Commands)
            .unwrap()
            .is_none());
    }

    #[test]
    fn the_headers_follow_the_ietf_draft() {
        let standing = Standing {
            class: RouteClass::Commands,
            per_minute: 120,
            remaining: 118,
        };
        let [policy, state] = standing.headers();
        assert_eq!(
            policy,
            ("ratelimit-policy", "\"commands\";q=120;w=60".into())
        );
        assert_eq!(state, ("ratelimit", "\"commands\";r=118;t=1".into()));
    }
}
