/*
 * io_uring on sockets (included by _async.c inside its io_uring section): the strategies the
 * socket experiments add.
 *
 *  - A provided-buffer ring and multishot receives (zero-byte-recv, uring-bufring): one armed
 *    IORING_OP_RECV per connection, the kernel picking one of K buffers only when data
 *    arrives; when the ring runs dry the receive ends with ENOBUFS and is armed again.
 *  - Sends in flight on one socket, linked with IOSQE_IO_LINK or not (async-send).
 *  - IORING_OP_SEND_ZC with its notification CQEs (msg-zerocopy, uring-send-zc).
 *
 * Each loop runs with the GIL released and counts what it did; per-message latencies go into
 * the caller's int64 array.
 */

#ifndef IORING_RECV_MULTISHOT
#define IORING_RECV_MULTISHOT (1U << 1)
#endif
#ifndef IORING_SEND_ZC_REPORT_USAGE
#define IORING_SEND_ZC_REPORT_USAGE (1U << 3)
#endif
#ifndef IORING_NOTIF_USAGE_ZC_COPIED
#define IORING_NOTIF_USAGE_ZC_COPIED (1U << 31)
#endif
#ifndef IORING_CQE_F_NOTIF
#define IORING_CQE_F_NOTIF (1U << 3)
#endif

#define NET_WAIT_MS 30000 /* a socket loop gives up after this long without a completion */

/* Wait for at least `want` completions (submitting `to_submit`), at most NET_WAIT_MS:
 * 0, or an errno (ETIME: nothing came). */
static int
net_enter(UringObject *r, unsigned to_submit, unsigned want, long long *enters)
{
    struct __kernel_timespec ts = {NET_WAIT_MS / 1000, 0};
    struct io_uring_getevents_arg arg;
    memset(&arg, 0, sizeof(arg)); /* no signal mask; the field after it is min_wait_usec on 6.12+ */
    arg.ts = (uint64_t)(uintptr_t)&ts;
    unsigned flags = IORING_ENTER_GETEVENTS;
    void *argp = NULL;
    size_t argsz = 0;
    if (want && (r->features & IORING_FEAT_EXT_ARG)) {
        flags |= IORING_ENTER_EXT_ARG;
        argp = &arg;
        argsz = sizeof(arg);
    }
    int rc = (int)syscall(__NR_io_uring_enter, r->fd, to_submit, want, flags, argp, argsz);
    (*enters)++;
    if (rc >= 0) {
        r->sq_submitted = LOAD_ACQ(r->sq_head);
        return 0;
    }
    r->sq_submitted = LOAD_ACQ(r->sq_head);
    return errno;
}

/* Submit what is queued and wait for one completion: 0 to go on (also when the wait was cut
 * short by EINTR, EAGAIN or EBUSY: the loop looks at the CQ and comes back), or the errno that
 * ends the loop (ETIMEDOUT when nothing came for NET_WAIT_MS). */
static int
net_wait_one(UringObject *r, long long *enters)
{
    int rc = net_enter(r, r->sq_local_tail - r->sq_submitted, 1, enters);
    if (rc == ETIME)
        return ETIMEDOUT;
    if (rc == EINTR || rc == EAGAIN || rc == EBUSY)
        return 0;
    return rc;
}

/* ------------------------------------------------------------------ provided-buffer ring */

/* setup_buf_ring(buffer, count, size): register `count` buffers of `size` bytes (inside
 * `buffer`) as provided-buffer group 0; count a power of two. */
