/* The asynchronous-IO part of iobench's native module (_async.c), added to it at import. */
#ifndef IOBENCH_ASYNC_H
#define IOBENCH_ASYNC_H

#include <Python.h>

/* Latency histogram: exact below 2^HIST_SUB_BITS ns, then 2^HIST_SUB_BITS buckets per power of
 * two up to 2^64 ns. iobench/loops/histogram.py mirrors these numbers. */
#define HIST_SUB_BITS 5
#define HIST_SUB (1 << HIST_SUB_BITS)
#define HIST_BUCKETS ((64 - HIST_SUB_BITS + 1) * HIST_SUB)

/* Adds psync_run, hist_index, uring_support, libaio_support, Uring and Aio to the module. */
int iobench_async_init(PyObject *module);

#endif
