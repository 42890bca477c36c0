//! Giving back what the allocator keeps.
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
