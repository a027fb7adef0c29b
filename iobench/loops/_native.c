/*
 * iobench's native inner loops: the same system calls as iobench/loops/pyloops.py, made
 * from C so the interpreter's per-call cost (~100-300 ns) leaves the measurement.
 *
 * Every loop runs with the GIL released. It takes the GIL back every CHECK_EVERY calls to
 * run Python's signal handlers (Ctrl-C must stop a 1-byte loop over 100 MB), which costs
 * nothing measurable next to thousands of syscalls. EINTR is retried after that check, as
 * CPython does (PEP 475), so both engines make exactly the same calls.
 *
 * Each function mirrors a pure-Python one; the tests run both and compare syscall counts,
 * bytes and data. Plain C on the CPython API: no toolchain beyond the compiler pip uses.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "_async.h"

#define CHECK_EVERY 16384

static inline int64_t
now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts); /* perf_counter_ns's clock on Linux */
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* After a batch: run signal handlers; -1 (exception set) if one raised. */
static int
check_signals(void)
{
    return PyErr_CheckSignals();
}

static PyObject *
raise_errno(int saved_errno)
{
    errno = saved_errno;
    return PyErr_SetFromErrno(PyExc_OSError);
}

/* read(fd, buffer, len) until EOF. Returns (bytes, calls incl. the one that returns 0). */
static PyObject *
native_read_all(PyObject *self, PyObject *args)
{
    int fd;
    Py_buffer buffer;
    if (!PyArg_ParseTuple(args, "iw*:read_all", &fd, &buffer))
        return NULL;
    long long total = 0, calls = 0;
    int err = 0, eof = 0;
    while (!eof && !err) {
        Py_BEGIN_ALLOW_THREADS
        for (int i = 0; i < CHECK_EVERY; i++) {
            ssize_t got = read(fd, buffer.buf, (size_t)buffer.len);
            calls++;
            if (got < 0) {
                err = errno;
                break;
            }
            if (got == 0) {
                eof = 1;
                break;
            }
            total += got;
        }
        Py_END_ALLOW_THREADS
        if (check_signals() < 0) {
            PyBuffer_Release(&buffer);
            return NULL;
        }
        if (err == EINTR)
            err = 0;
    }
    PyBuffer_Release(&buffer);
    if (err)
        return raise_errno(err);
    return Py_BuildValue("(LL)", total, calls);
}

/* Write all of data[0:len] with write(); adds the calls made. 0 or an errno. */
static int
write_fully(int fd, const char *data, size_t len, long long *calls)
{
    while (len) {
        ssize_t written = write(fd, data, len);
        (*calls)++;
        if (written < 0) {
            if (errno == EINTR)
                continue;
            return errno;
        }
        data += written;
        len -= (size_t)written;
    }
    return 0;
}

/* size bytes as whole len(buffer) writes plus one tail write. Returns (bytes, calls). */
static PyObject *
native_write_all(PyObject *self, PyObject *args)
{
    int fd;
    Py_buffer buffer;
    long long size;
    if (!PyArg_ParseTuple(args, "iy*L:write_all", &fd, &buffer, &size))
        return NULL;
    if (buffer.len == 0 || size < 0) {
        PyBuffer_Release(&buffer);
        PyErr_SetString(PyExc_ValueError, "write_all needs a non-empty buffer and size >= 0");
        return NULL;
    }
    long long block = buffer.len, remaining = size, calls = 0;
    int err = 0;
    while (remaining && !err) {
        Py_BEGIN_ALLOW_THREADS
        for (int i = 0; i < CHECK_EVERY && remaining; i++) {
            size_t chunk = (size_t)(remaining < block ? remaining : block);
            err = write_fully(fd, buffer.buf, chunk, &calls);
            if (err)
                break;
            remaining -= (long long)chunk;
        }
        Py_END_ALLOW_THREADS
        if (check_signals() < 0) {
            PyBuffer_Release(&buffer);
            return NULL;
        }
    }
    PyBuffer_Release(&buffer);
    if (err)
        return raise_errno(err);
    return Py_BuildValue("(LL)", size, calls);
}

