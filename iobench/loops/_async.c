/*
 * Asynchronous IO at queue depth, timed in C: io_uring and Linux AIO (the kernel interface
 * libaio wraps), plus the synchronous pread/pwrite loop they are compared with.
 *
 * Raw system calls, no liburing and no libaio: <linux/io_uring.h> and <linux/aio_abi.h> come
 * with the kernel headers every C build here already has (linux-libc-dev, a dependency of
 * libc6-dev), so the extension needs no extra package, nothing to link statically and nothing
 * at run time; every io_uring_enter/io_submit/io_getevents is made here, where it is counted,
 * as fio's own engines do. Without the headers (or with IOBENCH_NO_URING / IOBENCH_NO_LIBAIO
 * defined by setup.py) the engines compile to stubs that say why (uring_support()).
 *
 * Each IO's latency, from just before the system call that submits it to just after its
 * completion is seen, goes into a log-bucketed histogram (32 buckets per power of two) kept
 * in a caller's array of uint64, so repetitions and runs can be merged by adding counts. The
 * clock is read once per submission batch and once per reaped batch, never per IO. No Python
 * code runs per IO: the loops release the GIL and take it back every CHECK_BATCH completions
 * to run signal handlers; on an exception they stop submitting, wait for what is in flight
 * (its buffers are the caller's) and raise.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#if !defined(IOBENCH_NO_URING) && !__has_include(<linux/io_uring.h>)
#define IOBENCH_NO_URING "<linux/io_uring.h> was missing at build time"
#endif
#if !defined(IOBENCH_NO_LIBAIO) && !__has_include(<linux/aio_abi.h>)
#define IOBENCH_NO_LIBAIO "<linux/aio_abi.h> was missing at build time"
#endif

#ifndef IOBENCH_NO_URING
#include <linux/io_uring.h>
#endif
#ifndef IOBENCH_NO_LIBAIO
#include <linux/aio_abi.h>
#endif

#include "_async.h"

#define CHECK_BATCH 16384

/* ------------------------------------------------------------------ clock and histogram */

static inline int64_t
clock_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts); /* vDSO: no system call */
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* Bucket of a latency in ns: exact below 32, then 32 buckets per power of two (width < 3.2%
 * of the value). iobench/loops/histogram.py has the same function; a test compares them. */
static inline unsigned
hist_index(uint64_t v)
{
    if (v < HIST_SUB)
        return (unsigned)v;
    unsigned msb = 63u - (unsigned)__builtin_clzll(v);
    unsigned shift = msb - HIST_SUB_BITS;
    return (shift + 1u) * HIST_SUB + (unsigned)((v >> shift) - HIST_SUB);
}

struct lat {
    uint64_t *hist;
    int64_t sum, max, min;
    long long count;
};

static inline void
lat_add(struct lat *l, int64_t ns)
{
    if (ns < 0)
        ns = 0;
    l->hist[hist_index((uint64_t)ns)]++;
    l->sum += ns;
    l->count++;
    if (ns > l->max)
        l->max = ns;
    if (l->min < 0 || ns < l->min)
        l->min = ns;
}

/* ------------------------------------------------------------------ one file job */

/* What every file loop gets: fd, a buffer of qd slots of bs bytes, the IOs (offset and
 * direction), the histogram, and the counters it fills. */
struct job {
    int fd;
    char *buf;
    size_t bs;
    const int64_t *offsets;
    const unsigned char *writes;
    Py_ssize_t n;
    unsigned qd;
    long long stamp; /* 0: none; else a write's first 16 bytes become its offset and this tag */
    struct lat lat;
    /* progress */
    Py_ssize_t next, done;
    unsigned inflight;
    long long bytes, shorts, submit_calls, reap_calls, enter_calls, wakeups, retries;
    long long looks; /* times completions were taken (one or more each): ios / looks per look */
    int64_t submit_ns, loop_start, loop_end;
    int err;
    Py_ssize_t err_index;
    /* slots */
    unsigned *free_slots;
    unsigned nfree;
    Py_ssize_t *slot_io;
    int64_t *slot_start;
};

struct job_buffers {
    Py_buffer buffer, offsets, writes, hist;
};

static void
release_job_buffers(struct job_buffers *b)
{
    if (b->buffer.obj)
        PyBuffer_Release(&b->buffer);
    if (b->offsets.obj)
        PyBuffer_Release(&b->offsets);
    if (b->writes.obj)
        PyBuffer_Release(&b->writes);
    if (b->hist.obj)
        PyBuffer_Release(&b->hist);
}

static void
free_job(struct job *j)
{
    free(j->free_slots);
    free(j->slot_io);
    free(j->slot_start);
    j->free_slots = NULL;
    j->slot_io = NULL;
    j->slot_start = NULL;
}

/* Check the buffers and set up the job; 0, or -1 with an exception set. */
static int
init_job(struct job *j, struct job_buffers *b, int fd, Py_ssize_t bs, unsigned qd, long long stamp)
{
    memset(j, 0, sizeof(*j));
    if (bs <= 0 || qd < 1 || qd > 65536) {
        PyErr_SetString(PyExc_ValueError, "bs must be > 0 and qd within 1..65536");
        return -1;
    }
    if (b->buffer.len < (Py_ssize_t)qd * bs) {
        PyErr_Format(PyExc_ValueError, "buffer holds %zd bytes, qd x bs needs %zd", b->buffer.len,
                     (Py_ssize_t)qd * bs);
        return -1;
    }
    if (b->offsets.len % (Py_ssize_t)sizeof(int64_t)) {
        PyErr_SetString(PyExc_ValueError, "offsets must be an array of int64 ('q')");
        return -1;
    }
    j->n = b->offsets.len / (Py_ssize_t)sizeof(int64_t);
    if (b->writes.len != j->n) {
        PyErr_SetString(PyExc_ValueError, "writes must hold one byte (0 read, 1 write) per offset");
        return -1;
    }
    if (b->hist.len < (Py_ssize_t)(HIST_BUCKETS * sizeof(uint64_t))) {
        PyErr_Format(PyExc_ValueError, "histogram needs %d uint64 buckets", HIST_BUCKETS);
        return -1;
    }
    if (stamp && bs < 16) {
        PyErr_SetString(PyExc_ValueError, "stamping writes needs bs >= 16");
        return -1;
    }
    j->fd = fd;
    j->buf = b->buffer.buf;
    j->bs = (size_t)bs;
    j->offsets = b->offsets.buf;
    j->writes = b->writes.buf;
    j->qd = qd;
    j->stamp = stamp;
    j->lat.hist = b->hist.buf;
    j->lat.min = -1;
    j->free_slots = malloc(sizeof(unsigned) * qd);
    j->slot_io = malloc(sizeof(Py_ssize_t) * qd);
    j->slot_start = malloc(sizeof(int64_t) * qd);
    if (!j->free_slots || !j->slot_io || !j->slot_start) {
        free_job(j);
        PyErr_NoMemory();
        return -1;
    }
    for (unsigned s = 0; s < qd; s++)
        j->free_slots[s] = qd - 1 - s; /* slot 0 first */
    j->nfree = qd;
    j->err_index = -1;
    return 0;
}

