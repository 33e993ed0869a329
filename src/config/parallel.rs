//! Runs one job per item of a list on every core and hands the results to the caller in the list's order,
//! while the jobs go on, with only a few results waiting at a time.
//!
//! Config loads use it to read, hash and parse policy files: the files are independent, the work is
//! CPU-bound, and a config of a million tokens is hundreds of files whose parsed form is ten times their
//! size, so results are consumed (compiled, then dropped) as they come rather than collected.

use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, PoisonError, mpsc};

/// How many results may be done ahead of the one the caller waits for, per worker thread.
const AHEAD_PER_WORKER: usize = 2;

/// Calls `job` on every item, on up to one thread per core, and `consume(index, result)` on the calling
/// thread in index order. A job that panics (a bug) gives `None` for its item instead of a crash.
///
/// Memory: at most `AHEAD_PER_WORKER` results per worker wait for `consume`, however long the list is.
pub fn in_order<I, T>(
    items: &[I],
    job: impl Fn(&I) -> T + Sync,
    mut consume: impl FnMut(usize, Option<T>),
) where
    I: Sync,
    T: Send,
{
    let run = |item: &I| catch_unwind(AssertUnwindSafe(|| job(item))).ok();
    let workers = std::thread::available_parallelism()
        .map_or(1, std::num::NonZeroUsize::get)
        .min(items.len());
    if workers <= 1 {
        for (index, item) in items.iter().enumerate() {
            consume(index, run(item));
        }
        return;
    }
    let window = workers * AHEAD_PER_WORKER;
    let next = AtomicUsize::new(0);
    // The index `consume` waits for; a worker does not start an item `window` or more beyond it.
    let consumed = Mutex::new(0usize);
    let advanced = Condvar::new();
    let (sender, receiver) = mpsc::channel::<(usize, Option<T>)>();
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                let sender = sender.clone();
                let (run, next, consumed, advanced) = (&run, &next, &consumed, &advanced);
                scope.spawn(move || {
                    loop {
                        let index = next.fetch_add(1, Ordering::Relaxed);
                        let Some(item) = items.get(index) else { break };
                        let mut waiting_for =
                            consumed.lock().unwrap_or_else(PoisonError::into_inner);
                        while index >= *waiting_for + window {
                            waiting_for = advanced
                                .wait(waiting_for)
                                .unwrap_or_else(PoisonError::into_inner);
                        }
                        drop(waiting_for);
                        if sender.send((index, run(item))).is_err() {
                            break;
                        }
                    }
                })
            })
            .collect();
        drop(sender);
        let mut ready = BTreeMap::new();
        let mut expected = 0;
        for (index, result) in receiver {
            ready.insert(index, result);
            while let Some(result) = ready.remove(&expected) {
                consume(expected, result);
                expected += 1;
                *consumed.lock().unwrap_or_else(PoisonError::into_inner) = expected;
                advanced.notify_all();
            }
        }
        // Jobs catch their panics, so a worker ends only when the list does; joining here keeps a panic
        // outside a job (none is known) from being re-raised by the scope.
        for handle in handles {
            let _ = handle.join();
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_arrive_in_order_while_jobs_finish_out_of_order() {
        let items: Vec<u64> = (0..200).collect();
        let mut seen = Vec::new();
        in_order(
            &items,
            |&item| {
                // Later items finish sooner, so workers run ahead of the one consumed.
                std::thread::sleep(std::time::Duration::from_micros((200 - item) * 20));
                item * 2
            },
            |index, result| seen.push((index, result)),
        );
        let expected: Vec<(usize, Option<u64>)> = (0..200)
            .map(|index| (index, Some(index as u64 * 2)))
            .collect();
        assert_eq!(seen, expected);
    }

    #[test]
    fn a_panicking_job_gives_none_and_the_rest_still_run() {
        let items: Vec<u32> = (0..20).collect();
        let mut seen = Vec::new();
        in_order(
            &items,
            |&item| {
                assert!(item != 7, "job 7 fails");
                item
            },
            |index, result| seen.push((index, result)),
        );
        assert_eq!(seen.len(), 20);
        assert_eq!(seen[7], (7, None));
        assert!(
            seen.iter()
                .enumerate()
                .all(|(index, entry)| index == 7 || entry.1 == Some(index as u32))
        );
    }

    #[test]
    fn an_empty_list_consumes_nothing() {
        let mut calls = 0;
        in_order(&[] as &[u8], |_| (), |_, _| calls += 1);
        assert_eq!(calls, 0);
    }
}
