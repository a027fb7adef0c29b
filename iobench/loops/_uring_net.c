/* io_uring socket strategies (included by _async.c inside its io_uring section). */
#define URING_NET_METHODS
