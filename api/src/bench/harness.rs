//! What `herald bench peer` shares with the queue-bench harness (`/work/shared/queue-bench`,
//! `lib/common.js` and `bench.js`): its arguments, its job text, its percentile and its
//! one-line result. Pure, so the shapes the harness reads are tested here.
use std::fmt::Write;

use clap::ValueEnum;

/// The harness's `--mode`. It passes `burst` with `--task noop` for its burst-noop row; a
/// `burst-noop` mode is taken too, meaning the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// Enqueue every job while no worker runs, then start the workers and drain.
    Burst,
    /// Workers running; open-loop enqueues at `--rate` for `--warmup` + `--duration` seconds.
    Steady,
    /// `burst` with `--task noop`.
    BurstNoop,
}

/// The harness's `--task`: what a job does once a worker has it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Task {
    /// Publish the post to the harness's platform (`POST /2/tweets`).
    Http,
    /// Everything Herald does for a job except the request to the platform: the adapter
    /// answers at once with a made-up post id.
    Noop,
}

/// A run's drain pattern, task and the label the harness prints for it (`burst-noop`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunKind {
    pub burst: bool,
    pub task: Task,
    pub label: String,
}

impl RunKind {
    pub fn of(mode: Mode, task: Task) -> Self {
        let (burst, task) = match mode {
            Mode::Burst => (true, task),
            Mode::Steady => (false, task),
            Mode::BurstNoop => (true, Task::Noop),
        };
        let base = if burst { "burst" } else { "steady" };
        let label = match task {
            Task::Http => base.to_owned(),
            Task::Noop => format!("{base}-noop"),
        };
        Self { burst, task, label }
    }
}

/// `TEXT` in `lib/common.js`: every job posts it with its sequence number appended.
const HARNESS_TEXT: &str = "Launching our spring collection today! Fresh colours, recycled fabrics and free shipping for the first 48 hours. Tell us which piece is your favourite #spring #launch";

/// The harness spreads its jobs over this many connected accounts (`connectionId:
/// 'conn_' + (i % 100)` in `makePayload`).
pub const HARNESS_CONNECTIONS: usize = 100;

/// Job `i`'s post text, as `makePayload` makes it.
pub fn post_text(i: usize) -> String {
    format!("{HARNESS_TEXT} ({i})")
}

/// Which of the `HARNESS_CONNECTIONS` accounts job `i` posts as.
pub fn connection_index(i: usize) -> usize {
    i % HARNESS_CONNECTIONS
}