/* TLPI's copy.c: read into buffer, write what was read, until EOF. (bytes, reads, writes). */
static PyObject *
native_copy_all(PyObject *self, PyObject *args)
{
    int src, dst;
    Py_buffer buffer;
    if (!PyArg_ParseTuple(args, "iiw*:copy_all", &src, &dst, &buffer))
        return NULL;
    long long total = 0, reads = 0, writes = 0;
    int err = 0, eof = 0;
    while (!eof && !err) {
        Py_BEGIN_ALLOW_THREADS
        for (int i = 0; i < CHECK_EVERY; i++) {
            ssize_t got = read(src, buffer.buf, (size_t)buffer.len);
            reads++;
            if (got < 0) {
                err = errno;
                break;
            }
            if (got == 0) {
                eof = 1;
                break;
            }
            err = write_fully(dst, buffer.buf, (size_t)got, &writes);
            if (err)
                break;
            total += got;
        }
        Py_END_ALLOW_THREADS
        if (check_signals() < 0) {
            PyBuffer_Release(&buffer);
            return NULL;
        }
        if (err == EINTR)
            err = 0;
    }
    PyBuffer_Release(&buffer);
    if (err)
        return raise_errno(err);
    return Py_BuildValue("(LLL)", total, reads, writes);
}

/* One pread or pwrite of len(buffer) at each int64 offset. Returns (bytes, calls). */
static PyObject *
positioned(PyObject *args, int writing)
{
    int fd;
    Py_buffer buffer, offsets;
    if (!PyArg_ParseTuple(args, writing ? "iy*y*:pwrite_at" : "iw*y*:pread_at", &fd, &buffer, &offsets))
        return NULL;
    if (offsets.len % (Py_ssize_t)sizeof(int64_t)) {
        PyBuffer_Release(&buffer);
        PyBuffer_Release(&offsets);
        PyErr_SetString(PyExc_ValueError, "offsets must be an array of int64 ('q')");
        return NULL;
    }
    const int64_t *at = offsets.buf;
    Py_ssize_t count = offsets.len / (Py_ssize_t)sizeof(int64_t), index = 0;
    long long total = 0, calls = 0;
    int err = 0;
    while (index < count && !err) {
        Py_BEGIN_ALLOW_THREADS
        for (int i = 0; i < CHECK_EVERY && index < count; i++) {
            ssize_t moved = writing ? pwrite(fd, buffer.buf, (size_t)buffer.len, at[index])
                                    : pread(fd, buffer.buf, (size_t)buffer.len, at[index]);
            calls++;
            if (moved < 0) {
                err = errno;
                break;
            }
            total += moved;
            index++;
        }
        Py_END_ALLOW_THREADS
        if (check_signals() < 0) {
            PyBuffer_Release(&buffer);
            PyBuffer_Release(&offsets);
            return NULL;
        }
        if (err == EINTR)
            err = 0;
    }
    PyBuffer_Release(&buffer);
    PyBuffer_Release(&offsets);
    if (err)
        return raise_errno(err);
    return Py_BuildValue("(LL)", total, calls);
}

static PyObject *
native_pread_at(PyObject *self, PyObject *args)
{
    return positioned(args, 0);
}

static PyObject *
native_pwrite_at(PyObject *self, PyObject *args)
{
    return positioned(args, 1);
}

/*
 * write_sync(fd, buffer, size, sync, every, latencies): size bytes in len(buffer) writes;
 * sync = 0 none, 1 fsync, 2 fdatasync after every `every`-th write. The time of each write
 * (with its sync) goes into latencies[i] (int64 ns), which must hold one slot per write.
 * Returns (bytes, writes, syncs). A short write is an error here, as in the Python loop.
 */
static PyObject *
native_write_sync(PyObject *self, PyObject *args)
{
    int fd, sync_kind;
    Py_buffer buffer, latencies;
    long long size, every;
    if (!PyArg_ParseTuple(args, "iy*LiLw*:write_sync", &fd, &buffer, &size, &sync_kind, &every,
                          &latencies))
        return NULL;
    long long block = buffer.len;
    long long writes_needed = block ? (size + block - 1) / block : 0;
    if (block == 0 || every < 1 || sync_kind < 0 || sync_kind > 2 ||
        latencies.len < writes_needed * (Py_ssize_t)sizeof(int64_t)) {
        PyBuffer_Release(&buffer);
        PyBuffer_Release(&latencies);
        PyErr_SetString(PyExc_ValueError, "write_sync: bad block, sync kind, every, or latency slots");
        return NULL;
    }
    int64_t *lat = latencies.buf;
    long long remaining = size, index = 0, syncs = 0;
    int err = 0, short_write = 0;
    while (remaining && !err && !short_write) {
        Py_BEGIN_ALLOW_THREADS
        for (int i = 0; i < CHECK_EVERY && remaining; i++) {
            size_t chunk = (size_t)(remaining < block ? remaining : block);
            int64_t start = now_ns();
            ssize_t written = write(fd, buffer.buf, chunk);
            if (written < 0) {
                err = errno;
                break;
            }
            if (sync_kind && (index + 1) % every == 0) {
                if ((sync_kind == 1 ? fsync(fd) : fdatasync(fd)) < 0) {
                    err = errno;
                    break;
                }
                syncs++;
            }
            lat[index] = now_ns() - start;
            index++;
            if ((size_t)written != chunk) {
                short_write = 1;
                break;
            }
            remaining -= written;
        }
        Py_END_ALLOW_THREADS
        if (check_signals() < 0) {
            PyBuffer_Release(&buffer);
            PyBuffer_Release(&latencies);
            return NULL;
        }
    }
    PyBuffer_Release(&buffer);
    PyBuffer_Release(&latencies);
    if (err)
        return raise_errno(err);
    if (short_write) {
        PyErr_SetString(PyExc_OSError, "short write");
        return NULL;
    }
    return Py_BuildValue("(LLL)", size, index, syncs);
}

