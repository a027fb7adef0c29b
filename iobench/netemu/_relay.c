/*
 * The packet-level delay line between two TUN devices (iobench/netemu/relay.py forks the
 * process that runs it; docs/NETEMU.md says why a relay and not a proxy).
 *
 * run(fd_a, fd_b, control_fd, delay_ns, rate_bps, loss, seed, limit) moves every IP packet
 * read from one TUN descriptor to the other, in both directions, each packet released
 * delay_ns after it arrived (plus its serialisation time at rate_bps, when a rate is set).
 * Per direction: a FIFO of at most `limit` packets (drop-tail: a packet that finds it full is
 * dropped), random loss with probability `loss` from a seeded xorshift64* generator, and the
 * counters returned when control_fd becomes readable (a byte or end of file: the parent died).
 *
 * Timing: CLOCK_MONOTONIC, ppoll(2) with nanosecond timeouts, the thread's timer slack set to
 * 1 ns (the default 50 us would be added to every wake-up). Release times in one direction
 * never decrease (a constant delay after monotonic departures), so a FIFO is a timer queue.
 * The whole loop runs with the GIL released.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

/* Largest packet kept: the TUN devices have MTU 1500 and no offloads, so no packet is longer. */
#define SLOT_BYTES 2048
/* Packets read from one descriptor per wake-up before the other side gets its turn. */
#define READ_BATCH 64

typedef struct {
    int64_t release_ns;
    uint32_t len;
    unsigned char data[SLOT_BYTES];
} slot_t;

typedef struct {
    int in_fd, out_fd;
    slot_t *ring;
    uint32_t head, count;
    int64_t wire_free_ns; /* when the emulated wire finishes the last packet (rate pacing) */
    /* counters */
    long long relayed, bytes, dropped_loss, dropped_queue, write_errors, truncated, peak_queue;
    long long late_sum_ns, late_max_ns;
} direction_t;

static inline int64_t
now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static uint64_t rng_state;

/* xorshift64*: a uniform double in [0, 1). */
static inline double
uniform(void)
{
    uint64_t x = rng_state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    rng_state = x;
    return (double)((x * 2685821657736338717ULL) >> 11) / 9007199254740992.0;
}

typedef struct {
    int64_t delay_ns;
    long long rate_bps;
    double loss;
    uint32_t limit;
} params_t;

/* Read what is waiting on d->in_fd (at most READ_BATCH packets) and queue or drop each. */
static int
take_in(direction_t *d, const params_t *p)
{
    static unsigned char spill[SLOT_BYTES];
    for (int i = 0; i < READ_BATCH; i++) {
        int full = d->count >= p->limit;
        slot_t *slot = full ? NULL : &d->ring[(d->head + d->count) % p->limit];
        unsigned char *into = full ? spill : slot->data;
        ssize_t got = read(d->in_fd, into, SLOT_BYTES);
        if (got < 0) {
            if (errno == EAGAIN || errno == EINTR)
                return 0;
            return -1;
        }
        if (got == 0)
            return 0;
        if (got >= SLOT_BYTES)
            d->truncated++;
        if (full) {
            d->dropped_queue++;
            continue;
        }
        if (p->loss > 0.0 && uniform() < p->loss) {
            d->dropped_loss++;
            continue;
        }
        int64_t arrived = now_ns();
        int64_t departs = arrived;
        if (p->rate_bps > 0) {
            int64_t start = d->wire_free_ns > arrived ? d->wire_free_ns : arrived;
            departs = start + (int64_t)((double)got * 8.0 * 1e9 / (double)p->rate_bps);
            d->wire_free_ns = departs;
        }
        slot->release_ns = departs + p->delay_ns;
        slot->len = (uint32_t)got;
        d->count++;
        if ((long long)d->count > d->peak_queue)
            d->peak_queue = d->count;
    }
    return 0;
}

/* Write every packet whose release time has come. */
static void
release_due(direction_t *d, const params_t *p, int64_t now)
{
    while (d->count) {
        slot_t *slot = &d->ring[d->head];
        if (slot->release_ns > now)
            return;
        ssize_t put = write(d->out_fd, slot->data, slot->len);
        if (put == (ssize_t)slot->len) {
            d->relayed++;
            d->bytes += put;
            int64_t late = now - slot->release_ns;
            d->late_sum_ns += late;
            if (late > d->late_max_ns)
                d->late_max_ns = late;
        } else {
            d->write_errors++;
        }
        d->head = (d->head + 1) % p->limit;
        d->count--;
        now = now_ns();
    }
}

