/*
 * The plainest QD1 O_DIRECT random reader: pread() of bs bytes at every block of FILE once per
 * pass, in a fresh random order each pass; prints each pass's IOPS. The third party of
 * benchmarks/fio/same_file.py: what a hand-written C loop gets on the same file as fio and
 * iobench. Usage: qd1_pread FILE SIZE PASSES [BS [ENGINE [SPIN_NS]]]
 * ENGINE: pread (the default); aio: Linux AIO by raw system calls, io_submit of one iocb then
 * io_getevents(min 1), as fio's libaio engine does at iodepth=1; uring: io_uring by raw system
 * calls with fio's ring flags, one io_uring_enter(1, 1, GETEVENTS) per IO (iobench's pattern);
 * uring2: two calls per IO, submit then wait, as fio does. SPIN_NS (uring2 only): busy-wait that
 * long between the two calls, so the CPU idles that much less of each IO: on a virtual machine
 * whose CPU is slow to wake from idle, IOPS then rise (the README's QD 1 paragraph).
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <linux/aio_abi.h>
#include <linux/io_uring.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static long long now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000000000LL + t.tv_nsec;
}

struct ring {
    int fd;
    unsigned *sq_tail, *sq_mask, *sq_array, *cq_head, *cq_tail, *cq_mask;
    struct io_uring_sqe *sqes;
    struct io_uring_cqe *cqes;
};

static int ring_init(struct ring *r)
{
    struct io_uring_params p;
    memset(&p, 0, sizeof p);
    p.flags = IORING_SETUP_CQSIZE | IORING_SETUP_COOP_TASKRUN | IORING_SETUP_SINGLE_ISSUER
              | IORING_SETUP_DEFER_TASKRUN; /* fio 3.33's */
    p.cq_entries = 1;
    r->fd = (int)syscall(SYS_io_uring_setup, 1, &p);
    if (r->fd < 0)
        return -1;
    size_t sq_size = p.sq_off.array + p.sq_entries * sizeof(unsigned);
    size_t cq_size = p.cq_off.cqes + p.cq_entries * sizeof(struct io_uring_cqe);
    if (cq_size > sq_size)
        sq_size = cq_size; /* IORING_FEAT_SINGLE_MMAP: one mapping holds both rings */
    char *sq = mmap(NULL, sq_size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, r->fd, IORING_OFF_SQ_RING);
    r->sqes = mmap(NULL, p.sq_entries * sizeof(struct io_uring_sqe), PROT_READ | PROT_WRITE,
                   MAP_SHARED | MAP_POPULATE, r->fd, IORING_OFF_SQES);
    if (sq == MAP_FAILED || r->sqes == MAP_FAILED || !(p.features & IORING_FEAT_SINGLE_MMAP))
        return -1;
    r->sq_tail = (unsigned *)(sq + p.sq_off.tail);
    r->sq_mask = (unsigned *)(sq + p.sq_off.ring_mask);
    r->sq_array = (unsigned *)(sq + p.sq_off.array);
    r->cq_head = (unsigned *)(sq + p.cq_off.head);
    r->cq_tail = (unsigned *)(sq + p.cq_off.tail);
    r->cq_mask = (unsigned *)(sq + p.cq_off.ring_mask);
    r->cqes = (struct io_uring_cqe *)(sq + p.cq_off.cqes);
    return 0;
}

static long enter(int fd, unsigned submit, unsigned wait)
{
    return syscall(SYS_io_uring_enter, fd, submit, wait, IORING_ENTER_GETEVENTS, NULL, 0);
}

/* One read through the ring; 0 when it moved bs bytes. */
static int ring_read(struct ring *r, int fd, void *buffer, long bs, long offset, int two_calls, long spin_ns)
{
    unsigned tail = *r->sq_tail, index = tail & *r->sq_mask;
    struct io_uring_sqe *sqe = &r->sqes[index];
    memset(sqe, 0, sizeof *sqe);
    sqe->opcode = IORING_OP_READ;
    sqe->fd = fd;
    sqe->addr = (unsigned long)buffer;
    sqe->len = (unsigned)bs;
    sqe->off = (unsigned long long)offset;
    r->sq_array[index] = index;
    __atomic_store_n(r->sq_tail, tail + 1, __ATOMIC_RELEASE);
    if (two_calls) {
        if (enter(r->fd, 1, 0) != 1)
            return -1;
        for (long long until = now_ns() + spin_ns; spin_ns && now_ns() < until;)
            ;
        if (enter(r->fd, 0, 1) < 0)
            return -1;
    } else if (enter(r->fd, 1, 1) != 1) {
        return -1;
    }
    unsigned head = *r->cq_head;
    while (head == __atomic_load_n(r->cq_tail, __ATOMIC_ACQUIRE))
        if (enter(r->fd, 0, 1) < 0)
            return -1;
    int res = r->cqes[head & *r->cq_mask].res;
    __atomic_store_n(r->cq_head, head + 1, __ATOMIC_RELEASE);
    return res == bs ? 0 : -1;
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: %s FILE SIZE PASSES [BS]\n", argv[0]);
        return 2;
    }
    long size = atol(argv[2]), bs = argc > 4 ? atol(argv[4]) : 4096;
    const char *engine = argc > 5 ? argv[5] : "pread";
    int aio = strcmp(engine, "aio") == 0, uring = strncmp(engine, "uring", 5) == 0;
    int two_calls = strcmp(engine, "uring2") == 0;
    long spin_ns = argc > 6 ? atol(argv[6]) : 0;
    struct ring ring = {0};
    if (uring && ring_init(&ring) < 0) {
        perror("io_uring_setup");
        return 1;
    }
    aio_context_t ctx = 0;
    if (aio && syscall(SYS_io_setup, 1, &ctx) < 0) {
        perror("io_setup");
        return 1;
    }
    int passes = atoi(argv[3]);
    int fd = open(argv[1], O_RDONLY | O_DIRECT);
    if (fd < 0) {
        perror("open");
        return 1;
    }
    long blocks = size / bs;
    long *offsets = malloc(blocks * sizeof(long));
    void *buffer;
    if (!offsets || posix_memalign(&buffer, 4096, bs)) {
        perror("memory");
        return 1;
    }
    for (long i = 0; i < blocks; i++)
        offsets[i] = i * bs;
    srand((unsigned)getpid());
    for (int pass = 0; pass < passes; pass++) {
        for (long i = blocks - 1; i > 0; i--) {
            long j = rand() % (i + 1), t = offsets[i];
            offsets[i] = offsets[j];
            offsets[j] = t;
        }
        long long start = now_ns();
        for (long i = 0; i < blocks; i++) {
            if (uring) {
                if (ring_read(&ring, fd, buffer, bs, offsets[i], two_calls, spin_ns) < 0) {
                    perror("io_uring");
                    return 1;
                }
            } else if (aio) {
                struct iocb cb = {.aio_fildes = fd, .aio_lio_opcode = IOCB_CMD_PREAD,
                                  .aio_buf = (unsigned long)buffer, .aio_nbytes = bs, .aio_offset = offsets[i]};
                struct iocb *list[1] = {&cb};
                struct io_event event;
                if (syscall(SYS_io_submit, ctx, 1, list) != 1
                    || syscall(SYS_io_getevents, ctx, 1, 1, &event, NULL) != 1 || event.res != bs) {
                    perror("aio");
                    return 1;
                }
            } else if (pread(fd, buffer, bs, offsets[i]) != bs) {
                perror("pread");
                return 1;
            }
        }
        printf("%.0f\n", blocks / ((now_ns() - start) / 1e9));
    }
    return 0;
}