/*
 * Touch one byte per page of a mapping (read, or write 1). Returns the sum of the bytes read
 * (the pages count when writing), so the compiler cannot drop the reads.
 */
static PyObject *
native_touch_pages(PyObject *self, PyObject *args)
{
    Py_buffer mapping;
    Py_ssize_t pages, page_size;
    int writing;
    if (!PyArg_ParseTuple(args, "w*nnp:touch_pages", &mapping, &pages, &page_size, &writing)) {
        /* A read-only mapping cannot be exported writable: take it read-only for reads. */
        PyErr_Clear();
        if (!PyArg_ParseTuple(args, "y*nnp:touch_pages", &mapping, &pages, &page_size, &writing))
            return NULL;
        if (writing) {
            PyBuffer_Release(&mapping);
            PyErr_SetString(PyExc_TypeError, "touch_pages: cannot write a read-only mapping");
            return NULL;
        }
    }
    if (page_size <= 0 || pages < 0 || (pages && (pages - 1) * page_size >= mapping.len)) {
        PyBuffer_Release(&mapping);
        PyErr_SetString(PyExc_ValueError, "touch_pages: pages reach beyond the mapping");
        return NULL;
    }
    volatile unsigned char *base = mapping.buf;
    unsigned long long sum = 0;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t page = 0; page < pages; page++) {
        if (writing)
            base[page * page_size] = 1;
        else
            sum += base[page * page_size];
    }
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&mapping);
    return PyLong_FromUnsignedLongLong(writing ? (unsigned long long)pages : sum);
}

/* Copy a whole source (a mapping) out through buffer, len(buffer) bytes at a time. */
static PyObject *
native_copy_out(PyObject *self, PyObject *args)
{
    Py_buffer source, buffer;
    if (!PyArg_ParseTuple(args, "y*w*:copy_out", &source, &buffer))
        return NULL;
    if (buffer.len == 0) {
        PyBuffer_Release(&source);
        PyBuffer_Release(&buffer);
        PyErr_SetString(PyExc_ValueError, "copy_out needs a non-empty buffer");
        return NULL;
    }
    const char *from = source.buf;
    Py_ssize_t size = source.len, block = buffer.len;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t offset = 0; offset < size; offset += block) {
        Py_ssize_t chunk = size - offset < block ? size - offset : block;
        memcpy(buffer.buf, from + offset, (size_t)chunk);
    }
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&source);
    PyBuffer_Release(&buffer);
    return PyLong_FromSsize_t(size);
}

/*
 * count null calls of one kind: "getppid" (syscall(2) directly: nothing cached in libc),
 * "read0" (read(fd, buf, 0): a syscall the kernel counts as a read), "vdso-clock"
 * (clock_gettime, answered in user space by the vDSO). Returns count.
 */
static PyObject *
native_null_calls(PyObject *self, PyObject *args)
{
    const char *kind;
    long long count;
    int fd = -1;
    if (!PyArg_ParseTuple(args, "sL|i:null_calls", &kind, &count, &fd))
        return NULL;
    int which = strcmp(kind, "getppid") == 0 ? 0 : strcmp(kind, "read0") == 0 ? 1
              : strcmp(kind, "vdso-clock") == 0 ? 2 : -1;
    if (which < 0 || count < 0 || (which == 1 && fd < 0)) {
        PyErr_Format(PyExc_ValueError, "null_calls: unknown kind %s or bad count/fd", kind);
        return NULL;
    }
    char byte;
    long long done = 0;
    int err = 0;
    while (done < count && !err) {
        Py_BEGIN_ALLOW_THREADS
        for (int i = 0; i < CHECK_EVERY && done < count; i++, done++) {
            if (which == 0) {
                syscall(SYS_getppid);
            } else if (which == 1) {
                if (read(fd, &byte, 0) < 0) {
                    err = errno;
                    break;
                }
            } else {
                struct timespec ts;
                clock_gettime(CLOCK_MONOTONIC, &ts);
            }
        }
        Py_END_ALLOW_THREADS
        if (check_signals() < 0)
            return NULL;
        if (err == EINTR)
            err = 0;
    }
    if (err)
        return raise_errno(err);
    return PyLong_FromLongLong(done);
}

