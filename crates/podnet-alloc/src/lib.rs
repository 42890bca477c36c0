//! What podnet asks of the allocator: freed pages given back, and one arena.
//!
//! glibc's malloc returns freed memory to the kernel only from the top of each heap (and only
//! once more than its trim threshold is free there, a threshold that rises to 64 MB as large
//! blocks come and go). After a peak, such as parsing 10,000 Services or taking the first
//! lists of a large cluster, the freed pages lie between blocks that stay, and the process
//! keeps them resident for good: the DNS server held 60 MB it had freed beside a 9 MB zone.
//! `malloc_trim(0)` walks every arena and gives the kernel every whole free page (madvise
//! MADV_DONTNEED), wherever it lies. The memory stays the allocator's to hand out again; only
//! its pages go.
//!
//! Call [`release_free_memory`] once a peak is over (it locks each arena in turn while it
//! walks it: not on a hot path).

/// Gives the kernel back the free pages of every malloc arena; returns whether any were. Does
/// nothing (false) off glibc, whose allocators give memory back themselves or have no such
/// call.
pub fn release_free_memory() -> bool {
    trim()
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn trim() -> bool {
    // SAFETY: malloc_trim takes no pointer and has no precondition; glibc takes each arena's
    // lock while it walks it, so it is safe beside other threads' allocations.
    unsafe { libc::malloc_trim(0) == 1 }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim() -> bool {
    false
}

/// Makes every thread allocate from glibc's one main arena; returns whether the setting was
/// taken. Call it first thing in `main`'s thread, before any other thread has allocated: a
/// thread that has allocated keeps the arena it was given.
///
/// glibc gives each thread that allocates while another holds the lock an arena of its own (up
/// to eight per core). A process whose worker threads decode a peak (the agent's first lists
/// of a large cluster) and keep a fraction of it (the objects its watches hold) leaves each of
/// those arenas mostly free but with live blocks on most of its pages, which no trim can give
/// back; and the main arena, where the model is built afterwards, cannot reuse them. The agent
/// at 10,000 Services held 100 MB of RSS in two such arenas with 21 MB live in them. With one
/// arena the memory freed by the peak is reused by what follows it. The price is one lock for
/// every thread's allocations beyond their own caches (glibc's per-thread tcache): right for a
/// process with few threads that allocate little once it runs, not for a proxy's workers.
pub fn one_arena() -> bool {
    arena_max(1)
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn arena_max(n: i32) -> bool {
    // SAFETY: mallopt takes two integers and no pointer; M_ARENA_MAX only bounds the arenas
    // made from now on.
    unsafe { libc::mallopt(libc::M_ARENA_MAX, n) == 1 }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn arena_max(_: i32) -> bool {
    false
}

#[cfg(test)]
mod tests {
    /// The process's resident set in kB.
    fn rss_kb() -> u64 {
        std::fs::read_to_string("/proc/self/status")
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap()
    }

    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn pages_freed_between_live_blocks_go_back() {
        // A peak of many small blocks (below the mmap threshold, so they come from the heap),
        // every 64th of which stays: the rest cannot be trimmed from the top.
        let mut all: Vec<Vec<u8>> = (0..400_000).map(|i| vec![i as u8; 500]).collect();
        let kept: Vec<Vec<u8>> = all.iter().step_by(64).cloned().collect();
        let peak = rss_kb();
        all.clear();
        all.shrink_to_fit();
        let freed = rss_kb();
        let t = std::time::Instant::now();
        assert!(super::release_free_memory(), "nothing was given back");
        eprintln!("trim took {:?}", t.elapsed());
        let trimmed = rss_kb();
        eprintln!("RSS: peak {peak} kB, freed {freed} kB, trimmed {trimmed} kB");
        // 200 MB were freed; glibc kept most of it until asked.
        assert!(
            trimmed + 100_000 < freed,
            "RSS {freed} kB before the trim, {trimmed} kB after"
        );
        assert_eq!(kept.len(), 6250);
    }
}
