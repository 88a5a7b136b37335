/* glommio's liburing queue.c, unchanged (see ../README.md). */
#include <liburing_real/queue.c>