/// The harness's percentile (`Recorder.percentiles`): nearest rank, `sorted[⌈p·n⌉ − 1]`;
/// NaN for no samples. `sorted` is ascending, `p` a fraction.
pub fn nearest_rank(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// What one run measured: the harness's keys, then Herald's own.
#[derive(Debug, Clone, PartialEq)]
pub struct PeerResult {
    pub label: String,
    /// Jobs measured (steady: without the warm-up).
    pub jobs: usize,
    pub jobs_per_s: f64,
    /// Sorted latencies of the measured jobs, ms.
    pub latencies_ms: Vec<f64>,
    /// Burst only: jobs accepted per second while enqueueing.
    pub enqueue_per_s: Option<f64>,
    pub concurrency: usize,
    /// Steady only: the offered rate.
    pub rate: Option<f64>,
    /// Requests the platform counted during the run (`GET /stats`); none for the noop task.
    pub posts: Option<u64>,
    pub failed: usize,
    pub lost: usize,
    pub dups: u64,
    pub commits_per_job: f64,
    pub wall_s: f64,
    /// Further `key=value` pairs, printed last in this order.
    pub extra: Vec<(&'static str, String)>,
}

impl PeerResult {
    /// The harness's result line: `peer=herald mode=.. jobs=.. jobs_per_s=.. p50_ms=..
    /// p99_ms=..` and more pairs; fractions with one decimal, milliseconds with two.
    pub fn line(&self) -> String {
        let mut line = format!(
            "peer=herald mode={} jobs={} jobs_per_s={} p50_ms={} p99_ms={}",
            self.label,
            self.jobs,
            fixed(self.jobs_per_s, 1),
            fixed(nearest_rank(&self.latencies_ms, 0.50), 2),
            fixed(nearest_rank(&self.latencies_ms, 0.99), 2),
        );
        let mut pair = |key: &str, value: String| {
            let _ = write!(line, " {key}={value}");
        };
        if let Some(enqueue) = self.enqueue_per_s {
            pair("enqueue_per_s", fixed(enqueue, 1));
        }
        if let Some(posts) = self.posts {
            pair("posts", posts.to_string());
        }
        pair("lost", self.lost.to_string());
        pair("dups", self.dups.to_string());
        pair("wall_s", fixed(self.wall_s, 1));
        pair("commits_per_job", fixed(self.commits_per_job, 2));
        pair("failed", self.failed.to_string());
        pair("p90_ms", fixed(nearest_rank(&self.latencies_ms, 0.90), 2));
        pair(
            "max_ms",
            fixed(self.latencies_ms.last().copied().unwrap_or(f64::NAN), 2),
        );
        pair("concurrency", self.concurrency.to_string());
        if let Some(rate) = self.rate {
            pair("rate", fixed(rate, 1));
        }
        for (key, value) in &self.extra {
            pair(key, value.clone());
        }
        line
    }
}

/// `x` with `digits` decimals, `NaN` when it is not finite (as the harness's `fmt`).
fn fixed(x: f64, digits: usize) -> String {
    if x.is_finite() {
        format!("{x:.digits$}")
    } else {
        "NaN".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_harness_burst_noop_row_is_burst_with_the_noop_task() {
        assert_eq!(
            RunKind::of(Mode::Burst, Task::Noop),
            RunKind {
                burst: true,
                task: Task::Noop,
                label: "burst-noop".into()
            }
        );
        assert_eq!(
            RunKind::of(Mode::BurstNoop, Task::Http),
            RunKind::of(Mode::Burst, Task::Noop)
        );
        assert_eq!(RunKind::of(Mode::Steady, Task::Http).label, "steady");
        assert_eq!(RunKind::of(Mode::Steady, Task::Noop).label, "steady-noop");
        assert!(!RunKind::of(Mode::Steady, Task::Http).burst);
    }

    #[test]
    fn jobs_look_like_make_payload() {
        assert_eq!(
            post_text(7),
            "Launching our spring collection today! Fresh colours, recycled fabrics and free shipping for the first 48 hours. Tell us which piece is your favourite #spring #launch (7)"
        );
        assert_eq!(connection_index(7), 7);
        assert_eq!(connection_index(100), 0);
        assert_eq!(connection_index(19_999), 99);
    }

    #[test]
    fn percentiles_are_the_harness_nearest_rank() {
        let samples: Vec<f64> = (1..=10).map(f64::from).collect();
        // ceil(0.5·10) = 5th, ceil(0.99·10) = 10th, ceil(0.9·10) = 9th.
        assert_eq!(nearest_rank(&samples, 0.50), 5.0);
        assert_eq!(nearest_rank(&samples, 0.99), 10.0);
        assert_eq!(nearest_rank(&samples, 0.90), 9.0);
        assert_eq!(nearest_rank(&[3.0], 0.99), 3.0);
        assert_eq!(nearest_rank(&[3.0, 4.0], 0.0), 3.0);
        assert!(nearest_rank(&[], 0.5).is_nan());
    }

    fn result() -> PeerResult {
        PeerResult {
            label: "burst".into(),
            jobs: 4,
            jobs_per_s: 1234.56,
            latencies_ms: vec![1.0, 2.0, 3.0, 4.5],
            enqueue_per_s: Some(999.04),
            concurrency: 50,
            rate: None,
            posts: Some(4),
            failed: 0,
            lost: 0,
            dups: 0,
            commits_per_job: 7.25,
            wall_s: 12.34,
            extra: vec![("poll_missed", "0".into())],
        }
    }

    #[test]
    fn the_result_line_starts_with_the_keys_the_harness_reads() {
        assert_eq!(
            result().line(),
            "peer=herald mode=burst jobs=4 jobs_per_s=1234.6 p50_ms=2.00 p99_ms=4.50 \
             enqueue_per_s=999.0 posts=4 lost=0 dups=0 wall_s=12.3 commits_per_job=7.25 \
             failed=0 p90_ms=4.50 max_ms=4.50 concurrency=50 poll_missed=0"
        );
    }

    #[test]
    fn steady_and_noop_lines_leave_out_what_does_not_apply() {
        let steady = PeerResult {
            label: "steady-noop".into(),
            enqueue_per_s: None,
            posts: None,
            rate: Some(100.0),
            latencies_ms: vec![],
            extra: vec![],
            ..result()
        };
        let line = steady.line();
        assert!(line.starts_with("peer=herald mode=steady-noop jobs=4 jobs_per_s=1234.6 p50_ms=NaN p99_ms=NaN lost=0"), "{line}");
        assert!(!line.contains("posts=") && !line.contains("enqueue_per_s="));
        assert!(line.ends_with("concurrency=50 rate=100.0"), "{line}");
    }
}
