/* glommio's liburing setup.c, unchanged (see ../README.md). */
#include <liburing_real/setup.c>
