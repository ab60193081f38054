//! A fork-join pool whose workers spin between calls instead of sleeping.
//!
//! A decode step makes ~210 short kernel calls separated by tens of microseconds of serial work. Rayon parks
//! idle workers on a futex, so every call paid a wake-up (and `sched_yield` loops while spinning down):
//! ~280 context switches per token and 12% of the samples in the 2-thread decode profile. Workers here
//! spin on an epoch counter for [`SPIN`] after their last job, then sleep on a condition variable, so a burst
//! of calls costs no system call while an idle process costs no CPU.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::{Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How long an idle worker polls for the next job before it sleeps.
const SPIN: Duration = Duration::from_millis(2);

/// A job's task erased to a raw pointer: valid while the job's bands are unfinished (the dispatcher waits).
#[derive(Clone, Copy)]
struct TaskPtr(*const (dyn Fn(usize) + Sync));

// SAFETY: the pointee is `Sync` and outlives every access (see [`run`]).
unsafe impl Send for TaskPtr {}

/// State shared by the dispatcher and the workers.
struct Shared {
    /// Job number in the high 32 bits, next unclaimed band in the low 32 bits.
    claim: AtomicU64,
    /// Bands of the current job not yet finished.
    pending: AtomicUsize,
    /// The current job's task and band count, written only while no band of any job is pending.
    job: Mutex<Option<(TaskPtr, usize)>>,
    /// Whether a band of the current job panicked.
    panicked: AtomicBool,
    /// Workers asleep on `wake`.
    sleepers: AtomicUsize,
    sleep: Mutex<()>,
    wake: Condvar,
}

/// The process-wide pool: workers are started on first need and never stopped.
struct Pool {
    shared: &'static Shared,
    /// Serializes dispatchers; also guards the worker count.
    dispatch: Mutex<usize>,
}

fn pool() -> &'static Pool {
    static POOL: OnceLock<Pool> = OnceLock::new();
    POOL.get_or_init(|| Pool {
        shared: Box::leak(Box::new(Shared {
            claim: AtomicU64::new(0),
            pending: AtomicUsize::new(0),
            job: Mutex::new(None),
            panicked: AtomicBool::new(false),
            sleepers: AtomicUsize::new(0),
            sleep: Mutex::new(()),
            wake: Condvar::new(),
        })),
        dispatch: Mutex::new(0),
    })
}

impl Shared {
    /// Claims and runs bands of job `epoch` until none is left.
    fn work(&self, epoch: u64) {
        loop {
            let c = self.claim.load(SeqCst);
            let (job, band) = (c >> 32, (c & u32::MAX as u64) as usize);
            let Some((task, bands)) = (job == epoch).then(|| *self.job.lock().unwrap()).flatten()
            else {
                return;
            };
            if band >= bands {
                return;
            }
            if self
                .claim
                .compare_exchange(c, c + 1, SeqCst, SeqCst)
                .is_err()
            {
                continue;
            }
            // SAFETY: the band is claimed and unfinished, so the dispatcher is still waiting and the task alive.
            let task = unsafe { &*task.0 };
            if catch_unwind(AssertUnwindSafe(|| task(band))).is_err() {
                self.panicked.store(true, SeqCst);
            }
            self.pending.fetch_sub(1, SeqCst);
        }
    }

    fn worker(&self) {
        let mut seen = self.claim.load(SeqCst) >> 32;
        loop {
            let idle = Instant::now();
            let mut polls = 0u32;
            let epoch = loop {
                let epoch = self.claim.load(SeqCst) >> 32;
                if epoch != seen {
                    break epoch;
                }
                std::hint::spin_loop();
                polls = polls.wrapping_add(1);
                if polls.is_multiple_of(256) && idle.elapsed() > SPIN {
                    let guard = self.sleep.lock().unwrap();
                    self.sleepers.fetch_add(1, SeqCst);
                    let _guard = self
                        .wake
                        .wait_while(guard, |_| self.claim.load(SeqCst) >> 32 == seen)
                        .unwrap();
                    self.sleepers.fetch_sub(1, SeqCst);
                }
            };
            seen = epoch;
            self.work(epoch);
        }
    }
}

/// Runs `task(0..bands)` with `bands - 1` pool workers and the calling thread, returning when all are done.
/// Falls back to running every band on the caller when another thread is dispatching (nested or concurrent
/// calls, e.g. tests in parallel).
pub(crate) fn run(bands: usize, task: &(dyn Fn(usize) + Sync)) {
    let pool = pool();
    let mut workers = match (bands > 1).then(|| pool.dispatch.try_lock().ok()).flatten() {
        Some(workers) => workers,
        None => return (0..bands).for_each(task),
    };
    while *workers < bands - 1 {
        let shared = pool.shared;
        std::thread::Builder::new()
            .name(format!("bitnet-kernel-{}", *workers))
            .spawn(move || shared.worker())
            .expect("spawning a kernel worker thread");
        *workers += 1;
    }
    let s = pool.shared;
    // SAFETY (lifetime erasure): this function returns only after `pending` reaches zero, i.e. after the last
    // use of `task` by any thread.
    let erased: TaskPtr = TaskPtr(unsafe {
        std::mem::transmute::<*const (dyn Fn(usize) + Sync + '_), *const (dyn Fn(usize) + Sync)>(
            task,
        )
    });
    *s.job.lock().unwrap() = Some((erased, bands));
    s.panicked.store(false, SeqCst);
    s.pending.store(bands, SeqCst);
    let epoch = (s.claim.load(SeqCst) >> 32).wrapping_add(1) & u32::MAX as u64;
    s.claim.store(epoch << 32, SeqCst);
    if s.sleepers.load(SeqCst) > 0 {
        let _lock = s.sleep.lock().unwrap();
        s.wake.notify_all();
    }
    s.work(epoch);
    while s.pending.load(SeqCst) > 0 {
        std::hint::spin_loop();
    }
    *s.job.lock().unwrap() = None;
    if s.panicked.load(SeqCst) {
        drop(workers);
        panic!("a CPU kernel band panicked");
    }
}

#[cfg(test)]
mod tests {
    use super::run;
    use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

    fn counts(bands: usize, calls: usize) -> Vec<usize> {
        let hits: Vec<AtomicUsize> = (0..bands).map(|_| AtomicUsize::new(0)).collect();
        for _ in 0..calls {
            run(bands, &|b| {
                hits[b].fetch_add(1, Relaxed);
            });
        }
        hits.into_iter().map(AtomicUsize::into_inner).collect()
    }

    #[test]
    fn every_band_runs_once_per_call_from_concurrent_dispatchers() {
        std::thread::scope(|s| {
            let handles: Vec<_> = (1..=4)
                .map(|bands| s.spawn(move || (bands, counts(bands, 2000))))
                .collect();
            for h in handles {
                let (bands, got) = h.join().unwrap();
                assert_eq!(got, vec![2000; bands], "{bands} bands");
            }
        });
    }

    #[test]
    fn a_panicking_band_reaches_the_caller_and_the_pool_recovers() {
        let caught = std::panic::catch_unwind(|| run(3, &|b| assert!(b != 2, "band {b}")));
        assert!(caught.is_err());
        assert_eq!(counts(3, 100), vec![100; 3]);
    }
}
