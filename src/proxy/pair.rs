//! Two futures driven by one task, each polled only when something woke it: an inbound connection and the
//! I/O of the upstream connection lent to its exchange ([`super::bound`]).
//!
//! Polling both on every wake-up of the task (what `select!` does) costs a whole pass through hyper's server
//! connection each time the upstream side moves, and the reverse; and every wake-up that one of them caused
//! while the task was running (handing a request to the upstream connection, the response coming back, each
//! body frame passed across) went through the scheduler as another wake-up of the task. Here each future has
//! its own waker that marks it as woken: a wake-up while the task is running is handled by polling the
//! marked future again within the same poll of the task; any other wakes the task.
//!
//! Correct for any futures that keep the `Future` contract (a future that returns `Pending` has arranged to be
//! woken): one that was not woken is not polled, which is what every executor does. A pass is bounded: after
//! [`ROUNDS`] rounds that were all woken again, the task yields to the scheduler with its marks kept, as a
//! task that wakes itself would.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Wake, Waker};

/// The first future was woken.
const FIRST: u8 = 1;
/// The second future was woken.
const SECOND: u8 = 2;
/// The task is polling the pair: a wake-up marks, and the poll loop sees the mark.
const POLLING: u8 = 4;

/// How many rounds of polls one poll of the task makes at most.
pub const ROUNDS: usize = 16;

/// What both wakers share: the marks, and the task's own waker.
#[derive(Debug)]
struct Marks {
    state: AtomicU8,
    task: Mutex<Option<Waker>>,
}

/// The waker of one future of the pair.
#[derive(Debug)]
struct Mark {
    marks: Arc<Marks>,
    bit: u8,
}

impl Wake for Mark {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let before = self.marks.state.fetch_or(self.bit, Ordering::AcqRel);
        // While the task polls, the mark is enough; if it was already marked, the task was already woken.
        if before & (POLLING | self.bit) == 0 {
            // Woken outside the lock: whatever waking runs cannot find it held.
            let task = self
                .marks
                .task
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone();
            if let Some(task) = task {
                task.wake();
            }
        }
    }
}

/// Polls `first` and `second` (which never completes) until `first` completes, each only when woken.
pub struct Pair<A, B> {
    first: A,
    second: B,
    marks: Arc<Marks>,
    first_waker: Waker,
    second_waker: Waker,
}

// === impl Pair ===

impl<A, B> Pair<A, B>
where
    A: Future + Unpin,
    B: Future<Output = ()> + Unpin,
{
    pub fn new(first: A, second: B) -> Self {
        // Both are polled the first time.
        let marks = Arc::new(Marks {
            state: AtomicU8::new(FIRST | SECOND),
            task: Mutex::new(None),
        });
        let waker = |bit| {
            Waker::from(Arc::new(Mark {
                marks: Arc::clone(&marks),
                bit,
            }))
        };
        Self {
            first_waker: waker(FIRST),
            second_waker: waker(SECOND),
            first,
            second,
            marks,
        }
    }
}

impl<A, B> Pair<A, B> {
    /// The first future, to act on it between polls; it counts as woken, so the next poll of the pair polls
    /// it (whatever was done to it may have left it work to do without waking it).
    pub fn first_mut(&mut self) -> &mut A {
        self.first_waker.wake_by_ref();
        &mut self.first
    }
}

