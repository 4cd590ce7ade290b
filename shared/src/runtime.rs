//! The process's async runtime, built the same way for the functions and the CLI.

/// Builds the multi-threaded Tokio runtime, after limiting glibc's malloc to one arena.
///
/// By default glibc gives each thread that allocates (Tokio's workers, and the blocking threads
/// that read spooled export parts) an arena of its own, and each keeps the pages it has touched:
/// a long export's peak RSS then grew with its length (30.4 MiB at 10,000 items, 34.5 MiB at
/// 100,000). With one arena it stays flat (measured with `make bench-export`); this process's
/// threads mostly wait on the network, so they rarely contend for it. Set before any thread
/// starts, so that every thread shares it.
pub fn build() -> std::io::Result<tokio::runtime::Runtime> {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets a malloc parameter; it is called before the runtime starts any
    // thread.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
}
