//! Fork-join for the parallel pass of one tick (the apply runs): a list of independent jobs,
//! each owning disjoint slices of the race's per-rider arrays, run once each on the tick's
//! thread and on scoped helper threads that claim them in turn. It keeps no threads or state
//! between calls and knows nothing about riders; merging the jobs' outputs is the caller's.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};

/// Runs every job exactly once, on the calling thread and on `threads - 1` scoped threads (no
/// more than there are jobs), each taking the next unclaimed job: a thread that starts late on
/// a busy machine leaves its share to the others instead of holding up the tick. With one
/// thread (or one job) nothing is spawned.
pub(super) fn run_jobs<J: Send>(threads: usize, jobs: Vec<J>, run: impl Fn(J) + Sync) {
    let threads = threads.min(jobs.len()).max(1);
    if threads == 1 {
        jobs.into_iter().for_each(run);
        return;
    }
    // Each job is claimed once (the counter), so its lock is never contended: it only hands
    // the job's exclusive borrows over to whichever thread claimed it.
    let jobs: Vec<Mutex<Option<J>>> = jobs.into_iter().map(|j| Mutex::new(Some(j))).collect();
    let next = AtomicUsize::new(0);
    let work = || {
        while let Some(job) = jobs.get(next.fetch_add(1, Ordering::Relaxed)) {
            if let Some(job) = job.lock().unwrap_or_else(PoisonError::into_inner).take() {
                run(job);
            }
        }
    };
    std::thread::scope(|scope| {
        for _ in 1..threads {
            scope.spawn(work);
        }
        work();
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_job_runs_once_whatever_the_thread_count() {
        for threads in [1, 2, 3, 8] {
            let mut counts = vec![0u32; 37];
            let jobs: Vec<&mut [u32]> = counts.chunks_mut(5).collect();
            run_jobs(threads, jobs, |chunk| {
                chunk.iter_mut().for_each(|c| *c += 1)
            });
            assert!(
                counts.iter().all(|&c| c == 1),
                "{threads} threads: {counts:?}"
            );
        }
    }
}
