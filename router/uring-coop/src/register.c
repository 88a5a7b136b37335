/* glommio's liburing register.c, unchanged (see ../README.md). */
#include <liburing_real/register.c>