/*
 * thread_counters(io_fd): what a CounterProbe snapshot of one thread holds, read with no
 * interpreter work between the calls: getrusage(RUSAGE_THREAD) and /proc/thread-self/io (io_fd,
 * one pread). A snapshot is taken twice per repetition, between repetitions, where time costs
 * the next warm pass (benchmarks/fidelity/README.md): ~3 us here against ~10 us in Python.
 * Returns (user_ns, sys_ns, minflt, majflt, nvcsw, nivcsw, syscr, syscw, rchar, wchar,
 * read_bytes, write_bytes): the order of CounterProbe's Snapshot after its two clocks.
 */
static PyObject *
native_thread_counters(PyObject *self, PyObject *args)
{
    static const char *const names[] = {"rchar:", "wchar:", "syscr:", "syscw:", "read_bytes:", "write_bytes:"};
    int fd;
    if (!PyArg_ParseTuple(args, "i:thread_counters", &fd))
        return NULL;
    struct rusage usage;
    if (getrusage(RUSAGE_THREAD, &usage) < 0)
        return raise_errno(errno);
    char text[512];
    ssize_t got = pread(fd, text, sizeof text - 1, 0);
    if (got < 0)
        return raise_errno(errno);
    text[got] = '\0';
    unsigned long long values[6];
    const char *at = text;
    for (int i = 0; i < 6; i++) {
        size_t length = strlen(names[i]);
        while (*at == ' ' || *at == '\n')
            at++;
        char *end;
        if (strncmp(at, names[i], length) != 0
            || (values[i] = strtoull(at + length, &end, 10), end == at + length)) {
            PyErr_Format(PyExc_ValueError, "thread_counters: unexpected io text at %.40s", at);
            return NULL;
        }
        at = end;
    }
    return Py_BuildValue(
        "(LLllllKKKKKK)",
        (long long)usage.ru_utime.tv_sec * 1000000000LL + (long long)usage.ru_utime.tv_usec * 1000,
        (long long)usage.ru_stime.tv_sec * 1000000000LL + (long long)usage.ru_stime.tv_usec * 1000,
        usage.ru_minflt, usage.ru_majflt, usage.ru_nvcsw, usage.ru_nivcsw,
        values[2], values[3], values[0], values[1], values[4], values[5]);
}

static PyMethodDef native_methods[] = {
    {"read_all", native_read_all, METH_VARARGS,
     "read_all(fd, buffer) -> (bytes, calls): read() into buffer until EOF."},
    {"write_all", native_write_all, METH_VARARGS,
     "write_all(fd, buffer, size) -> (bytes, calls): size bytes in len(buffer) writes."},
    {"copy_all", native_copy_all, METH_VARARGS,
     "copy_all(src, dst, buffer) -> (bytes, reads, writes): TLPI's copy loop."},
    {"pread_at", native_pread_at, METH_VARARGS,
     "pread_at(fd, buffer, offsets) -> (bytes, calls): one pread per int64 offset."},
    {"pwrite_at", native_pwrite_at, METH_VARARGS,
     "pwrite_at(fd, buffer, offsets) -> (bytes, calls): one pwrite per int64 offset."},
    {"write_sync", native_write_sync, METH_VARARGS,
     "write_sync(fd, buffer, size, sync, every, latencies) -> (bytes, writes, syncs)."},
    {"touch_pages", native_touch_pages, METH_VARARGS,
     "touch_pages(mapping, pages, page_size, write) -> checksum: one byte per page."},
    {"copy_out", native_copy_out, METH_VARARGS,
     "copy_out(source, buffer) -> bytes: copy source out len(buffer) bytes at a time."},
    {"null_calls", native_null_calls, METH_VARARGS,
     "null_calls(kind, count, fd=-1) -> count: getppid, read0 or vdso-clock calls."},
    {"thread_counters", native_thread_counters, METH_VARARGS,
     "thread_counters(io_fd) -> (user_ns, sys_ns, minflt, majflt, nvcsw, nivcsw, syscr, syscw, "
     "rchar, wchar, read_bytes, write_bytes): RUSAGE_THREAD and /proc/thread-self/io."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef native_module = {
    PyModuleDef_HEAD_INIT, "iobench.loops._native",
    "iobench's inner loops in C (GIL released); same syscalls as iobench.loops.pyloops.", -1,
    native_methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC
PyInit__native(void)
{
    PyObject *module = PyModule_Create(&native_module);
    if (module && iobench_async_init(module) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
