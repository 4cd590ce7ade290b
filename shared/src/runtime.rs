//! The process's async runtime, built the same way for the functions and the CLI.

/// Builds the multi-threaded Tokio runtime, after limiting glibc's malloc to one arena.
///
/// By default glibc gives each thread that allocates (Tokio's workers, and the blocking threads
/// that read spooled export parts) an arena of its own, and each keeps the pages it has touched:
/// a long export's peak RSS then grew with its length (30.4 MiB at 10,000 items, 34.5 MiB at
/// 100,000). With one arena it stays flat (measured with `make bench-export`); this process's
/// threads mostly wait on the network, so they rarely contend for it. Set before any thread
/// starts, so that every thread shares it.
///
/// Allocations of 256 KiB and more are mapped and unmapped on their own (a fixed threshold): by
/// default glibc raises the threshold to the size of each large block freed, so that an
/// export's 1 MB Scan answers, one a page, came from the heap between small blocks and the
/// heap crept up with the table (21.6 MiB at 10,000 items, 23.3 at 100,000; with the fixed
/// threshold 20.6 and 21.3, `make bench-export` on 2026-12-06).
pub fn build() -> std::io::Result<tokio::runtime::Runtime> {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets malloc parameters; it is called before the runtime starts any
    // thread.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 * 1024);
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
}