/* The next IO into a free slot; a write's buffer stamped with its offset and the tag. */
static inline unsigned
take_slot(struct job *j, Py_ssize_t *io, char **addr, int *writing)
{
    unsigned slot = j->free_slots[--j->nfree];
    Py_ssize_t index = j->next++;
    j->slot_io[slot] = index;
    *io = index;
    *addr = j->buf + (size_t)slot * j->bs;
    *writing = j->writes[index] != 0;
    if (*writing && j->stamp) {
        memcpy(*addr, &j->offsets[index], sizeof(int64_t));
        memcpy(*addr + sizeof(int64_t), &j->stamp, sizeof(int64_t));
    }
    return slot;
}

/* One completion: latency, bytes, a short transfer or the first error. */
static inline void
complete(struct job *j, unsigned slot, long long res, int64_t now)
{
    lat_add(&j->lat, now - j->slot_start[slot]);
    if (res < 0) {
        if (!j->err) {
            j->err = (int)-res;
            j->err_index = j->slot_io[slot];
        }
    } else {
        j->bytes += res;
        if ((size_t)res != j->bs)
            j->shorts++;
    }
    j->free_slots[j->nfree++] = slot;
    j->inflight--;
    j->done++;
}

/* Another IO could be queued right now (a free slot, an IO left, no error). */
static inline int
can_queue(const struct job *j)
{
    return j->nfree && j->next < j->n && !j->err;
}

static inline int
job_finished(const struct job *j)
{
    return j->inflight == 0 && (j->err || j->next >= j->n);
}

static PyObject *
job_result(struct job *j, const char *engine)
{
    if (j->err) {
        int64_t at = j->err_index >= 0 ? j->offsets[j->err_index] : -1;
        const char *kind = j->err_index >= 0 && j->writes[j->err_index] ? "write" : "read";
        PyObject *message = PyUnicode_FromFormat("%s %s of %zu bytes at offset %lld: %s", engine, kind,
                                                 j->bs, (long long)at, strerror(j->err));
        if (message) {
            PyObject *exc = PyObject_CallFunction(PyExc_OSError, "iO", j->err, message);
            if (exc) {
                PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
                Py_DECREF(exc);
            }
            Py_DECREF(message);
        }
        return NULL;
    }
    return Py_BuildValue("{s:L,s:n,s:L,s:L,s:L,s:L,s:L,s:L,s:L,s:L,s:L,s:L,s:L,s:L}", "bytes", j->bytes, "ios",
                         j->done, "short", j->shorts, "submit_calls", j->submit_calls, "reap_calls",
                         j->reap_calls, "enter_calls", j->enter_calls, "wakeups", j->wakeups, "submit_ns",
                         (long long)j->submit_ns, "loop_ns", (long long)(j->loop_end - j->loop_start),
                         "lat_sum_ns", (long long)j->lat.sum, "lat_max_ns", (long long)j->lat.max,
                         "lat_min_ns", (long long)j->lat.min, "retries", j->retries, "looks", j->looks);
}

/* OSError(err, "what: strerror") with the errno's own subclass. */
static PyObject *
oserror_with(int err, const char *what)
{
    PyObject *message = PyUnicode_FromFormat("%s: %s", what, strerror(err));
    if (!message)
        return NULL;
    PyObject *exc = PyObject_CallFunction(PyExc_OSError, "iO", err, message);
    Py_DECREF(message);
    if (exc) {
        PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
        Py_DECREF(exc);
    }
    return NULL;
}

typedef int (*step_fn)(void *engine, struct job *j, long long budget);

/* Run step() with the GIL released until the job is finished; on a Python signal that raises,
 * stop submitting and drain what is in flight before returning -1. A step returns 0, or an
 * errno for a failed system call (which ends the job after draining). */
static int
drive(void *engine, struct job *j, step_fn step)
{
    int interrupted = 0;
    j->loop_start = clock_ns();
    while (!job_finished(j)) {
        int rc, broken = 0;
        Py_BEGIN_ALLOW_THREADS
        rc = step(engine, j, CHECK_BATCH);
        Py_END_ALLOW_THREADS
        if (rc && rc != EINTR) {
            /* The submitting or reaping call itself failed: what is in flight cannot be reaped
             * through it. Closing the ring or context (teardown) cancels it; the kernel keeps
             * its own references to the pages until then. */
            if (!j->err)
                j->err = rc;
            broken = 1;
        }
        if (!interrupted && PyErr_CheckSignals() < 0) {
            interrupted = 1;
            if (!j->err)
                j->err = EINTR; /* stop submitting, drain; the exception is already set */
        }
        if (broken)
            break;
    }
    j->loop_end = clock_ns();
    return interrupted ? -1 : 0;
}

/* ------------------------------------------------------------------ psync */

