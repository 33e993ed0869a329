//! The idle pool of lent upstream connections, generic over the connection (as hyper-util's pool is), so its
//! hand-off, idle limit and sweeping are tested without sockets.
//!
//! - **Checkout** takes the most recently idle connection that is still alive: idle for less than the idle
//!   timeout, and [`Pooled::is_usable`] when polled once.
//! - **Hand-off.** A request that found the pool empty and is opening a connection also waits for one to
//!   come back ([`Pool::waiter`]); a connection put back goes to the first such waiter still waiting, so a
//!   burst of requests does not open a connection each.
//! - **Idle limit.** At most `max_idle` connections are kept; one put back beyond that is dropped (closed).
//! - **Sweeping.** Idle connections are polled by nobody; one sweeper task per pool looks at them every
//!   [`SWEEP_EVERY`] (at most half the idle timeout), dropping those that ended ([`Pooled::poll_ended`]) and
//!   those idle for the idle timeout. It stops when the pool has none left, and the next put starts it again.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

/// How often the sweeper looks at the idle connections (at most half of the idle timeout).
pub const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// What the pool needs of a connection.
pub trait Pooled: Send + 'static {
    /// Polls the connection's own I/O once: whether it has ended (the peer closed it, or it failed).
    fn poll_ended(&mut self, cx: &mut Context<'_>) -> bool;

    /// Whether a connection just taken from the pool can carry a request now (its I/O polled once, and it is
    /// ready to send); `cx` is the requesting task's.
    fn is_usable(&mut self, cx: &mut Context<'_>) -> bool;
}

/// An idle connection, and since when.
struct Idle<C> {
    connection: C,
    since: Instant,
}

/// The idle connections of one upstream origin and one set of pool settings.
pub struct Pool<C> {
    max_idle: usize,
    idle_timeout: Duration,
    /// Oldest first; checkouts take the newest.
    idle: Mutex<VecDeque<Idle<C>>>,
    /// Requests connecting because the pool was empty, also waiting for a connection to come back.
    waiters: Mutex<VecDeque<oneshot::Sender<C>>>,
    /// Whether the sweeper task runs (it ends when the pool has no idle connection left).
    sweeping: AtomicBool,
}

// === impl Pool ===

impl<C: Pooled> Pool<C> {
    /// A pool keeping at most `max_idle` connections, each for less than `idle_timeout`.
    pub fn new(max_idle: usize, idle_timeout: Duration) -> Self {
        Self {
            max_idle,
            idle_timeout,
            idle: Mutex::new(VecDeque::new()),
            waiters: Mutex::new(VecDeque::new()),
            sweeping: AtomicBool::new(false),
        }
    }

    /// The newest idle connection that is still alive at `now` (idle for less than the idle timeout, and
    /// usable when polled once); the dead ones met on the way are dropped.
    pub async fn checkout(&self, now: Instant) -> Option<C> {
        loop {
            let mut entry = lock(&self.idle).pop_back()?;
            if now.saturating_duration_since(entry.since) < self.idle_timeout
                && poll_fn(|cx| Poll::Ready(entry.connection.is_usable(cx))).await
            {
                return Some(entry.connection);
            }
        }
    }

    /// Registers a request that found the pool empty: the next connection put back goes to it (the first
    /// waiter still waiting gets it), until the receiver is dropped.
    pub fn waiter(&self) -> oneshot::Receiver<C> {
        let (sender, returned) = oneshot::channel();
        let mut waiters = lock(&self.waiters);
        waiters.retain(|waiter| !waiter.is_closed());
        waiters.push_back(sender);
        returned
    }

    /// Takes back a connection whose exchange is over and that is healthy: to a waiter, else kept idle
    /// (unless the pool is full: then it is dropped); starts the sweeper if needed.
    pub fn put(self: &Arc<Self>, mut connection: C) {
        loop {
            let waiter = lock(&self.waiters).pop_front();
            let Some(waiter) = waiter else { break };
            match waiter.send(connection) {
                Ok(()) => return,
                Err(unsent) => connection = unsent,
            }
        }
        if self.max_idle == 0 {
            return;
        }
        {
            let mut idle = lock(&self.idle);
            if idle.len() >= self.max_idle {
                return;
            }
            idle.push_back(Idle {
                connection,
                since: Instant::now(),
            });
        }
        if !self.sweeping.swap(true, Ordering::AcqRel) {
            tokio::spawn(sweep(Arc::downgrade(self)));
        }
    }

    /// Drops the idle connections that ended or that are idle for the idle timeout at `now`; returns whether
    /// any is left (if not, the sweeper stops).
    fn sweep_once(&self, now: Instant, cx: &mut Context<'_>) -> bool {
        let mut idle = lock(&self.idle);
        idle.retain_mut(|entry| {
            now.saturating_duration_since(entry.since) < self.idle_timeout
                && !entry.connection.poll_ended(cx)
        });
        if idle.is_empty() {
            // Cleared under the lock: a `put` after this one sees `false` and starts a new sweeper.
            self.sweeping.store(false, Ordering::Release);
            return false;
        }
        true
    }

    /// How many idle connections the pool holds (for tests).
    #[cfg(test)]
    pub fn idle_count(&self) -> usize {
        lock(&self.idle).len()
    }
}

/// The pool's sweeper, until the pool has no idle connection or is gone.
async fn sweep<C: Pooled>(pool: Weak<Pool<C>>) {
    loop {
        let Some(every) = pool
            .upgrade()
            .map(|pool| SWEEP_EVERY.min(pool.idle_timeout / 2))
        else {
            return;
        };
        tokio::time::sleep(every.max(Duration::from_millis(1))).await;
        let Some(pool) = pool.upgrade() else {
            return;
        };
        if !poll_fn(|cx| Poll::Ready(pool.sweep_once(Instant::now(), cx))).await {
            return;
        }
    }
}

impl<C> std::fmt::Debug for Pool<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("max_idle", &self.max_idle)
            .field("idle_timeout", &self.idle_timeout)
            .finish_non_exhaustive()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section is a single push, pop or retain: no state can be left half-written.
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::task::Waker;

    /// A connection without a socket: it ends when told to, and counts its drops (a drop is a close).
    struct Fake {
        id: u32,
        ended: Arc<AtomicBool>,
        usable: bool,
        closed: Arc<AtomicUsize>,
    }

    impl Pooled for Fake {
        fn poll_ended(&mut self, _cx: &mut Context<'_>) -> bool {
            self.ended.load(Ordering::SeqCst)
        }

        fn is_usable(&mut self, _cx: &mut Context<'_>) -> bool {
            self.usable && !self.ended.load(Ordering::SeqCst)
        }
    }

    impl Drop for Fake {
        fn drop(&mut self) {
            self.closed.fetch_add(1, Ordering::SeqCst);
        }
    }

    struct Maker {
        closed: Arc<AtomicUsize>,
    }

    impl Maker {
        fn new() -> Self {
            Self {
                closed: Arc::new(AtomicUsize::new(0)),
            }
        }

        /// A usable connection, and its switch to end it.
        fn connection(&self, id: u32) -> (Fake, Arc<AtomicBool>) {
            let ended = Arc::new(AtomicBool::new(false));
            let fake = Fake {
                id,
                ended: Arc::clone(&ended),
                usable: true,
                closed: Arc::clone(&self.closed),
            };
            (fake, ended)
        }

        fn closed(&self) -> usize {
            self.closed.load(Ordering::SeqCst)
        }
    }

    const MINUTE: Duration = Duration::from_secs(60);

    fn sweep_at(pool: &Pool<Fake>, now: Instant) -> bool {
        pool.sweep_once(now, &mut Context::from_waker(Waker::noop()))
    }

    #[tokio::test]
    async fn a_connection_put_back_goes_to_a_waiter_first() {
        let maker = Maker::new();
        let pool = Arc::new(Pool::new(4, MINUTE));
        // A waiter that gave up (its request connected first) is skipped; the next one gets it.
        let gave_up = pool.waiter();
        let mut waiting = pool.waiter();
        drop(gave_up);
        pool.put(maker.connection(1).0);
        assert_eq!(waiting.try_recv().map(|fake| fake.id).ok(), Some(1));
        assert_eq!(pool.idle_count(), 0);
        // No one waiting: kept idle, and checked out again.
        pool.put(maker.connection(2).0);
        assert_eq!(pool.idle_count(), 1);
        let out = pool.checkout(Instant::now()).await;
        assert_eq!(out.map(|fake| fake.id), Some(2));
        assert_eq!(pool.idle_count(), 0);
        assert_eq!(maker.closed(), 2);
    }

    #[tokio::test]
    async fn at_most_max_idle_are_kept_and_the_newest_is_taken_first() {
        let maker = Maker::new();
        let pool = Arc::new(Pool::new(2, MINUTE));
        for id in 1..=3 {
            pool.put(maker.connection(id).0);
        }
        assert_eq!(pool.idle_count(), 2);
        // The third found the pool full and was closed.
        assert_eq!(maker.closed(), 1);
        let now = Instant::now();
        assert_eq!(pool.checkout(now).await.map(|fake| fake.id), Some(2));
        assert_eq!(pool.checkout(now).await.map(|fake| fake.id), Some(1));
        assert!(pool.checkout(now).await.is_none());

        // `max_idle: 0` keeps none.
        let none = Arc::new(Pool::new(0, MINUTE));
        none.put(maker.connection(4).0);
        assert_eq!(none.idle_count(), 0);
    }

    #[tokio::test]
    async fn a_checkout_skips_and_closes_connections_that_ended_expired_or_are_not_ready() {
        let maker = Maker::new();
        let pool = Arc::new(Pool::new(8, MINUTE));
        let (old, _) = maker.connection(1);
        pool.put(old);
        let later = Instant::now() + MINUTE;
        // Idle for the whole timeout at `later`: dropped, nothing else to take.
        assert!(pool.checkout(later).await.is_none());
        assert_eq!(maker.closed(), 1);

        let (alive, _) = maker.connection(2);
        let (ended, end) = maker.connection(3);
        let (mut busy, _) = maker.connection(4);
        busy.usable = false;
        pool.put(alive);
        pool.put(ended);
        pool.put(busy);
        end.store(true, Ordering::SeqCst);
        // Newest first: the busy one and the ended one are closed on the way to the live one.
        let out = pool.checkout(Instant::now()).await;
        assert_eq!(out.map(|fake| fake.id), Some(2));
        assert_eq!(maker.closed(), 4);
    }

    #[tokio::test]
    async fn a_sweep_closes_ended_and_expired_connections_and_stops_when_none_are_left() {
        let maker = Maker::new();
        let pool = Arc::new(Pool::new(8, MINUTE));
        let (first, end_first) = maker.connection(1);
        let (second, _) = maker.connection(2);
        pool.put(first);
        pool.put(second);
        assert!(pool.sweeping.load(Ordering::SeqCst));
        // Nothing ended, nothing expired: both stay.
        assert!(sweep_at(&pool, Instant::now()));
        assert_eq!(pool.idle_count(), 2);
        // The upstream closed the first one.
        end_first.store(true, Ordering::SeqCst);
        assert!(sweep_at(&pool, Instant::now()));
        assert_eq!(pool.idle_count(), 1);
        assert_eq!(maker.closed(), 1);
        // The second idled past the timeout: gone, and the sweeper would stop.
        assert!(!sweep_at(&pool, Instant::now() + MINUTE));
        assert_eq!(pool.idle_count(), 0);
        assert_eq!(maker.closed(), 2);
        assert!(!pool.sweeping.load(Ordering::SeqCst));
    }

    #[tokio::test]
    async fn the_sweeper_task_closes_a_connection_that_ended_while_idle() {
        let maker = Maker::new();
        // A 20 ms idle timeout: the sweeper looks every 10 ms.
        let pool = Arc::new(Pool::new(4, Duration::from_millis(20)));
        let (connection, end) = maker.connection(1);
        pool.put(connection);
        end.store(true, Ordering::SeqCst);
        for _ in 0..400 {
            if pool.idle_count() == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(pool.idle_count(), 0);
        assert_eq!(maker.closed(), 1);
        // The sweeper stopped with the pool empty; a later put starts it again.
        for _ in 0..400 {
            if !pool.sweeping.load(Ordering::SeqCst) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(!pool.sweeping.load(Ordering::SeqCst));
        pool.put(maker.connection(2).0);
        assert!(pool.sweeping.load(Ordering::SeqCst));
    }
}
