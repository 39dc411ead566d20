//! Run-time options of mimalloc, the binary's allocator (`src/main.rs`): the one place the
//! workspace calls C, behind safe functions. Everything else forbids `unsafe`.

/// Freed memory goes back to the OS at once instead of after mimalloc's purge delay (a second
/// by default). `backfill` frees a file's batches as the next
/// file's arrive, so its RSS followed what was imported in the last second rather than what is
/// in flight (issue 22's bench, 10 files at 2 jobs: 132-151 MiB, 77 MiB with this; 1 file 64
/// MiB), for a little more CPU in `madvise`. Commands that do not call it keep the default.
pub fn purge_freed_memory_at_once() {
    // `mi_option_purge_delay` in mimalloc v3's `mimalloc.h` (the bindings name the options up
    // to the one before it, `mi_option_eager_commit_delay` = 14).
    const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
    // SAFETY: `mi_option_set` is mimalloc's documented run-time API, safe to call at any time
    // from any thread; the purge delay is read at each purge, so it takes effect from here on.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 0) };
}

#[cfg(test)]
mod tests {
    /// Option 15 is the purge delay: this mimalloc's default for it is 1,000 (ms; the header's
    /// comment says 10, from before v3), and the call sets it to 0. A mimalloc that renumbered its options fails here, not silently in production.
    #[test]
    fn the_option_set_is_the_purge_delay() {
        // SAFETY: reading an option is mimalloc's documented run-time API.
        let get = || unsafe { libmimalloc_sys::mi_option_get(15) };
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
            assert_eq!(get(), 1_000, "mimalloc's default purge delay");
        }
        super::purge_freed_memory_at_once();
        assert_eq!(get(), 0);
    }
}