static PyObject *
uring_setup_buf_ring(UringObject *r, PyObject *args)
{
    Py_buffer buffer;
    unsigned count, size;
    if (!uring_open(r) || !PyArg_ParseTuple(args, "w*II:setup_buf_ring", &buffer, &count, &size))
        return NULL;
    if (r->br || !count || (count & (count - 1)) || count > 32768 || !size ||
        (Py_ssize_t)count * size > buffer.len) {
        PyBuffer_Release(&buffer);
        PyErr_SetString(PyExc_ValueError,
                        "setup_buf_ring: one ring, count a power of two <= 32768, count x size within buffer");
        return NULL;
    }
    size_t len = (count * sizeof(struct io_uring_buf) + 4095) & ~(size_t)4095;
    void *ring = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (ring == MAP_FAILED) {
        int err = errno;
        PyBuffer_Release(&buffer);
        return oserror_with(err, "mmap of the provided-buffer ring");
    }
    struct io_uring_buf_reg reg;
    memset(&reg, 0, sizeof(reg));
    reg.ring_addr = (uint64_t)(uintptr_t)ring;
    reg.ring_entries = count;
    reg.bgid = 0;
    if (sys_io_uring_register(r->fd, IORING_REGISTER_PBUF_RING, &reg, 1) < 0) {
        int err = errno;
        munmap(ring, len);
        PyBuffer_Release(&buffer);
        return oserror_with(err, "io_uring_register(IORING_REGISTER_PBUF_RING)");
    }
    r->br = ring;
    r->br_len = len;
    r->br_entries = count;
    r->br_registered = 1;
    r->br_size = size;
    r->br_buffer = buffer;
    for (unsigned i = 0; i < count; i++) {
        struct io_uring_buf *b = &r->br->bufs[i];
        b->addr = (uint64_t)(uintptr_t)((char *)buffer.buf + (size_t)i * size);
        b->len = size;
        b->bid = (unsigned short)i;
    }
    r->br_tail = (unsigned short)count;
    STORE_REL(&r->br->tail, r->br_tail);
    Py_RETURN_NONE;
}

/* Give buffer `bid` back to the ring (published by br_publish). */
static inline void
br_recycle(UringObject *r, unsigned bid)
{
    struct io_uring_buf *b = &r->br->bufs[r->br_tail & (r->br_entries - 1)];
    b->addr = (uint64_t)(uintptr_t)((char *)r->br_buffer.buf + (size_t)bid * r->br_size);
    b->len = r->br_size;
    b->bid = (unsigned short)bid;
    r->br_tail++;
}

static inline void
br_publish(UringObject *r)
{
    STORE_REL(&r->br->tail, r->br_tail);
}

/* Queue a multishot receive on connection `index` (fd) from buffer group 0. 0 or ENOSPC. */
static int
arm_recv(UringObject *r, int fd, unsigned index)
{
    struct io_uring_sqe *sqe = next_sqe(r);
    if (!sqe)
        return ENOSPC;
    sqe->opcode = IORING_OP_RECV;
    sqe->fd = fd;
    sqe->ioprio = IORING_RECV_MULTISHOT;
    sqe->flags = IOSQE_BUFFER_SELECT;
    sqe->buf_group = 0;
    sqe->len = 0;
    sqe->user_data = index;
    return 0;
}

/* Per-connection reassembly: bytes into the current message and its 8-byte send stamp. */
struct conn_state {
    unsigned have;
    unsigned char stamp[8];
};

struct recv_run {
    int *fds;
    unsigned n;
    struct conn_state *conns;
    unsigned char *armed;
    long long messages, msg_size, burst, done;
    int go_fd;
    int64_t *lat;
    long long cqes, data_cqes, enobufs, rearms, enters, eof, acks;
    int err;
};

static void
consume(struct recv_run *run, unsigned index, const unsigned char *data, long long len, int64_t now)
{
    struct conn_state *c = &run->conns[index];
    while (len > 0) {
        long long take = run->msg_size - c->have;
        if (take > len)
            take = len;
        if (c->have < 8) {
            long long part = 8 - c->have < take ? 8 - c->have : take;
            memcpy(c->stamp + c->have, data, (size_t)part);
        }
        c->have += (unsigned)take;
        data += take;
        len -= take;
        if (c->have == run->msg_size) {
            int64_t sent;
            memcpy(&sent, c->stamp, sizeof(sent));
            if (run->done < run->messages)
                run->lat[run->done] = now - sent;
            run->done++;
            c->have = 0;
            if (run->done % run->burst == 0 || run->done == run->messages) {
                /* the sender's go-ahead for its next burst, as the Python strategies give it */
                ssize_t w;
                do
                    w = write(run->go_fd, "a", 1);
                while (w < 0 && errno == EINTR);
                run->acks++;
            }
        }
    }
}

