//! The `datapool` executable: parse the command line and run it.

/// mimalloc instead of glibc's allocator: requests allocate and free many small
/// buffers across threads, and the ingest benchmark measured about 20% more requests
/// per second with it.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's `mi_option_purge_delay` (its `mimalloc.h`, version 3): how long freed
/// memory stays resident in case it is reused.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
/// The purge delay datapool runs with, in milliseconds. mimalloc's own 1,000 keeps the
/// peak of a 64 MiB bulk import about 70 MiB higher; 0 (return at once) costs an
/// `madvise` and a TLB flush on every core for nearly every freed page, about 12% of the
/// single-item ingest rate; 10 keeps the low peak (93 – 95 MiB either way) without that.
const PURGE_DELAY_MS: std::ffi::c_long = 10;

fn main() -> std::process::ExitCode {
    // SAFETY: setting an option stores a number that mimalloc reads when it next purges.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, PURGE_DELAY_MS) };
    datapool::cli::main()
}
