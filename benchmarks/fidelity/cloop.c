/*
 * The yardstick for `make bench-fidelity`: the plainest C loop that reads or writes a file
 * with one buffer size, timed around the loop only (CLOCK_MONOTONIC, as iobench's clock).
 *
 *   cloop read  PATH BS REPS WARMUP [BETWEEN]        read PATH to EOF
 *   cloop write PATH BS SIZE REPS WARMUP [BETWEEN]   write SIZE bytes to a new PATH
 *
 * WARMUP untimed passes come first, then REPS timed ones; one line per timed pass:
 * "elapsed_ns bytes". Untimed, like iobench: opening and closing the file around each pass,
 * and for writes unlinking the old file before and fsync after each pass.
 *
 * The buffer is what iobench's loops/buffers.py makes: a private anonymous mapping (so
 * page-aligned) filled with random bytes before timing.
 *
 * BETWEEN (default none) adds work between passes, to measure what a harness's own work
 * between repetitions does to the next pass (benchmarks/fidelity/README.md):
 *   mincore    map the file read-only, mincore(2) every page, unmap (iobench before cachestat)
 *   cachestat  cachestat(2) of the whole file (iobench's residency check since)
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#ifndef SYS_cachestat
#define SYS_cachestat 451
#endif

static long long now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void die(const char *what)
{
    perror(what);
    exit(1);
}

/* The residency check a harness makes between passes; returns resident pages. */
static long long between(const char *kind, const char *path)
{
    if (strcmp(kind, "none") == 0)
        return 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        die("open (between)");
    struct stat st;
    if (fstat(fd, &st) < 0)
        die("fstat");
    long long resident = 0;
    if (strcmp(kind, "mincore") == 0 && st.st_size > 0) {
        size_t pages = (st.st_size + 4095) / 4096;
        void *map = mmap(NULL, st.st_size, PROT_READ, MAP_SHARED, fd, 0);
        unsigned char *vector = malloc(pages);
        if (map == MAP_FAILED || !vector || mincore(map, st.st_size, vector) < 0)
            die("mincore");
        for (size_t i = 0; i < pages; i++)
            resident += vector[i] & 1;
        free(vector);
        munmap(map, st.st_size);
    } else if (strcmp(kind, "cachestat") == 0) {
        struct { uint64_t off, len; } range = {0, 0};
        struct { uint64_t nr_cache, nr_dirty, nr_writeback, nr_evicted, nr_recently_evicted; } stat;
        if (syscall(SYS_cachestat, fd, &range, &stat, 0) < 0)
            die("cachestat");
        resident = (long long)stat.nr_cache;
    } else if (strcmp(kind, "mincore") != 0) {
        fprintf(stderr, "unknown BETWEEN %s (none, mincore, cachestat)\n", kind);
        exit(2);
    }
    close(fd);
    return resident;
}

int main(int argc, char **argv)
{
    int writing = argc > 1 && strcmp(argv[1], "write") == 0;
    if (argc < (writing ? 7 : 6)) {
        fprintf(stderr, "usage: cloop read PATH BS REPS WARMUP [BETWEEN] | "
                        "cloop write PATH BS SIZE REPS WARMUP [BETWEEN]\n");
        return 2;
    }
    const char *path = argv[2];
    size_t bs = strtoull(argv[3], NULL, 10);
    long long size = writing ? atoll(argv[4]) : 0;
    int reps = atoi(argv[writing ? 5 : 4]);
    int warmup = atoi(argv[writing ? 6 : 5]);
    const char *between_kind = argc > (writing ? 7 : 6) ? argv[writing ? 7 : 6] : "none";
    if (bs == 0)
        return 2;
    char *buffer = mmap(NULL, bs, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (buffer == MAP_FAILED)
        die("mmap");
    for (size_t filled = 0; filled < bs;) { /* random bytes: every page touched before timing */
        ssize_t got = getrandom(buffer + filled, bs - filled, 0);
        if (got < 0)
            die("getrandom");
        filled += (size_t)got;
    }
    for (int pass = 0; pass < warmup + reps; pass++) {
        between(between_kind, path);
        int fd;
        if (writing) {
            unlink(path);
            fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        } else {
            fd = open(path, O_RDONLY | O_CLOEXEC);
        }
        if (fd < 0)
            die("open");
        long long start = now_ns(), moved = 0;
        if (writing) {
            while (moved < size) {
                size_t chunk = size - moved < (long long)bs ? (size_t)(size - moved) : bs;
                ssize_t done = write(fd, buffer, chunk);
                if (done <= 0)
                    die("write");
                moved += done;
            }
        } else {
            ssize_t got;
            while ((got = read(fd, buffer, bs)) > 0)
                moved += got;
            if (got < 0)
                die("read");
        }
        long long elapsed = now_ns() - start;
        if (writing && fsync(fd) < 0)
            die("fsync");
        close(fd);
        if (pass >= warmup)
            printf("%lld %lld\n", elapsed, moved);
    }
    return 0;
}
