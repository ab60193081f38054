//! Malloc tuning for the inference loop.

/// Makes glibc's malloc keep freed memory for reuse instead of returning it to the kernel: every op of a
/// forward pass allocates its output (megabytes in prefill), and with the default adaptive thresholds those
/// blocks were unmapped or trimmed after use and faulted back in zero-filled the next time, 12% of the
/// samples of a pp128 profile (BENCHMARKS.md). The process keeps at most its peak of transient buffers.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `mallopt` only sets malloc parameters; it runs before any other thread exists.
    unsafe {
        // Blocks up to 32 MiB (glibc's largest threshold) come from the heap, not fresh mappings.
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        // Free memory at the top of a heap is returned to the kernel only beyond 1 GiB.
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
        // One arena for every thread: the model runs on rayon's threads, whose arenas are 64 MiB heaps that
        // glibc unmaps whole as soon as one is free, whatever the trim threshold; a prefill's buffers emptied
        // and unmapped such a heap every layer (40,000 page faults per 512-token prompt, 150 MB zero-filled
        // again). The inference loop allocates only per op, so one arena's lock is not contended.
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}
