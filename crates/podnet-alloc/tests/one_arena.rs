//! `one_arena`: blocks allocated by other threads come from the main arena (the `[heap]`
//! mapping), where without it each new thread is given an arena of its own (mapped elsewhere).
//! The same binary runs again with `--default` for the contrast, so the check can fail.

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn main() {
    let default = std::env::args().any(|a| a == "--default");
    if !default {
        assert!(podnet_alloc::one_arena(), "mallopt refused M_ARENA_MAX");
    }
    let outside = blocks_outside_heap();
    if default {
        // The contrast, reported to the parent.
        println!("{outside}");
        return;
    }
    assert_eq!(
        outside, 0,
        "with one arena, {outside} of 4 threads allocated elsewhere"
    );
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .arg("--default")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let outside: usize = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    assert!(
        outside > 0,
        "without the setting every thread allocated from the main arena too: the test shows nothing"
    );
    println!("one arena: 0 of 4 threads allocated outside [heap]; without it, {outside} of 4");
}

/// The main arena's `[heap]` mapping, as (start, end).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn heap() -> (usize, usize) {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    let range = maps
        .lines()
        .find(|l| l.ends_with("[heap]"))
        .and_then(|l| l.split(' ').next())
        .expect("no [heap] mapping");
    let (a, b) = range.split_once('-').unwrap();
    let p = |x| usize::from_str_radix(x, 16).unwrap();
    (p(a), p(b))
}

/// Four threads at once each allocate a small block and hold it until all have: how many of
/// the blocks lie outside the main arena's `[heap]`.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn blocks_outside_heap() -> usize {
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(5));
    let threads: Vec<_> = (0..4)
        .map(|i| {
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                let block = Box::new([i as u8; 64]);
                let at = &*block as *const [u8; 64] as usize;
                // Held until the main thread has read the maps.
                barrier.wait();
                barrier.wait();
                drop(block);
                at
            })
        })
        .collect();
    barrier.wait();
    let (start, end) = heap();
    barrier.wait();
    let addrs: Vec<usize> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    addrs
        .iter()
        .filter(|&&a| !(start..end).contains(&a))
        .count()
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn main() {
    println!("SKIP: one_arena sets glibc's M_ARENA_MAX; this target has no glibc malloc");
}