static int
psync_step(void *unused, struct job *j, long long budget)
{
    while (j->next < j->n && !j->err && budget-- > 0) {
        Py_ssize_t io;
        char *addr;
        int writing;
        unsigned slot = take_slot(j, &io, &addr, &writing);
        int64_t start = clock_ns();
        ssize_t moved = writing ? pwrite(j->fd, addr, j->bs, j->offsets[io])
                                : pread(j->fd, addr, j->bs, j->offsets[io]);
        int saved = errno;
        int64_t end = clock_ns();
        j->submit_calls++;
        j->inflight++;
        j->slot_start[slot] = start;
        if (moved < 0 && saved == EINTR) { /* retried, as CPython does (PEP 475) */
            j->free_slots[j->nfree++] = slot;
            j->inflight--;
            j->next--;
            return EINTR;
        }
        complete(j, slot, moved < 0 ? -(long long)saved : (long long)moved, end);
        j->looks++; /* each call returns its own IO */
    }
    return 0;
}

/* psync_run(fd, buffer, bs, offsets, writes, hist, stamp=0) -> dict: one pread/pwrite per IO. */
static PyObject *
native_psync_run(PyObject *self, PyObject *args)
{
    int fd;
    long long stamp = 0;
    Py_ssize_t bs;
    struct job_buffers b = {0};
    if (!PyArg_ParseTuple(args, "iw*ny*y*w*|L:psync_run", &fd, &b.buffer, &bs, &b.offsets, &b.writes, &b.hist,
                          &stamp))
        return NULL;
    struct job j;
    PyObject *result = NULL;
    if (init_job(&j, &b, fd, bs, 1, stamp) == 0) {
        if (drive(NULL, &j, psync_step) == 0)
            result = job_result(&j, "pread/pwrite");
        free_job(&j);
    }
    release_job_buffers(&b);
    return result;
}

/* hist_index(ns) -> bucket: the C side of the histogram, for tests. */
static PyObject *
native_hist_index(PyObject *self, PyObject *args)
{
    unsigned long long value;
    if (!PyArg_ParseTuple(args, "K:hist_index", &value))
        return NULL;
    return PyLong_FromUnsignedLong(hist_index(value));
}

/* ------------------------------------------------------------------ io_uring */

#ifndef IOBENCH_NO_URING

#ifndef IORING_SETUP_COOP_TASKRUN
#define IORING_SETUP_COOP_TASKRUN (1U << 8)
#endif
#ifndef IORING_SETUP_SINGLE_ISSUER
#define IORING_SETUP_SINGLE_ISSUER (1U << 12)
#endif
#ifndef IORING_SETUP_DEFER_TASKRUN
#define IORING_SETUP_DEFER_TASKRUN (1U << 13)
#endif

static int
sys_io_uring_setup(unsigned entries, struct io_uring_params *p)
{
    return (int)syscall(__NR_io_uring_setup, entries, p);
}

static int
sys_io_uring_enter(int fd, unsigned to_submit, unsigned min_complete, unsigned flags)
{
    return (int)syscall(__NR_io_uring_enter, fd, to_submit, min_complete, flags, NULL, 0);
}

static int
sys_io_uring_register(int fd, unsigned opcode, const void *arg, unsigned nr_args)
{
    return (int)syscall(__NR_io_uring_register, fd, opcode, arg, nr_args);
}

#define LOAD_ACQ(p) __atomic_load_n((p), __ATOMIC_ACQUIRE)
#define STORE_REL(p, v) __atomic_store_n((p), (v), __ATOMIC_RELEASE)

typedef struct {
    PyObject_HEAD
    int fd;
    unsigned setup_flags, features, sq_entries, cq_entries;
    void *sq_map, *cq_map;
    size_t sq_map_len, cq_map_len;
    struct io_uring_sqe *sqes;
    size_t sqes_len;
    unsigned *sq_head, *sq_tail, *sq_mask, *sq_flags, *sq_array;
    unsigned *cq_head, *cq_tail, *cq_mask, *cq_overflow;
    struct io_uring_cqe *cqes;
    unsigned sq_local_tail; /* SQEs written, published or not */
    unsigned sq_submitted;  /* SQEs handed to the kernel (non-SQPOLL) */
    Py_buffer registered;   /* the registered buffer, held so it cannot go away under the kernel */
    int files_registered;
    /* provided-buffer ring (socket strategies, _uring_net.c) */
    struct io_uring_buf_ring *br;
    size_t br_len;
    unsigned br_entries, br_size;
    unsigned short br_tail;
    int br_registered;
    Py_buffer br_buffer; /* the buffers the ring hands out, held while the ring exists */
    /* the connections of recv_bufring, kept between calls (their receives stay armed) */
    int *net_fds;
    void *net_conns;
    unsigned char *net_armed;
    unsigned net_n;
} UringObject;

static PyTypeObject UringType;

static void
uring_unmap(UringObject *r)
{
    if (r->br) {
        if (r->br_registered) {
            struct io_uring_buf_reg reg = {0};
            reg.bgid = 0;
            sys_io_uring_register(r->fd, IORING_UNREGISTER_PBUF_RING, &reg, 1);
            r->br_registered = 0;
        }
        munmap(r->br, r->br_len);
        r->br = NULL;
    }
    free(r->net_fds);
    free(r->net_conns);
    free(r->net_armed);
    r->net_fds = NULL;
    r->net_conns = NULL;
    r->net_armed = NULL;
    r->net_n = 0;
    if (r->sqes && r->sqes != MAP_FAILED)
        munmap(r->sqes, r->sqes_len);
    if (r->cq_map && r->cq_map != MAP_FAILED && r->cq_map != r->sq_map)
        munmap(r->cq_map, r->cq_map_len);
    if (r->sq_map && r->sq_map != MAP_FAILED)
        munmap(r->sq_map, r->sq_map_len);
    r->sqes = NULL;
    r->sq_map = r->cq_map = NULL;
    if (r->fd >= 0) {
        close(r->fd);
        r->fd = -1;
    }
    if (r->registered.obj)
        PyBuffer_Release(&r->registered);
    if (r->br_buffer.obj)
        PyBuffer_Release(&r->br_buffer); /* after close: the kernel no longer hands it out */
}

static void
uring_dealloc(UringObject *r)
{
    uring_unmap(r);
    Py_TYPE(r)->tp_free((PyObject *)r);
}


