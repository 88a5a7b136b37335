/*
 * glommio's liburing syscall wrappers, with io_uring_setup wrapped to ask for
 * IORING_SETUP_COOP_TASKRUN (see ../README.md for why).
 *
 * The original `__sys_io_uring_setup` is compiled under another name; ours adds the flag to
 * every ring glommio creates that is not a polled ring, and falls back to the caller's flags
 * when the kernel refuses them (COOP_TASKRUN needs Linux 5.19). Setting
 * SWITCHYARD_IO_URING_COOP=0 in the environment turns it off.
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#define __sys_io_uring_setup switchyard_original_io_uring_setup
#include <liburing_real/syscall.c>
#undef __sys_io_uring_setup

#ifndef IORING_SETUP_COOP_TASKRUN
#define IORING_SETUP_COOP_TASKRUN (1U << 8)
#endif

/* Rings created with the flag, and without it (knob, polled ring, or refused by the kernel).
 * The router reads them at start (`switchyard_uring_coop_rings`, exported to its dynamic
 * symbol table by router/build.rs) to log and expose which rings it got. */
static atomic_int coop_rings;
static atomic_int plain_rings;

__attribute__((visibility("default"), used))
int switchyard_uring_coop_rings(int coop)
{
	return atomic_load(coop ? &coop_rings : &plain_rings);
}

int __sys_io_uring_setup(unsigned entries, struct io_uring_params *p)
{
	const char *knob = getenv("SWITCHYARD_IO_URING_COOP");
	unsigned asked = p->flags;
	int fd;

	if ((knob && strcmp(knob, "0") == 0) ||
	    (asked & (IORING_SETUP_IOPOLL | IORING_SETUP_SQPOLL))) {
		fd = switchyard_original_io_uring_setup(entries, p);
		if (fd >= 0 && !(asked & (IORING_SETUP_IOPOLL | IORING_SETUP_SQPOLL)))
			atomic_fetch_add(&plain_rings, 1);
		return fd;
	}
	p->flags = asked | IORING_SETUP_COOP_TASKRUN;
	fd = switchyard_original_io_uring_setup(entries, p);
	if (fd >= 0) {
		atomic_fetch_add(&coop_rings, 1);
	} else if (errno == EINVAL) {
		p->flags = asked;
		fd = switchyard_original_io_uring_setup(entries, p);
		if (fd >= 0)
			atomic_fetch_add(&plain_rings, 1);
	}
	return fd;
}
