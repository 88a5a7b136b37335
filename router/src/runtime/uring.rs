//! Which io_uring rings glommio got. Built in this workspace, glommio compiles its liburing
//! through `router/uring-coop`, which asks for `IORING_SETUP_COOP_TASKRUN` (completions
//! handled at the thread's next kernel entry instead of by an interrupt: about twice the
//! throughput under load, `router/uring-coop/README.md`); built elsewhere it silently gets
//! stock rings. The shim counts the rings it made each way; this reads the counts (through
//! `dlsym`, since a binary without the shim has no such symbol) so the router can say at
//! start, and on `/metrics`, which it got.

/// Rings glommio created with and without `IORING_SETUP_COOP_TASKRUN` (polled rings are not
/// counted); `None` when the uring-coop shim is not in this binary.
#[must_use]
pub fn rings() -> Option<(u32, u32)> {
    type Count = unsafe extern "C" fn(libc::c_int) -> libc::c_int;
    let name = c"switchyard_uring_coop_rings";
    #[expect(
        unsafe_code,
        reason = "looking up and calling the uring-coop shim's counter"
    )]
    // SAFETY: `dlsym` gets a NUL-terminated name and the default search handle. A non-null
    // result is the address of `int switchyard_uring_coop_rings(int)` from
    // router/uring-coop/src/syscall.c (the only definition of that name), so calling it
    // through a pointer of that signature is sound; it only loads two atomics.
    let (coop, plain) = unsafe {
        let f = libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr());
        if f.is_null() {
            return None;
        }
        let f: Count = std::mem::transmute::<*mut libc::c_void, Count>(f);
        (f(1), f(0))
    };
    Some((
        u32::try_from(coop).unwrap_or(0),
        u32::try_from(plain).unwrap_or(0),
    ))
}

/// Whether every ring has the flag (what `/metrics` shows as 1).
#[must_use]
pub fn cooperative() -> bool {
    matches!(rings(), Some((coop, 0)) if coop > 0)
}

/// Logs which rings the executors got (once, after they started).
pub fn report() {
    match rings() {
        Some((coop, 0)) if coop > 0 => {
            tracing::info!(
                rings = coop,
                "io_uring rings with IORING_SETUP_COOP_TASKRUN"
            );
        }
        Some((coop, plain)) => tracing::warn!(
            cooperative = coop,
            plain,
            "some io_uring rings lack IORING_SETUP_COOP_TASKRUN (SWITCHYARD_IO_URING_COOP=0, or a kernel before 5.19): throughput under load is lower"
        ),
        None => tracing::warn!(
            "this build's glommio uses stock io_uring rings, without IORING_SETUP_COOP_TASKRUN (it was built outside the repository, where .cargo/config.toml points glommio at router/uring-coop): throughput under load is about half; see router/uring-coop/README.md"
        ),
    }
}