static PyObject *
counters(const direction_t *d)
{
    return Py_BuildValue(
        "{s:L,s:L,s:L,s:L,s:L,s:L,s:L,s:L,s:L}", "relayed", d->relayed, "bytes", d->bytes,
        "dropped_loss", d->dropped_loss, "dropped_queue", d->dropped_queue, "write_errors",
        d->write_errors, "truncated", d->truncated, "peak_queue", d->peak_queue, "late_mean_ns",
        d->relayed ? d->late_sum_ns / d->relayed : 0LL, "late_max_ns", d->late_max_ns);
}

static PyObject *
relay_run(PyObject *self, PyObject *args)
{
    int fd_a, fd_b, control_fd;
    long long delay_ns, rate_bps;
    double loss;
    unsigned long long seed;
    unsigned int limit;
    if (!PyArg_ParseTuple(args, "iiiLLdKI:run", &fd_a, &fd_b, &control_fd, &delay_ns, &rate_bps,
                          &loss, &seed, &limit))
        return NULL;
    if (limit == 0 || delay_ns < 0 || rate_bps < 0 || loss < 0.0 || loss > 1.0) {
        PyErr_SetString(PyExc_ValueError, "limit must be > 0; delay, rate, loss in range");
        return NULL;
    }
    params_t p = {delay_ns, rate_bps, loss, limit};
    direction_t dirs[2];
    memset(dirs, 0, sizeof dirs);
    dirs[0].in_fd = fd_a;
    dirs[0].out_fd = fd_b;
    dirs[1].in_fd = fd_b;
    dirs[1].out_fd = fd_a;
    for (int i = 0; i < 2; i++) {
        /* calloc: the pages are touched only as the queue reaches them */
        dirs[i].ring = calloc(limit, sizeof(slot_t));
        if (dirs[i].ring == NULL) {
            free(dirs[0].ring);
            return PyErr_NoMemory();
        }
        int flags = fcntl(dirs[i].in_fd, F_GETFL);
        if (flags < 0 || fcntl(dirs[i].in_fd, F_SETFL, flags | O_NONBLOCK) < 0) {
            free(dirs[0].ring);
            free(dirs[1].ring);
            return PyErr_SetFromErrno(PyExc_OSError);
        }
    }
    rng_state = seed ? seed : 0x9E3779B97F4A7C15ULL;
    int err = 0;
    Py_BEGIN_ALLOW_THREADS
    /* The default slack (50 us) would be added to every timed wake-up. */
    prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);
    struct pollfd fds[3] = {
        {.fd = fd_a, .events = POLLIN},
        {.fd = fd_b, .events = POLLIN},
        {.fd = control_fd, .events = POLLIN},
    };
    for (;;) {
        int64_t now = now_ns();
        release_due(&dirs[0], &p, now);
        release_due(&dirs[1], &p, now);
        int64_t next = INT64_MAX;
        for (int i = 0; i < 2; i++)
            if (dirs[i].count && dirs[i].ring[dirs[i].head].release_ns < next)
                next = dirs[i].ring[dirs[i].head].release_ns;
        struct timespec timeout, *wait = NULL;
        if (next != INT64_MAX) {
            int64_t left = next - now_ns();
            if (left < 0)
                left = 0;
            timeout.tv_sec = left / 1000000000LL;
            timeout.tv_nsec = left % 1000000000LL;
            wait = &timeout;
        }
        int ready = ppoll(fds, 3, wait, NULL);
        if (ready < 0) {
            if (errno == EINTR)
                continue;
            err = errno;
            break;
        }
        if (fds[2].revents)
            break; /* asked to stop, or the parent is gone */
        if ((fds[0].revents | fds[1].revents) & (POLLERR | POLLHUP | POLLNVAL)) {
            err = EIO;
            break;
        }
        for (int i = 0; i < 2; i++)
            if (fds[i].revents & POLLIN && take_in(&dirs[i], &p) < 0) {
                err = errno;
                break;
            }
        if (err)
            break;
    }
    Py_END_ALLOW_THREADS
    free(dirs[0].ring);
    free(dirs[1].ring);
    if (err) {
        errno = err;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    return Py_BuildValue("{s:N,s:N}", "a_to_b", counters(&dirs[0]), "b_to_a", counters(&dirs[1]));
}

static PyMethodDef relay_methods[] = {
    {"run", relay_run, METH_VARARGS,
     "run(fd_a, fd_b, control_fd, delay_ns, rate_bps, loss, seed, limit) -> counters per direction"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef relay_module = {
    PyModuleDef_HEAD_INIT, "_relay", "The TUN-to-TUN delay line of iobench.netemu.", -1,
    relay_methods,
};

PyMODINIT_FUNC
PyInit__relay(void)
{
    PyObject *module = PyModule_Create(&relay_module);
    if (module != NULL && PyModule_AddIntConstant(module, "SLOT_BYTES", SLOT_BYTES) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