/*
 * Uring(entries, sqpoll=False, sq_idle_ms=10, cq_entries=0): io_uring_setup and the three
 * mappings. Without SQPOLL the flags are fio's: CQSIZE, COOP_TASKRUN, SINGLE_ISSUER and
 * DEFER_TASKRUN, each dropped in turn when the kernel refuses it (EINVAL); with SQPOLL, a
 * kernel thread of this process polls the submission queue (it idles after sq_idle_ms).
 */
static PyObject *
uring_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"entries", "sqpoll", "sq_idle_ms", "cq_entries", "flags", NULL};
    unsigned entries, idle = 10, cq = 0;
    int sqpoll = 0;
    long long forced = -1;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "I|pIIL:Uring", kwlist, &entries, &sqpoll, &idle, &cq,
                                     &forced))
        return NULL;
    if (entries < 1 || entries > 32768) {
        PyErr_SetString(PyExc_ValueError, "entries must be within 1..32768");
        return NULL;
    }
    UringObject *r = (UringObject *)type->tp_alloc(type, 0);
    if (!r)
        return NULL;
    r->fd = -1;
    struct io_uring_params p;
    memset(&p, 0, sizeof(p));
    p.flags = IORING_SETUP_CQSIZE;
    p.cq_entries = cq ? cq : entries;
    if (sqpoll) {
        p.flags |= IORING_SETUP_SQPOLL;
        p.sq_thread_idle = idle;
    } else {
        p.flags |= IORING_SETUP_COOP_TASKRUN | IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
    }
    if (forced >= 0)
        p.flags = (unsigned)forced | (sqpoll ? IORING_SETUP_SQPOLL : 0); /* exactly these, no fallback */
    int fd;
    for (;;) {
        fd = sys_io_uring_setup(entries, &p);
        if (fd >= 0 || errno != EINVAL || forced >= 0)
            break;
        if (p.flags & IORING_SETUP_DEFER_TASKRUN)
            p.flags &= ~(IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_SINGLE_ISSUER);
        else if (p.flags & IORING_SETUP_COOP_TASKRUN)
            p.flags &= ~IORING_SETUP_COOP_TASKRUN;
        else if (p.flags & IORING_SETUP_CQSIZE)
            p.flags &= ~IORING_SETUP_CQSIZE;
        else
            break;
    }
    if (fd < 0) {
        int err = errno;
        Py_DECREF(r);
        return oserror_with(err, sqpoll ? "io_uring_setup (SQPOLL)" : "io_uring_setup");
    }
    r->fd = fd;
    r->setup_flags = p.flags;
    r->features = p.features;
    r->sq_entries = p.sq_entries;
    r->cq_entries = p.cq_entries;
    r->sq_map_len = p.sq_off.array + p.sq_entries * sizeof(unsigned);
    r->cq_map_len = p.cq_off.cqes + p.cq_entries * sizeof(struct io_uring_cqe);
    if (p.features & IORING_FEAT_SINGLE_MMAP) {
        if (r->cq_map_len > r->sq_map_len)
            r->sq_map_len = r->cq_map_len;
    }
    r->sq_map = mmap(NULL, r->sq_map_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd,
                     IORING_OFF_SQ_RING);
    if (r->sq_map == MAP_FAILED) {
        int err = errno;
        Py_DECREF(r);
        return oserror_with(err, "mmap of the io_uring submission ring");
    }
    if (p.features & IORING_FEAT_SINGLE_MMAP) {
        r->cq_map = r->sq_map;
    } else {
        r->cq_map = mmap(NULL, r->cq_map_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd,
                         IORING_OFF_CQ_RING);
        if (r->cq_map == MAP_FAILED) {
            int err = errno;
            Py_DECREF(r);
            return oserror_with(err, "mmap of the io_uring completion ring");
        }
    }
    r->sqes_len = p.sq_entries * sizeof(struct io_uring_sqe);
    r->sqes = mmap(NULL, r->sqes_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, IORING_OFF_SQES);
    if (r->sqes == MAP_FAILED) {
        int err = errno;
        Py_DECREF(r);
        return oserror_with(err, "mmap of the io_uring SQE array");
    }
    char *sq = r->sq_map, *cqm = r->cq_map;
    r->sq_head = (unsigned *)(sq + p.sq_off.head);
    r->sq_tail = (unsigned *)(sq + p.sq_off.tail);
    r->sq_mask = (unsigned *)(sq + p.sq_off.ring_mask);
    r->sq_flags = (unsigned *)(sq + p.sq_off.flags);
    r->sq_array = (unsigned *)(sq + p.sq_off.array);
    r->cq_head = (unsigned *)(cqm + p.cq_off.head);
    r->cq_tail = (unsigned *)(cqm + p.cq_off.tail);
    r->cq_mask = (unsigned *)(cqm + p.cq_off.ring_mask);
    r->cq_overflow = (unsigned *)(cqm + p.cq_off.overflow);
    r->cqes = (struct io_uring_cqe *)(cqm + p.cq_off.cqes);
    for (unsigned i = 0; i < p.sq_entries; i++)
        r->sq_array[i] = i; /* SQE i sits at ring position i: written in place, never indirected */
    r->sq_local_tail = r->sq_submitted = *r->sq_tail;
    return (PyObject *)r;
}

static int
uring_open(UringObject *r)
{
    if (r->fd < 0) {
        PyErr_SetString(PyExc_ValueError, "the io_uring instance is closed");
        return 0;
    }
    return 1;
}

static PyObject *
uring_close(UringObject *r, PyObject *unused)
{
    uring_unmap(r);
    Py_RETURN_NONE;
}

