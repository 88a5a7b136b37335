/* Forwards to glommio's liburing header (see ../../../README.md). */
#include <liburing_real/include/liburing/barrier.h>
