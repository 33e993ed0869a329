//! Graceful shutdown: one signal to every connection, which then finishes its exchange in progress and closes.
//!
//! The same design as hyper-util's `GracefulShutdown`: a `watch` channel whose receivers, one per
//! connection, count the connections still open and whose `changed()` each connection waits for. The
//! difference is how often that wait is polled. Its future takes the channel's waiter lock on every poll (a
//! lock every connection shares), and hyper-util's watcher polls it on every wake-up of every connection
//! task, several times per request. Here a connection polls it only when it has never been polled with this
//! task's waker, or once the signal is raised (an atomic flag set before the channel notifies): a wake-up
//! that the notification causes always sees the flag.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Waker};

use tokio::sync::watch;

/// The sending side, held by the accept loop.
#[derive(Debug)]
pub struct Shutdown {
    signal: watch::Sender<()>,
    raised: Arc<AtomicBool>,
}

/// One connection's view of the signal; dropping it (when the connection ends) is what
/// [`Shutdown::shutdown`] waits for.
#[derive(Debug)]
pub struct Watcher {
    signal: watch::Receiver<()>,
    raised: Arc<AtomicBool>,
}

// === impl Shutdown ===

impl Shutdown {
    pub fn new() -> Self {
        let (signal, _) = watch::channel(());
        Self {
            signal,
            raised: Arc::new(AtomicBool::new(false)),
        }
    }

    /// A watcher for one more connection.
    pub fn watcher(&self) -> Watcher {
        Watcher {
            signal: self.signal.subscribe(),
            raised: Arc::clone(&self.raised),
        }
    }

    /// How many connections hold a watcher.
    pub fn count(&self) -> usize {
        self.signal.receiver_count()
    }

    /// Signals every connection, then waits until all of them have ended.
    pub async fn shutdown(self) {
        self.raised.store(true, Ordering::SeqCst);
        // An error means no connection is left to tell.
        let _ = self.signal.send(());
        self.signal.closed().await;
    }
}

impl Default for Shutdown {
    fn default() -> Self {
        Self::new()
    }
}

// === impl Watcher ===

impl Watcher {
    /// Runs `connection` to its end; when the signal comes, `finish` asks it (once) to close after the
    /// exchange in progress.
    pub fn watch<C: Future>(self, connection: C, finish: fn(Pin<&mut C>)) -> Watched<C> {
        let Watcher { mut signal, raised } = self;
        Watched {
            connection: Box::pin(connection),
            signalled: Some(Box::pin(async move {
                // An error means the sender is gone, which only happens at shutdown.
                let _ = signal.changed().await;
                signal
            })),
            signalled_guard: None,
            raised,
            polled_with: None,
            finish,
            asked: false,
        }
    }
}

/// A connection under watch: what [`Watcher::watch`] returns (a named future, as the connection types
/// borrow the server's builder and an `async fn` over them would not be `Send` for every lifetime).
pub struct Watched<C> {
    connection: Pin<Box<C>>,
    /// The wait for the signal, until it came.
    signalled: Option<Pin<Box<dyn Future<Output = watch::Receiver<()>> + Send>>>,
    /// After the signal: the receiver, kept until the connection ends (so that it is still counted).
    signalled_guard: Option<watch::Receiver<()>>,
    raised: Arc<AtomicBool>,
    /// The waker the wait was last polled with.
    polled_with: Option<Waker>,
    finish: fn(Pin<&mut C>),
    /// Whether the connection has been asked to finish (by the signal or by [`Watched::finish`]).
    asked: bool,
}

impl<C: Future> Watched<C> {
    /// Asks the connection (once) to close after its exchange in progress, as the shutdown signal would,
    /// without it: for a connection that has been idle too long. It stays counted until it ends.
    pub fn finish(&mut self) {
        if !self.asked {
            self.asked = true;
            (self.finish)(self.connection.as_mut());
        }
    }
}

impl<C: Future> Future for Watched<C> {
    type Output = C::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<C::Output> {
        let this = self.get_mut();
        if let Some(signalled) = this.signalled.as_mut() {
            let new_waker = this
                .polled_with
                .as_ref()
                .is_none_or(|waker| !waker.will_wake(cx.waker()));
            if new_waker || this.raised.load(Ordering::SeqCst) {
                if new_waker {
                    this.polled_with = Some(cx.waker().clone());
                }
                if let Poll::Ready(receiver) = signalled.as_mut().poll(cx) {
                    this.signalled = None;
                    this.signalled_guard = Some(receiver);
                    this.finish();
                }
            }
        }
        this.connection.as_mut().poll(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// A connection that ends only after it has been asked to finish.
    struct Connection {
        asked: bool,
        waker: Option<Waker>,
    }

    impl Future for Connection {
        type Output = &'static str;
        fn poll(
            mut self: Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Self::Output> {
            if self.asked {
                std::task::Poll::Ready("finished")
            } else {
                self.waker = Some(cx.waker().clone());
                std::task::Poll::Pending
            }
        }
    }

    fn ask(connection: Pin<&mut Connection>) {
        let connection = connection.get_mut();
        connection.asked = true;
        if let Some(waker) = connection.waker.take() {
            waker.wake();
        }
    }

    #[tokio::test]
    async fn every_connection_is_asked_to_finish_and_shutdown_waits_for_them() {
        let shutdown = Shutdown::new();
        let connections: Vec<_> = (0..3)
            .map(|_| {
                let watcher = shutdown.watcher();
                tokio::spawn(watcher.watch(
                    Connection {
                        asked: false,
                        waker: None,
                    },
                    ask,
                ))
            })
            .collect();
        // Let every connection poll (and register) first.
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(shutdown.count(), 3);
        tokio::time::timeout(Duration::from_secs(5), shutdown.shutdown())
            .await
            .expect("shutdown waits only for the connections to finish");
        for connection in connections {
            assert_eq!(connection.await.unwrap(), "finished");
        }
    }

    #[tokio::test]
    async fn a_connection_that_starts_after_the_signal_is_asked_at_once() {
        let shutdown = Shutdown::new();
        let watcher = shutdown.watcher();
        let raised = Arc::clone(&shutdown.raised);
        let waiting = tokio::spawn(shutdown.shutdown());
        while !raised.load(Ordering::SeqCst) {
            tokio::task::yield_now().await;
        }
        let connection = Connection {
            asked: false,
            waker: None,
        };
        let outcome = tokio::time::timeout(Duration::from_secs(5), watcher.watch(connection, ask))
            .await
            .expect("asked to finish although it started after the signal");
        assert_eq!(outcome, "finished");
        waiting.await.unwrap();
    }

    #[tokio::test]
    async fn without_the_signal_the_connection_runs_on() {
        let shutdown = Shutdown::new();
        let connection = Connection {
            asked: false,
            waker: None,
        };
        let watched = shutdown.watcher().watch(connection, ask);
        assert!(
            tokio::time::timeout(Duration::from_millis(50), watched)
                .await
                .is_err()
        );
        assert_eq!(shutdown.count(), 0, "the watcher went with its connection");
    }
}