/* probe() -> bytes: one byte per opcode, 1 where this kernel supports it (IORING_REGISTER_PROBE). */
static PyObject *
uring_probe(UringObject *r, PyObject *unused)
{
    if (!uring_open(r))
        return NULL;
    size_t size = sizeof(struct io_uring_probe) + 256 * sizeof(struct io_uring_probe_op);
    struct io_uring_probe *probe = calloc(1, size);
    if (!probe)
        return PyErr_NoMemory();
    if (sys_io_uring_register(r->fd, IORING_REGISTER_PROBE, probe, 256) < 0) {
        int err = errno;
        free(probe);
        return oserror_with(err, "io_uring_register(IORING_REGISTER_PROBE)");
    }
    char ops[256] = {0};
    unsigned count = probe->ops_len; /* a __u8: at most 255 */
    for (unsigned i = 0; i < count; i++)
        ops[probe->ops[i].op] = (probe->ops[i].flags & IO_URING_OP_SUPPORTED) ? 1 : 0;
    free(probe);
    return PyBytes_FromStringAndSize(ops, count);
}

/* register_buffers(buffer): the whole buffer as one fixed buffer (index 0), pinned by the kernel. */
static PyObject *
uring_register_buffers(UringObject *r, PyObject *args)
{
    Py_buffer buffer;
    if (!uring_open(r) || !PyArg_ParseTuple(args, "w*:register_buffers", &buffer))
        return NULL;
    if (r->registered.obj) {
        PyBuffer_Release(&buffer);
        PyErr_SetString(PyExc_ValueError, "a buffer is already registered");
        return NULL;
    }
    struct iovec iov = {buffer.buf, (size_t)buffer.len};
    if (sys_io_uring_register(r->fd, IORING_REGISTER_BUFFERS, &iov, 1) < 0) {
        int err = errno;
        PyBuffer_Release(&buffer);
        return oserror_with(err, "io_uring_register(IORING_REGISTER_BUFFERS)");
    }
    r->registered = buffer;
    Py_RETURN_NONE;
}

/* register_files([fd, ...]): fixed files; SQEs then name them by index. */
static PyObject *
uring_register_files(UringObject *r, PyObject *args)
{
    PyObject *list;
    if (!uring_open(r) || !PyArg_ParseTuple(args, "O!:register_files", &PyList_Type, &list))
        return NULL;
    Py_ssize_t n = PyList_GET_SIZE(list);
    int *fds = malloc(sizeof(int) * (n ? n : 1));
    if (!fds)
        return PyErr_NoMemory();
    for (Py_ssize_t i = 0; i < n; i++) {
        fds[i] = (int)PyLong_AsLong(PyList_GET_ITEM(list, i));
        if (fds[i] == -1 && PyErr_Occurred()) {
            free(fds);
            return NULL;
        }
    }
    int rc = sys_io_uring_register(r->fd, IORING_REGISTER_FILES, fds, (unsigned)n);
    int err = errno;
    free(fds);
    if (rc < 0)
        return oserror_with(err, "io_uring_register(IORING_REGISTER_FILES)");
    r->files_registered = 1;
    Py_RETURN_NONE;
}

static inline struct io_uring_sqe *
next_sqe(UringObject *r)
{
    unsigned head = LOAD_ACQ(r->sq_head);
    if (r->sq_local_tail - head >= r->sq_entries)
        return NULL;
    struct io_uring_sqe *sqe = &r->sqes[r->sq_local_tail & *r->sq_mask];
    r->sq_local_tail++;
    memset(sqe, 0, sizeof(*sqe));
    return sqe;
}

static inline void
publish(UringObject *r)
{
    STORE_REL(r->sq_tail, r->sq_local_tail);
}

struct uring_file {
    UringObject *ring;
    int fixed_file, fixed_buffer, sqpoll;
    int64_t spin_ns;
    unsigned batch; /* most SQEs handed over per io_uring_enter (0: every free slot's) */
    unsigned reap;  /* most CQEs taken per look (0: all; 1: fio's one per wait, see run_file) */
};


/* Reap the CQEs there are now, at most `limit` (0: every one); returns how many. */
static unsigned
reap_file(UringObject *r, struct job *j, unsigned limit)
{
    unsigned head = *r->cq_head, tail = LOAD_ACQ(r->cq_tail), seen = 0;
    if (head == tail)
        return 0;
    int64_t now = clock_ns();
    unsigned mask = *r->cq_mask;
    while (head != tail && (!limit || seen < limit)) {
        struct io_uring_cqe *cqe = &r->cqes[head & mask];
        complete(j, (unsigned)cqe->user_data, cqe->res, now);
        head++;
        seen++;
    }
    STORE_REL(r->cq_head, head);
    j->looks++;
    return seen;
}