static void
recv_loop(UringObject *r, struct recv_run *run)
{
    unsigned mask = *r->cq_mask;
    while (run->done < run->messages && !run->err) {
        unsigned head = *r->cq_head, tail = LOAD_ACQ(r->cq_tail);
        if (head == tail) {
            run->err = net_wait_one(r, &run->enters);
            continue;
        }
        int64_t now = clock_ns();
        int recycled = 0;
        for (; head != tail; head++) {
            struct io_uring_cqe *cqe = &r->cqes[head & mask];
            unsigned index = (unsigned)cqe->user_data;
            run->cqes++;
            if (index >= run->n)
                continue;
            if (cqe->res > 0 && (cqe->flags & IORING_CQE_F_BUFFER)) {
                unsigned bid = cqe->flags >> IORING_CQE_BUFFER_SHIFT;
                const unsigned char *data = (const unsigned char *)r->br_buffer.buf + (size_t)bid * r->br_size;
                consume(run, index, data, cqe->res, now);
                br_recycle(r, bid);
                recycled = 1;
                run->data_cqes++;
            } else if (cqe->res == -ENOBUFS) {
                run->enobufs++; /* the ring ran dry: this receive ended, its data waits in the socket */
            } else if (cqe->res == 0) {
                run->eof++;
                run->err = ECONNRESET;
            } else if (cqe->res < 0) {
                run->err = -cqe->res;
            }
            if (!(cqe->flags & IORING_CQE_F_MORE))
                run->armed[index] = 0;
        }
        STORE_REL(r->cq_head, head);
        if (recycled)
            br_publish(r);
        /* Receives that ended (ENOBUFS) are armed again, now that buffers are back. */
        for (unsigned i = 0; i < run->n && !run->err; i++) {
            if (run->armed[i])
                continue;
            if (arm_recv(r, run->fds[i], i) == ENOSPC) {
                publish(r);
                net_enter(r, r->sq_local_tail - r->sq_submitted, 0, &run->enters);
                if (arm_recv(r, run->fds[i], i))
                    break;
            }
            run->armed[i] = 1;
            run->rearms++;
        }
        publish(r);
    }
}

/*
 * recv_bufring(fds, messages, msg_size, burst, go_fd, latencies, arm_only=False) -> dict
 * The connections' multishot receives are armed on the first call (arm_only: just that, and
 * submitted). Then, until `messages` messages of msg_size bytes have arrived: reap the CQEs,
 * reassemble each connection's messages from the buffers the kernel picked, give every buffer
 * back at once, write 'a' to go_fd after every `burst` messages, and arm again every receive
 * that ended. latencies[i] = arrival - the stamp in the message's first 8 bytes.
 */
static PyObject *
uring_recv_bufring(UringObject *r, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"fds", "messages", "msg_size", "burst", "go_fd", "latencies", "arm_only", NULL};
    PyObject *list;
    long long messages, msg_size, burst;
    int go_fd, arm_only = 0;
    Py_buffer lat;
    if (!uring_open(r) || !PyArg_ParseTupleAndKeywords(args, kwds, "O!LLLiw*|p:recv_bufring", kwlist,
                                                       &PyList_Type, &list, &messages, &msg_size, &burst,
                                                       &go_fd, &lat, &arm_only))
        return NULL;
    Py_ssize_t n = PyList_GET_SIZE(list);
    if (!r->br || n < 1 || msg_size < 8 || burst < 1 || messages < 0 ||
        lat.len < messages * (Py_ssize_t)sizeof(int64_t)) {
        PyBuffer_Release(&lat);
        PyErr_SetString(PyExc_ValueError,
                        "recv_bufring: a buffer ring, connections, msg_size >= 8, burst >= 1, a latency slot per message");
        return NULL;
    }
    if (!r->net_fds || r->net_n != (unsigned)n) {
        free(r->net_fds);
        free(r->net_conns);
        free(r->net_armed);
        r->net_fds = calloc((size_t)n, sizeof(int));
        r->net_conns = calloc((size_t)n, sizeof(struct conn_state));
        r->net_armed = calloc((size_t)n, 1);
        r->net_n = (unsigned)n;
        if (!r->net_fds || !r->net_conns || !r->net_armed) {
            PyBuffer_Release(&lat);
            return PyErr_NoMemory();
        }
        for (Py_ssize_t i = 0; i < n; i++) {
            r->net_fds[i] = (int)PyLong_AsLong(PyList_GET_ITEM(list, i));
            if (r->net_fds[i] == -1 && PyErr_Occurred()) {
                PyBuffer_Release(&lat);
                return NULL;
            }
        }
    }
    struct recv_run run;
    memset(&run, 0, sizeof(run));
    run.fds = r->net_fds;
    run.n = r->net_n;
    run.conns = r->net_conns;
    run.armed = r->net_armed;
    run.messages = messages;
    run.msg_size = msg_size;
    run.burst = burst;
    run.go_fd = go_fd;
    run.lat = lat.buf;
    Py_BEGIN_ALLOW_THREADS
    if (arm_only) {
        for (unsigned i = 0; i < run.n && !run.err; i++) {
            if (run.armed[i])
                continue;
            if (arm_recv(r, run.fds[i], i) == ENOSPC) {
                publish(r);
                run.err = net_enter(r, r->sq_local_tail - r->sq_submitted, 0, &run.enters);
                if (!run.err && arm_recv(r, run.fds[i], i))
                    run.err = ENOSPC;
            }
            if (!run.err)
                run.armed[i] = 1;
        }
        publish(r);
        if (!run.err)
            run.err = net_enter(r, r->sq_local_tail - r->sq_submitted, 0, &run.enters);
        /* A kernel without multishot receives (or buffer selection) refuses them at once. */
        unsigned head = *r->cq_head, tail = LOAD_ACQ(r->cq_tail);
        for (; head != tail && !run.err; head++) {
            struct io_uring_cqe *cqe = &r->cqes[head & *r->cq_mask];
            if (cqe->res < 0 && cqe->res != -ENOBUFS)
                run.err = -cqe->res;
        }
    } else {
        recv_loop(r, &run);
    }
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&lat);
    if (run.err)
        return oserror_with(run.err, run.err == ETIMEDOUT ? "recv_bufring: no completion for 30 s"
                                                          : "recv_bufring");
    return Py_BuildValue("{s:L,s:L,s:L,s:L,s:L,s:L,s:L}", "messages", run.done, "cqes", run.cqes, "recv_cqes",
                         run.data_cqes, "enobufs", run.enobufs, "rearms", run.rearms, "enters", run.enters,
                         "acks", run.acks);
}

