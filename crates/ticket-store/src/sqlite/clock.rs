//! Where a step of one of the store's threads spent its time: on a CPU, waiting for one, or
//! neither (blocked: in the disk, a lock, a sleep).
//!
//! Why: the writer's trace events say how long each step took (`took_us`), and a slow request
//! is placed against the steps in flight (`scripts/bench/place-tail`). A step can be long
//! because it works, because the thread was runnable while other threads held both cores, or
//! because it waited for the disk; only the first is the step's own cost. Issue 14's sixth
//! session guessed the third for the fold's slow reads; these fields showed the second for its
//! steps over 5 ms, and little disk at all (see docs/PERFORMANCE.md). Read only while the
//! trace is on: the thread's clocks at the step's start and end, each a clock call and a read
//! of a file in `/proc`.

/// A thread's CPU time and time spent runnable but not running, at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ThreadClock {
    cpu_ns: u64,
    waited_ns: u64,
}

/// What a thread spent between two readings, in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Spent {
    /// On a CPU.
    pub(crate) cpu_us: u64,
    /// Runnable, waiting for a CPU (the scheduler's run delay).
    pub(crate) waited_us: u64,
}

impl ThreadClock {
    /// This thread's clocks when `traced` (the caller's `tracing::enabled!`), so that a store
    /// without its trace reads nothing; `None` too where they cannot be read.
    pub(crate) fn start(traced: bool) -> Option<Self> {
        if traced {
            Self::now()
        } else {
            None
        }
    }

    /// What this thread spent since `start` (zero without a reading).
    pub(crate) fn spent(start: Option<Self>) -> Spent {
        let (Some(start), Some(now)) = (start, start.and_then(|_| Self::now())) else {
            return Spent::default();
        };
        Spent {
            cpu_us: now.cpu_ns.saturating_sub(start.cpu_ns) / 1_000,
            waited_us: now.waited_ns.saturating_sub(start.waited_ns) / 1_000,
        }
    }

    /// The CPU time from the thread's CPU clock (exact, unlike `schedstat`'s first field,
    /// which lags for a running thread); the run delay from `/proc/thread-self/schedstat`'s
    /// second field, complete up to the moment this thread got its CPU.
    #[cfg(target_os = "linux")]
    fn now() -> Option<Self> {
        let cpu = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
        let cpu_ns = u64::try_from(cpu.tv_sec)
            .ok()?
            .checked_mul(1_000_000_000)?
            .checked_add(u64::try_from(cpu.tv_nsec).ok()?)?;
        let schedstat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
        let waited_ns = schedstat.split_whitespace().nth(1)?.parse().ok()?;
        Some(Self { cpu_ns, waited_ns })
    }

    #[cfg(not(target_os = "linux"))]
    fn now() -> Option<Self> {
        None
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn work_shows_as_cpu_and_a_sleep_as_neither() {
        let start = ThreadClock::start(true);
        assert!(start.is_some(), "the thread's clocks are readable on Linux");
        let mut x = 0_u64;
        let began = std::time::Instant::now();
        while began.elapsed() < std::time::Duration::from_millis(20) {
            x = std::hint::black_box(x.wrapping_add(1));
        }
        let worked = ThreadClock::spent(start);
        let wall_us = u64::try_from(began.elapsed().as_micros()).unwrap_or(u64::MAX);
        // Spinning is CPU even on a loaded machine, and no reading exceeds the wall time
        // (a millisecond of slack for the readings themselves).
        assert!(worked.cpu_us > 0, "{worked:?}");
        assert!(
            worked.cpu_us + worked.waited_us <= wall_us + 1_000,
            "{worked:?} in {wall_us} µs"
        );

        let start = ThreadClock::start(true);
        let began = std::time::Instant::now();
        std::thread::sleep(std::time::Duration::from_millis(30));
        let slept = ThreadClock::spent(start);
        let wall_us = u64::try_from(began.elapsed().as_micros()).unwrap_or(u64::MAX);
        // The 30 ms asleep are neither: what the trace leaves as blocked.
        let blocked = wall_us.saturating_sub(slept.cpu_us + slept.waited_us);
        assert!(blocked >= 29_000, "{slept:?} in {wall_us} µs");
    }

    /// Two threads spinning on one CPU take turns: each waits for it about half the time.
    /// A run delay read from the wrong field (or not at all) fails here.
    #[test]
    fn a_thread_sharing_its_cpu_shows_the_wait() {
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::Arc;

        let allowed = rustix::thread::sched_getaffinity(None).expect("affinity");
        let cpu = (0..rustix::thread::CpuSet::MAX_CPU)
            .find(|&c| allowed.is_set(c))
            .expect("an allowed CPU");
        let mut one = rustix::thread::CpuSet::new();
        one.set(cpu);
        let pin = move || rustix::thread::sched_setaffinity(None, &one).expect("pin");
        let stop = Arc::new(AtomicBool::new(false));
        let spinner = {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                pin();
                while !stop.load(Ordering::Relaxed) {
                    std::hint::spin_loop();
                }
            })
        };
        pin();
        let start = ThreadClock::start(true);
        let began = std::time::Instant::now();
        while began.elapsed() < std::time::Duration::from_millis(200) {
            std::hint::spin_loop();
        }
        let shared = ThreadClock::spent(start);
        stop.store(true, Ordering::Relaxed);
        spinner.join().expect("spinner");
        // Half of 200 ms is 100 ms; 20 ms leaves room for any scheduler's idea of fair.
        assert!(shared.waited_us >= 20_000, "{shared:?}");
        assert!(shared.cpu_us >= 20_000, "{shared:?}");
    }

    #[test]
    fn untraced_reads_nothing() {
        assert_eq!(ThreadClock::start(false), None);
        assert_eq!(ThreadClock::spent(None), Spent::default());
    }
}