static int
uring_file_step(void *engine, struct job *j, long long budget)
{
    struct uring_file *u = engine;
    UringObject *r = u->ring;
    while (!job_finished(j) && budget > 0) {
        /* Fill free slots, up to a batch. */
        int64_t now = clock_ns();
        unsigned queued = 0;
        while (can_queue(j) && (u->sqpoll || !u->batch || queued < u->batch)) {
            struct io_uring_sqe *sqe = next_sqe(r);
            if (!sqe)
                break;
            Py_ssize_t io;
            char *addr;
            int writing;
            unsigned slot = take_slot(j, &io, &addr, &writing);
            if (u->fixed_buffer) {
                sqe->opcode = writing ? IORING_OP_WRITE_FIXED : IORING_OP_READ_FIXED;
                sqe->buf_index = 0;
            } else {
                sqe->opcode = writing ? IORING_OP_WRITE : IORING_OP_READ;
            }
            if (u->fixed_file)
                sqe->flags |= IOSQE_FIXED_FILE;
            sqe->fd = j->fd;
            sqe->addr = (uint64_t)(uintptr_t)addr;
            sqe->len = (unsigned)j->bs;
            sqe->off = (uint64_t)j->offsets[io];
            sqe->user_data = slot;
            j->slot_start[slot] = now;
            j->inflight++;
            queued++;
        }
        publish(r);
        if (u->sqpoll) {
            /* The kernel thread takes the SQEs; wake it only when it sleeps. */
            __atomic_thread_fence(__ATOMIC_SEQ_CST);
            if (LOAD_ACQ(r->sq_flags) & IORING_SQ_NEED_WAKEUP) {
                int rc = sys_io_uring_enter(r->fd, 0, 0, IORING_ENTER_SQ_WAKEUP);
                j->enter_calls++;
                j->submit_calls++; /* the wake-up is what submits, in SQPOLL mode */
                j->wakeups++;
                if (rc < 0 && errno != EINTR)
                    return errno;
            }
            unsigned got = reap_file(r, j, 0);
            if (!got && j->inflight) {
                /* Poll the completion ring for spin_ns, then sleep in io_uring_enter. */
                int64_t until = clock_ns() + u->spin_ns;
                while (!(got = reap_file(r, j, 0)) && clock_ns() < until)
                    ;
                if (!got) {
                    int rc = sys_io_uring_enter(r->fd, 0, 1, IORING_ENTER_GETEVENTS);
                    j->enter_calls++;
                    j->reap_calls++;
                    if (rc < 0 && errno != EINTR && errno != EAGAIN && errno != EBUSY)
                        return errno;
                    got = reap_file(r, j, 0);
                    if (rc < 0 && errno == EINTR)
                        return EINTR;
                }
            }
            budget -= got ? got : 1;
            continue;
        }
        unsigned to_submit = r->sq_local_tail - r->sq_submitted;
        if (!j->inflight)
            break; /* nothing queued or in flight: finished or failed */
        /* Wait for a completion only when nothing more can be queued; until then each call
         * hands its batch over and returns (GETEVENTS still posts what has completed). */
        unsigned wait = to_submit && can_queue(j) ? 0 : 1;
        if (u->reap && wait && !to_submit && *r->cq_head != LOAD_ACQ(r->cq_tail)) {
            /* fio's loop: a completion already in the ring is taken without a call. */
            budget -= reap_file(r, j, u->reap);
            continue;
        }
        int rc = sys_io_uring_enter(r->fd, to_submit, wait, IORING_ENTER_GETEVENTS);
        int saved = errno;
        j->enter_calls++;
        if (to_submit)
            j->submit_calls++;
        else
            j->reap_calls++;
        /* What the kernel took is what it moved the SQ head past. */
        r->sq_submitted = LOAD_ACQ(r->sq_head);
        /* Taking `reap` at a time, the loop looks only when it waited (fio looks only when full). */
        unsigned got = u->reap && !wait ? 0 : reap_file(r, j, u->reap);
        budget -= got ? got : 1;
        if (rc < 0) {
            if (saved == EINTR)
                return EINTR;
            if (saved == EAGAIN || saved == EBUSY) {
                j->retries++;
                continue;
            }
            return saved;
        }
    }
    return 0;
}

/*
 * run_file(fd, buffer, bs, offsets, writes, qd, hist, fixed_file=False, fixed_buffer=False,
 *          stamp=0, spin_ns=50000, batch=0, reap=0) -> dict (stamp: see struct job)
 * qd IOs in flight until every offset is done. Without SQPOLL each io_uring_enter hands over up
 * to `batch` queued SQEs (0: all that free slots allow) and returns at once while more could be
 * queued; once the queue is full (or the IOs are all issued) it also waits for a completion.
 * batch=1 is fio's default (iodepth_batch_submit=1): every IO submitted as soon as its slot is
 * free. Larger batches make fewer calls, and the block layer plugs a batch of three or more and
 * dispatches it together. With SQPOLL the kernel thread submits, and this thread polls the
 * completion ring for spin_ns before it sleeps in io_uring_enter(GETEVENTS).
 * reap=0 takes every completion in the ring after every call, so an IO's latency ends when its
 * completion is first there to see. reap=N (non-SQPOLL) is fio's loop (iodepth_batch_complete_max,
 * which defaults to 1): the ring is looked at only when the loop must wait, and at most N
 * completions are taken before the next submission; the others wait in the ring, and their
 * latency includes that wait, as fio's does.
 */
static PyObject *
uring_run_file(UringObject *r, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"fd",         "buffer",       "bs",    "offsets", "writes", "qd",
                             "hist",       "fixed_file",   "fixed_buffer", "stamp", "spin_ns", "batch",
                             "reap",       NULL};
    int fd, fixed_file = 0, fixed_buffer = 0;
    unsigned qd, batch = 0, reap = 0;
    Py_ssize_t bs;
    long long spin = 50000, stamp = 0;
    struct job_buffers b = {0};
    if (!uring_open(r) ||
        !PyArg_ParseTupleAndKeywords(args, kwds, "iw*ny*y*Iw*|ppLLII:run_file", kwlist, &fd, &b.buffer, &bs,
                                     &b.offsets, &b.writes, &qd, &b.hist, &fixed_file, &fixed_buffer, &stamp,
                                     &spin, &batch, &reap))
        return NULL;
    PyObject *result = NULL;
    struct job j;
    if (qd > r->sq_entries || qd > r->cq_entries) {
        PyErr_Format(PyExc_ValueError, "qd %u exceeds the ring (%u SQ, %u CQ entries)", qd, r->sq_entries,
                     r->cq_entries);
    } else if (fixed_buffer && (!r->registered.obj || b.buffer.buf < r->registered.buf ||
                                (char *)b.buffer.buf + b.buffer.len >
                                    (char *)r->registered.buf + r->registered.len)) {
        PyErr_SetString(PyExc_ValueError, "fixed_buffer: the buffer is not inside the registered one");
    } else if (fixed_file && !r->files_registered) {
        PyErr_SetString(PyExc_ValueError, "fixed_file: no files are registered");
    } else if (reap && (r->setup_flags & IORING_SETUP_SQPOLL)) {
        PyErr_SetString(PyExc_ValueError, "reap: with SQPOLL the loop takes every completion it finds");
    } else if (init_job(&j, &b, fd, bs, qd, stamp) == 0) {
        struct uring_file u = {r, fixed_file, fixed_buffer, (r->setup_flags & IORING_SETUP_SQPOLL) != 0, spin,
                               batch, reap};
        if (drive(&u, &j, uring_file_step) == 0)
            result = job_result(&j, "io_uring");
        free_job(&j);
    }
    release_job_buffers(&b);
    return result;
}

static PyObject *
uring_get_flags(UringObject *r, void *closure)
{
    return PyLong_FromUnsignedLong(r->setup_flags);
}