/* ------------------------------------------------------------------ sends in flight */

/*
 * send_inflight(fd, messages, depth, link, waitall=False) -> dict
 * Every message (a bytes-like each) as one IORING_OP_SEND, up to `depth` in flight. link: each
 * group of `depth` is one IOSQE_IO_LINK chain: a send starts only when the one before it has
 * completed, and a failed one cancels the rest (-ECANCELED: sent again by the loop). Without
 * link the SQEs are independent. Either way a send may complete short (fewer bytes than asked:
 * the socket had less room); the loop sends the rest when it sees the CQE, after whatever went
 * out meanwhile. waitall: MSG_WAITALL, with which the kernel sends the rest itself first.
 * out_of_order counts messages that completed after a later one had.
 */
static PyObject *
uring_send_inflight(UringObject *r, PyObject *args)
{
    int fd, link, waitall = 0;
    PyObject *list;
    unsigned depth;
    if (!uring_open(r) ||
        !PyArg_ParseTuple(args, "iO!Ip|p:send_inflight", &fd, &PyList_Type, &list, &depth, &link, &waitall))
        return NULL;
    Py_ssize_t n = PyList_GET_SIZE(list);
    if (depth < 1 || depth > r->sq_entries || depth > r->cq_entries) {
        PyErr_SetString(PyExc_ValueError, "send_inflight: depth within 1..the ring's entries");
        return NULL;
    }
    Py_buffer *bufs = calloc((size_t)(n ? n : 1), sizeof(Py_buffer));
    size_t *sent = calloc((size_t)(n ? n : 1), sizeof(size_t));
    unsigned char *state = calloc((size_t)(n ? n : 1), 1); /* 0 to send, 1 in flight, 2 done */
    if (!bufs || !sent || !state) {
        free(bufs);
        free(sent);
        free(state);
        return PyErr_NoMemory();
    }
    Py_ssize_t got = 0;
    for (; got < n; got++)
        if (PyObject_GetBuffer(PyList_GET_ITEM(list, got), &bufs[got], PyBUF_SIMPLE) < 0)
            break;
    long long sqes = 0, shorts = 0, cancelled = 0, enters = 0, out_of_order = 0, resent = 0;
    int err = 0;
    if (got == n) {
        Py_BEGIN_ALLOW_THREADS
        Py_ssize_t first = 0; /* the first message not completely sent */
        Py_ssize_t next = 0;  /* the next message never yet submitted */
        unsigned inflight = 0;
        Py_ssize_t highest_done = -1;
        while (first < n && !err) {
            /* Queue: (re)sends of unsent messages from `first`, new ones from `next`. */
            unsigned queued = 0;
            if (link) {
                if (!inflight) {
                    struct io_uring_sqe *prev = NULL;
                    for (Py_ssize_t i = first; i < n && queued < depth; i++) {
                        if (state[i] == 2)
                            continue;
                        struct io_uring_sqe *sqe = next_sqe(r);
                        if (!sqe)
                            break;
                        if (prev)
                            prev->flags |= IOSQE_IO_LINK; /* the next one starts when this one is done */
                        prev = sqe;
                        sqe->opcode = IORING_OP_SEND;
                        sqe->fd = fd;
                        sqe->addr = (uint64_t)(uintptr_t)((char *)bufs[i].buf + sent[i]);
                        sqe->len = (unsigned)(bufs[i].len - sent[i]);
                        sqe->user_data = (uint64_t)i;
                        sqe->msg_flags = waitall ? MSG_WAITALL : 0;
                        state[i] = 1;
                        queued++;
                        if (i >= next)
                            next = i + 1;
                        else
                            resent++;
                    }
                }
            } else {
                for (Py_ssize_t i = first; i < n && inflight + queued < depth; i++) {
                    if (state[i] != 0)
                        continue;
                    struct io_uring_sqe *sqe = next_sqe(r);
                    if (!sqe)
                        break;
                    sqe->opcode = IORING_OP_SEND;
                    sqe->fd = fd;
                    sqe->addr = (uint64_t)(uintptr_t)((char *)bufs[i].buf + sent[i]);
                    sqe->len = (unsigned)(bufs[i].len - sent[i]);
                    sqe->user_data = (uint64_t)i;
                    sqe->msg_flags = waitall ? MSG_WAITALL : 0;
                    state[i] = 1;
                    queued++;
                    if (i >= next)
                        next = i + 1;
                    else
                        resent++;
                }
            }
            publish(r);
            sqes += queued;
            inflight += queued;
            /* Wait for one completion (a linked chain is queued again only once all of it is in).
             * Not for the whole chain: with DEFER_TASKRUN a wait for many completions is woken only
             * as they accumulate, while the poll retries a full socket needs run in this task. */
            if ((err = net_wait_one(r, &enters)))
                break;
            unsigned head = *r->cq_head, tail = LOAD_ACQ(r->cq_tail), mask = *r->cq_mask;
            for (; head != tail; head++) {
                struct io_uring_cqe *cqe = &r->cqes[head & mask];
                Py_ssize_t i = (Py_ssize_t)cqe->user_data;
                inflight--;
                if (cqe->res == -ECANCELED) {
                    cancelled++;
                    state[i] = 0;
                } else if (cqe->res < 0) {
                    err = -cqe->res;
                } else {
                    sent[i] += (size_t)cqe->res;
                    if (sent[i] < (size_t)bufs[i].len) {
                        shorts++;
                        state[i] = 0; /* the rest goes again */
                    } else {
                        state[i] = 2;
                        if (i < highest_done)
                            out_of_order++; /* finished after a later message had finished */
                        else
                            highest_done = i;
                    }
                }
            }
            STORE_REL(r->cq_head, head);
            while (first < n && state[first] == 2)
                first++;
        }
        /* Anything still in flight (after an error) is reaped before the buffers go. */
        while (inflight && !err) {
            if (net_enter(r, 0, inflight, &enters))
                break;
            unsigned head = *r->cq_head, tail = LOAD_ACQ(r->cq_tail);
            inflight -= tail - head;
            STORE_REL(r->cq_head, tail);
        }
        Py_END_ALLOW_THREADS
    }
    for (Py_ssize_t i = 0; i < got; i++)
        PyBuffer_Release(&bufs[i]);
    free(bufs);
    free(sent);
    free(state);
    if (PyErr_Occurred())
        return NULL;
    if (err)
        return oserror_with(err, "send_inflight");
    return Py_BuildValue("{s:L,s:L,s:L,s:L,s:L,s:L}", "sqes", sqes, "short_sends", shorts, "cancelled", cancelled,
                         "resent", resent, "out_of_order", out_of_order, "enters", enters);
}

