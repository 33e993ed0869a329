//! Warnings about failed requests, summarized when they repeat: the first failure of a kind is logged in full,
//! the rest of that kind within [`SUMMARY_INTERVAL`] are counted and logged as one line with the count when the
//! interval ends.
//!
//! An upstream outage under load fails every request: a 3 s outage once wrote 67,277 WARN lines (21.7 MB).
//! The metrics still count every failure (`permgate_upstream_errors_total{kind}`); the log says what happened,
//! once, and how often. Nothing here decides anything, and no message holds a secret (errors are described by
//! kind).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use tokio::time::Instant;

/// How long a kind's failures after its first are counted before one summary line is written.
pub const SUMMARY_INTERVAL: Duration = Duration::from_secs(10);

/// The open interval of one kind of failure.
#[derive(Debug)]
struct Window {
    kind: &'static str,
    side: &'static str,
    opened: Instant,
    /// Failures since the one logged in full.
    counted: u64,
}

/// The summarizing log of one gateway's failed requests.
#[derive(Debug)]
pub struct FailureLog {
    interval: Duration,
    windows: Mutex<Vec<Window>>,
    /// Whether the task that writes the summaries runs (it ends when no window is open).
    summarizing: AtomicBool,
}

impl FailureLog {
    pub fn new(interval: Duration) -> Arc<Self> {
        Arc::new(Self {
            interval,
            windows: Mutex::new(Vec::new()),
            summarizing: AtomicBool::new(false),
        })
    }

    fn windows(&self) -> MutexGuard<'_, Vec<Window>> {
        // Each critical section is one lookup, push, increment or retain: nothing is left half-written.
        self.windows.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A failure of `kind` (caused by `side`): `true` when it is to be logged in full (the first of its kind
    /// since the last interval ended), `false` when it was counted for the interval's summary line.
    pub fn admit(self: &Arc<Self>, kind: &'static str, side: &'static str) -> bool {
        let now = Instant::now();
        {
            let mut windows = self.windows();
            match windows
                .iter_mut()
                .find(|window| window.kind == kind && window.side == side)
            {
                Some(window) if now.saturating_duration_since(window.opened) < self.interval => {
                    window.counted += 1;
                    return false;
                }
                Some(window) => {
                    // An interval ended without the summarizer closing it yet: summarize it now, open anew.
                    summarize(window, self.interval);
                    window.opened = now;
                    window.counted = 0;
                }
                None => windows.push(Window {
                    kind,
                    side,
                    opened: now,
                    counted: 0,
                }),
            }
        }
        if !self.summarizing.swap(true, Ordering::AcqRel) {
            tokio::spawn(summarize_until_quiet(Arc::downgrade(self)));
        }
        true
    }

    /// Writes the summary of every window whose interval has ended at `now` and closes it; returns whether
    /// any window is left open.
    fn close_ended(&self, now: Instant) -> bool {
        let mut windows = self.windows();
        windows.retain(|window| {
            let ended = now.saturating_duration_since(window.opened) >= self.interval;
            if ended {
                summarize(window, self.interval);
            }
            !ended
        });
        if windows.is_empty() {
            // Cleared under the lock: an `admit` after this sees `false` and starts a new summarizer.
            self.summarizing.store(false, Ordering::Release);
            return false;
        }
        true
    }
}

/// The one line for a window's counted failures (none when there were none).
fn summarize(window: &Window, interval: Duration) {
    if window.counted > 0 {
        tracing::warn!(
            side = window.side,
            kind = window.kind,
            count = window.counted,
            interval_seconds = interval.as_secs(),
            "more requests failed the same way after the one logged (each is counted in the metrics)"
        );
    }
}

/// Closes the windows as their intervals end, until none is open or the log is gone.
async fn summarize_until_quiet(log: Weak<FailureLog>) {
    loop {
        let Some(interval) = log.upgrade().map(|log| log.interval) else {
            return;
        };
        tokio::time::sleep((interval / 4).max(Duration::from_millis(10))).await;
        let Some(log) = log.upgrade() else {
            return;
        };
        if !log.close_ended(Instant::now()) {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

    use super::*;
    use std::io::Write;

    /// Captures what is logged, as text.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[tokio::test(start_paused = true)]
    async fn an_outage_is_one_line_per_kind_per_interval_with_its_count() {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        let _guard = tracing::subscriber::set_default(subscriber);
        let log = FailureLog::new(Duration::from_secs(10));

        // A 3 s outage: 20,000 failed requests of one kind, 30 of another.
        let mut full = 0;
        for index in 0..20_000u32 {
            if log.admit("connect", "upstream") {
                full += 1;
                tracing::warn!(kind = "connect", "request failed");
            }
            if index % 1_000 == 0 && log.admit("timeout", "upstream") {
                full += 1;
                tracing::warn!(kind = "timeout", "request failed");
            }
            if index % 100 == 0 {
                tokio::time::advance(Duration::from_millis(15)).await;
            }
        }
        assert_eq!(full, 2, "one full line per kind");
        // The interval ends: the summaries are written.
        tokio::time::sleep(Duration::from_secs(11)).await;
        let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert!(
            lines
                .iter()
                .any(|line| line.contains("kind=\"connect\"") && line.contains("count=19999")),
            "{text}"
        );
        assert!(
            lines
                .iter()
                .any(|line| line.contains("kind=\"timeout\"") && line.contains("count=19")),
            "{text}"
        );
        // Quiet again: the summarizer has stopped, and the next failure is logged in full.
        assert!(!log.summarizing.load(Ordering::Acquire));
        assert!(log.admit("connect", "upstream"));
    }
}