static PyObject *
uring_get_features(UringObject *r, void *closure)
{
    return PyLong_FromUnsignedLong(r->features);
}

static PyObject *
uring_get_fd(UringObject *r, void *closure)
{
    return PyLong_FromLong(r->fd);
}

static PyObject *
uring_get_entries(UringObject *r, void *closure)
{
    return Py_BuildValue("(II)", r->sq_entries, r->cq_entries);
}

#include "_uring_net.c"

static PyMethodDef uring_methods[] = {
    {"close", (PyCFunction)uring_close, METH_NOARGS, "close(): unmap the rings and close the descriptor."},
    {"probe", (PyCFunction)uring_probe, METH_NOARGS, "probe() -> bytes: 1 per opcode this kernel supports."},
    {"register_buffers", (PyCFunction)uring_register_buffers, METH_VARARGS,
     "register_buffers(buffer): register the whole buffer as fixed buffer 0."},
    {"register_files", (PyCFunction)uring_register_files, METH_VARARGS,
     "register_files([fd, ...]): register fixed files (SQEs name them by index)."},
    {"run_file", (PyCFunction)(void (*)(void))uring_run_file, METH_VARARGS | METH_KEYWORDS,
     "run_file(fd, buffer, bs, offsets, writes, qd, hist, fixed_file, fixed_buffer, stamp, spin_ns, batch, reap) "
     "-> dict"},
    URING_NET_METHODS
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef uring_getset[] = {
    {"setup_flags", (getter)uring_get_flags, NULL, "IORING_SETUP_* flags the ring was made with.", NULL},
    {"features", (getter)uring_get_features, NULL, "IORING_FEAT_* flags the kernel reported.", NULL},
    {"fd", (getter)uring_get_fd, NULL, "The ring's descriptor (-1 once closed).", NULL},
    {"entries", (getter)uring_get_entries, NULL, "(SQ entries, CQ entries).", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject UringType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "iobench.loops._native.Uring",
    .tp_basicsize = sizeof(UringObject),
    .tp_dealloc = (destructor)uring_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Uring(entries, sqpoll=False, sq_idle_ms=10, cq_entries=0): one io_uring instance.",
    .tp_methods = uring_methods,
    .tp_getset = uring_getset,
    .tp_new = uring_new,
};

#endif /* IOBENCH_NO_URING */

/* ------------------------------------------------------------------ Linux AIO */

#ifndef IOBENCH_NO_LIBAIO

typedef struct {
    PyObject_HEAD
    aio_context_t ctx;
    unsigned nr;
} AioObject;

static PyTypeObject AioType;

static void
aio_destroy_ctx(AioObject *a)
{
    if (a->ctx) {
        syscall(__NR_io_destroy, a->ctx);
        a->ctx = 0;
    }
}

static void
aio_dealloc(AioObject *a)
{
    aio_destroy_ctx(a);
    Py_TYPE(a)->tp_free((PyObject *)a);
}

/* Aio(nr): io_setup(nr). */
static PyObject *
aio_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"nr", NULL};
    unsigned nr;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "I:Aio", kwlist, &nr))
        return NULL;
    if (nr < 1 || nr > 65536) {
        PyErr_SetString(PyExc_ValueError, "nr must be within 1..65536");
        return NULL;
    }
    AioObject *a = (AioObject *)type->tp_alloc(type, 0);
    if (!a)
        return NULL;
    a->nr = nr;
    if (syscall(__NR_io_setup, nr, &a->ctx) < 0) {
        int err = errno;
        a->ctx = 0;
        Py_DECREF(a);
        return oserror_with(err, "io_setup");
    }
    return (PyObject *)a;
}

static PyObject *
aio_close(AioObject *a, PyObject *unused)
{
    aio_destroy_ctx(a);
    Py_RETURN_NONE;
}

struct aio_file {
    AioObject *aio;
    unsigned batch; /* most iocbs per io_submit (0: every free slot's) */
    unsigned reap;  /* most events per io_getevents (0: every IO in flight) */
    struct iocb *iocbs;
    struct iocb **pending;
    unsigned npending;
    struct io_event *events;
};

static int
aio_file_step(void *engine, struct job *j, long long budget)
{
    struct aio_file *e = engine;
    while (!job_finished(j) && budget > 0) {
        while (can_queue(j) && (!e->batch || e->npending < e->batch)) {
            Py_ssize_t io;
            char *addr;
            int writing;
            unsigned slot = take_slot(j, &io, &addr, &writing);
            struct iocb *cb = &e->iocbs[slot];
            memset(cb, 0, sizeof(*cb));
            cb->aio_data = slot;
            cb->aio_lio_opcode = writing ? IOCB_CMD_PWRITE : IOCB_CMD_PREAD;
            cb->aio_fildes = (unsigned)j->fd;
            cb->aio_buf = (uint64_t)(uintptr_t)addr;
            cb->aio_nbytes = j->bs;
            cb->aio_offset = j->offsets[io];
            e->pending[e->npending++] = cb;
            j->inflight++;
        }
        if (e->npending) {
            int64_t start = clock_ns();
            long rc = syscall(__NR_io_submit, e->aio->ctx, (long)e->npending, e->pending);
            int saved = errno;
            int64_t end = clock_ns();
            j->submit_calls++;
            j->submit_ns += end - start;
            if (rc < 0) {
                if (saved == EINTR)
                    return EINTR;
                if (saved == EAGAIN) {
                    j->retries++; /* the context is full: reap, then submit again */
                } else {
                    /* None of them went in: give their slots back, then drain the rest. */
                    for (unsigned i = 0; i < e->npending; i++) {
                        unsigned slot = (unsigned)e->pending[i]->aio_data;
                        j->free_slots[j->nfree++] = slot;
                        j->inflight--;
                        if (!j->err) {
                            j->err = saved;
                            j->err_index = j->slot_io[slot];
                        }
                    }
                    e->npending = 0;
                }
                rc = 0;
            }
            for (long i = 0; i < rc; i++)
                j->slot_start[e->pending[i]->aio_data] = start;
            memmove(e->pending, e->pending + rc, sizeof(struct iocb *) * (e->npending - (unsigned)rc));
            e->npending -= (unsigned)rc;
        }
        if (!e->npending && can_queue(j))
            continue; /* submit the next batch before waiting, as long as slots are free */
        unsigned submitted = j->inflight - e->npending;
        if (!submitted)
            continue;
        long most = e->reap && e->reap < submitted ? (long)e->reap : (long)submitted;
        long got = syscall(__NR_io_getevents, e->aio->ctx, 1L, most, e->events, NULL);
        int saved = errno;
        j->reap_calls++;
        if (got < 0) {
            if (saved == EINTR)
                return EINTR;
            return saved;
        }
        int64_t now = clock_ns();
        for (long i = 0; i < got; i++)
            complete(j, (unsigned)e->events[i].data, (long long)e->events[i].res, now);
        if (got > 0)
            j->looks++;
        budget -= got ? got : 1;
    }
    return 0;
}