/* ------------------------------------------------------------------ send_zc */

/*
 * send_zc(fd, buffer, msg_size, total, depth) -> dict
 * `total` bytes as IORING_OP_SEND_ZC of msg_size (MSG_WAITALL: the kernel finishes each one),
 * up to `depth` sends in flight until their CQEs; then every notification CQE (the kernel is
 * done with the pages) is waited for before returning. The buffer never changes, so it is sent
 * again while earlier sends still hold it, as the MSG_ZEROCOPY method does: a notification comes
 * only when TCP frees the data, after it was acknowledged. Counts the sends' CQEs, the
 * notifications and those whose usage says IORING_NOTIF_USAGE_ZC_COPIED (copied after all).
 */
static PyObject *
uring_send_zc(UringObject *r, PyObject *args)
{
    int fd;
    Py_buffer buffer;
    long long msg_size, total;
    unsigned depth;
    if (!uring_open(r) || !PyArg_ParseTuple(args, "iy*LLI:send_zc", &fd, &buffer, &msg_size, &total, &depth))
        return NULL;
    if (msg_size < 1 || msg_size > buffer.len || total < 0 || depth < 1 || 2 * depth > r->cq_entries ||
        depth > r->sq_entries) {
        PyBuffer_Release(&buffer);
        PyErr_SetString(PyExc_ValueError, "send_zc: msg_size within the buffer, 2 x depth within the ring");
        return NULL;
    }
    long long sends = 0, results = 0, notifs = 0, copied = 0, enters = 0, bytes = 0, shorts = 0, enobufs = 0;
    int err = 0;
    Py_BEGIN_ALLOW_THREADS
    long long left = total;
    unsigned held = 0;        /* sends whose own CQE has not come */
    long long owed = 0;       /* notifications still to come */
    while ((left > 0 || held || owed) && !err) {
        unsigned queued = 0;
        while (left > 0 && held + queued < depth) {
            struct io_uring_sqe *sqe = next_sqe(r);
            if (!sqe)
                break;
            long long len = left < msg_size ? left : msg_size;
            sqe->opcode = IORING_OP_SEND_ZC;
            sqe->fd = fd;
            sqe->addr = (uint64_t)(uintptr_t)buffer.buf;
            sqe->len = (unsigned)len;
            sqe->msg_flags = MSG_WAITALL;
            sqe->ioprio = IORING_SEND_ZC_REPORT_USAGE;
            sqe->user_data = (uint64_t)len;
            left -= len;
            queued++;
        }
        publish(r);
        held += queued;
        sends += queued;
        if ((err = net_wait_one(r, &enters)))
            break;
        unsigned head = *r->cq_head, tail = LOAD_ACQ(r->cq_tail), mask = *r->cq_mask;
        for (; head != tail; head++) {
            struct io_uring_cqe *cqe = &r->cqes[head & mask];
            if (cqe->flags & IORING_CQE_F_NOTIF) {
                notifs++;
                owed--;
                if ((unsigned)cqe->res & IORING_NOTIF_USAGE_ZC_COPIED)
                    copied++;
                continue;
            }
            results++;
            held--;
            if (cqe->flags & IORING_CQE_F_MORE)
                owed++; /* its notification follows */
            if (cqe->res < 0) {
                if (cqe->res == -ENOBUFS || cqe->res == -ENOMEM) {
                    enobufs++; /* pinned-page limit: send these bytes again once others complete */
                    left += (long long)cqe->user_data;
                } else if (!err) {
                    err = -cqe->res;
                }
            } else {
                bytes += cqe->res;
                if ((unsigned long long)cqe->res < cqe->user_data) {
                    shorts++;
                    left += (long long)cqe->user_data - cqe->res;
                }
            }
        }
        STORE_REL(r->cq_head, head);
    }
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&buffer);
    if (err)
        return oserror_with(err, "send_zc");
    return Py_BuildValue("{s:L,s:L,s:L,s:L,s:L,s:L,s:L,s:L}", "sends", sends, "results", results, "notifs",
                         notifs, "copied", copied, "enters", enters, "bytes", bytes, "short_sends", shorts,
                         "enobufs", enobufs);
}

#define URING_NET_METHODS                                                                                   \
    {"setup_buf_ring", (PyCFunction)uring_setup_buf_ring, METH_VARARGS,                                     \
     "setup_buf_ring(buffer, count, size): count buffers of size bytes as provided-buffer group 0."},      \
        {"recv_bufring", (PyCFunction)(void (*)(void))uring_recv_bufring, METH_VARARGS | METH_KEYWORDS,     \
         "recv_bufring(fds, messages, msg_size, burst, go_fd, latencies, arm_only=False) -> dict"},         \
        {"send_inflight", (PyCFunction)uring_send_inflight, METH_VARARGS,                                   \
         "send_inflight(fd, messages, depth, link, waitall=False) -> dict: sends in flight, linked or not."},               \
        {"send_zc", (PyCFunction)uring_send_zc, METH_VARARGS,                                               \
         "send_zc(fd, buffer, msg_size, total, depth) -> dict: IORING_OP_SEND_ZC with notifications."},