impl<A, B> Future for Pair<A, B>
where
    A: Future + Unpin,
    B: Future<Output = ()> + Unpin,
{
    type Output = A::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<A::Output> {
        let this = self.get_mut();
        {
            let mut task = this
                .marks
                .task
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if !task.as_ref().is_some_and(|task| task.will_wake(cx.waker())) {
                *task = Some(cx.waker().clone());
            }
        }
        let state = &this.marks.state;
        state.fetch_or(POLLING, Ordering::AcqRel);
        for _ in 0..ROUNDS {
            let woken = state.swap(POLLING, Ordering::AcqRel) & (FIRST | SECOND);
            if woken == 0 {
                // Nothing marked: stop polling, unless a mark arrived meanwhile.
                match state.compare_exchange(POLLING, 0, Ordering::AcqRel, Ordering::Acquire) {
                    Ok(_) => return Poll::Pending,
                    Err(_) => continue,
                }
            }
            if woken & FIRST != 0 {
                let mut first_cx = Context::from_waker(&this.first_waker);
                if let Poll::Ready(output) = Pin::new(&mut this.first).poll(&mut first_cx) {
                    state.fetch_and(!POLLING, Ordering::AcqRel);
                    return Poll::Ready(output);
                }
            }
            if woken & SECOND != 0 {
                let mut second_cx = Context::from_waker(&this.second_waker);
                let _never = Pin::new(&mut this.second).poll(&mut second_cx);
            }
        }
        // Woken again in every round: let the scheduler run other tasks first; the marks stay.
        state.fetch_and(!POLLING, Ordering::AcqRel);
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    /// Counts its polls; completes once `done` is set, wakes itself `self_wakes` times.
    struct Probe {
        polls: Arc<AtomicUsize>,
        waker: Arc<Mutex<Option<Waker>>>,
        self_wakes: usize,
        done: Arc<std::sync::atomic::AtomicBool>,
    }

    impl Future for Probe {
        type Output = ();
        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            self.polls.fetch_add(1, Ordering::SeqCst);
            *self.waker.lock().unwrap() = Some(cx.waker().clone());
            if self.done.load(Ordering::SeqCst) {
                return Poll::Ready(());
            }
            if self.self_wakes > 0 {
                self.self_wakes -= 1;
                cx.waker().wake_by_ref();
            }
            Poll::Pending
        }
    }

    /// A probe's handles: its poll count, its last waker, and its switch to complete.
    type Handles = (
        Arc<AtomicUsize>,
        Arc<Mutex<Option<Waker>>>,
        Arc<std::sync::atomic::AtomicBool>,
    );

    fn probe(self_wakes: usize) -> (Probe, Handles) {
        let polls = Arc::new(AtomicUsize::new(0));
        let waker = Arc::new(Mutex::new(None));
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let probe = Probe {
            polls: Arc::clone(&polls),
            waker: Arc::clone(&waker),
            self_wakes,
            done: Arc::clone(&done),
        };
        (probe, (polls, waker, done))
    }

    #[tokio::test]
    async fn each_side_is_polled_when_woken_and_only_then() {
        let (first, (first_polls, first_waker, first_done)) = probe(0);
        let (second, (second_polls, second_waker, _)) = probe(2);
        let mut pair = Pair::new(first, second);
        let waker = Waker::noop();
        let mut cx = Context::from_waker(waker);
        // Both once; the second woke itself twice and was polled again within the same poll.
        assert!(Pin::new(&mut pair).poll(&mut cx).is_pending());
        assert_eq!(
            (
                first_polls.load(Ordering::SeqCst),
                second_polls.load(Ordering::SeqCst)
            ),
            (1, 3)
        );
        // A poll that nothing woke polls neither.
        assert!(Pin::new(&mut pair).poll(&mut cx).is_pending());
        assert_eq!(
            (
                first_polls.load(Ordering::SeqCst),
                second_polls.load(Ordering::SeqCst)
            ),
            (1, 3)
        );
        // Woken from outside: only that side.
        second_waker.lock().unwrap().take().unwrap().wake();
        assert!(Pin::new(&mut pair).poll(&mut cx).is_pending());
        assert_eq!(
            (
                first_polls.load(Ordering::SeqCst),
                second_polls.load(Ordering::SeqCst)
            ),
            (1, 4)
        );
        first_done.store(true, Ordering::SeqCst);
        first_waker.lock().unwrap().take().unwrap().wake();
        assert!(Pin::new(&mut pair).poll(&mut cx).is_ready());
        assert_eq!(first_polls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_wake_from_outside_wakes_the_task() {
        let (first, (_, first_waker, first_done)) = probe(0);
        let (second, _) = probe(0);
        let pair = Pair::new(first, second);
        let task = tokio::spawn(pair);
        // Let it poll once and park, then complete it from another thread.
        tokio::task::yield_now().await;
        let waker = loop {
            if let Some(waker) = first_waker.lock().unwrap().take() {
                break waker;
            }
            tokio::task::yield_now().await;
        };
        first_done.store(true, Ordering::SeqCst);
        std::thread::spawn(move || waker.wake()).join().unwrap();
        task.await.unwrap();
    }

    #[tokio::test]
    async fn a_side_that_always_wakes_itself_yields_to_the_scheduler() {
        let (first, _) = probe(0);
        let (second, (second_polls, _, _)) = probe(usize::MAX);
        let mut pair = Pair::new(first, second);
        let woken = Arc::new(AtomicUsize::new(0));
        struct Count(Arc<AtomicUsize>);
        impl Wake for Count {
            fn wake(self: Arc<Self>) {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
        let waker = Waker::from(Arc::new(Count(Arc::clone(&woken))));
        let mut cx = Context::from_waker(&waker);
        assert!(Pin::new(&mut pair).poll(&mut cx).is_pending());
        assert_eq!(second_polls.load(Ordering::SeqCst), ROUNDS);
        assert_eq!(woken.load(Ordering::SeqCst), 1);
    }
}