/*
 * run_file(fd, buffer, bs, offsets, writes, qd, hist, stamp=0, batch=0, reap=0) -> dict
 * qd IOs in flight: io_submit of up to `batch` iocbs at a time (0: every free slot's) until the
 * queue is full or every IO is issued, then io_getevents(min 1, max: every IO in flight, or
 * `reap` when it is not 0: fio's iodepth_batch_complete_max, 1 by default).
 * submit_ns is the time spent inside io_submit: where the kernel does the IO synchronously
 * (buffered files), it is nearly all of the loop.
 */
static PyObject *
aio_run_file(AioObject *a, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"fd", "buffer", "bs", "offsets", "writes", "qd", "hist", "stamp", "batch", "reap", NULL};
    int fd;
    long long stamp = 0;
    unsigned qd, batch = 0, reap = 0;
    Py_ssize_t bs;
    struct job_buffers b = {0};
    if (!a->ctx) {
        PyErr_SetString(PyExc_ValueError, "the AIO context is closed");
        return NULL;
    }
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "iw*ny*y*Iw*|LII:run_file", kwlist, &fd, &b.buffer, &bs,
                                     &b.offsets, &b.writes, &qd, &b.hist, &stamp, &batch, &reap))
        return NULL;
    PyObject *result = NULL;
    struct job j;
    if (qd > a->nr) {
        PyErr_Format(PyExc_ValueError, "qd %u exceeds the AIO context (%u)", qd, a->nr);
    } else if (init_job(&j, &b, fd, bs, qd, stamp) == 0) {
        struct aio_file e = {a, batch, reap, calloc(qd, sizeof(struct iocb)), calloc(qd, sizeof(struct iocb *)), 0,
                             calloc(qd, sizeof(struct io_event))};
        if (!e.iocbs || !e.pending || !e.events) {
            PyErr_NoMemory();
        } else if (drive(&e, &j, aio_file_step) == 0) {
            result = job_result(&j, "libaio");
        }
        free(e.iocbs);
        free(e.pending);
        free(e.events);
        free_job(&j);
    }
    release_job_buffers(&b);
    return result;
}

static PyMethodDef aio_methods[] = {
    {"close", (PyCFunction)aio_close, METH_NOARGS, "close(): io_destroy."},
    {"run_file", (PyCFunction)(void (*)(void))aio_run_file, METH_VARARGS | METH_KEYWORDS,
     "run_file(fd, buffer, bs, offsets, writes, qd, hist, stamp=0, batch=0, reap=0) -> dict"},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject AioType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "iobench.loops._native.Aio",
    .tp_basicsize = sizeof(AioObject),
    .tp_dealloc = (destructor)aio_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Aio(nr): one Linux AIO context (io_setup).",
    .tp_methods = aio_methods,
    .tp_new = aio_new,
};

#endif /* IOBENCH_NO_LIBAIO */

/* ------------------------------------------------------------------ module */

/* uring_support() / libaio_support() -> "" when built in, else why not. */
static PyObject *
native_uring_support(PyObject *self, PyObject *unused)
{
#ifdef IOBENCH_NO_URING
    return PyUnicode_FromString("built without io_uring: " IOBENCH_NO_URING);
#else
    return PyUnicode_FromString("");
#endif
}

static PyObject *
native_libaio_support(PyObject *self, PyObject *unused)
{
#ifdef IOBENCH_NO_LIBAIO
    return PyUnicode_FromString("built without libaio: " IOBENCH_NO_LIBAIO);
#else
    return PyUnicode_FromString("");
#endif
}

static PyMethodDef async_functions[] = {
    {"psync_run", native_psync_run, METH_VARARGS,
     "psync_run(fd, buffer, bs, offsets, writes, hist, stamp=0) -> dict: one pread/pwrite per IO, timed."},
    {"hist_index", native_hist_index, METH_VARARGS, "hist_index(ns) -> the latency histogram's bucket."},
    {"uring_support", native_uring_support, METH_NOARGS, "'' when io_uring is built in, else why not."},
    {"libaio_support", native_libaio_support, METH_NOARGS, "'' when Linux AIO is built in, else why not."},
    {NULL, NULL, 0, NULL},
};

int
iobench_async_init(PyObject *module)
{
    if (PyModule_AddFunctions(module, async_functions) < 0)
        return -1;
    if (PyModule_AddIntConstant(module, "HIST_BUCKETS", HIST_BUCKETS) < 0 ||
        PyModule_AddIntConstant(module, "HIST_SUB_BITS", HIST_SUB_BITS) < 0)
        return -1;
#ifndef IOBENCH_NO_URING
    if (PyType_Ready(&UringType) < 0)
        return -1;
    Py_INCREF(&UringType);
    if (PyModule_AddObject(module, "Uring", (PyObject *)&UringType) < 0) {
        Py_DECREF(&UringType);
        return -1;
    }
#endif
#ifndef IOBENCH_NO_LIBAIO
    if (PyType_Ready(&AioType) < 0)
        return -1;
    Py_INCREF(&AioType);
    if (PyModule_AddObject(module, "Aio", (PyObject *)&AioType) < 0) {
        Py_DECREF(&AioType);
        return -1;
    }
#endif
    return 0;
}
