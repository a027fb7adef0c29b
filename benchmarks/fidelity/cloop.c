/*
 * The yardstick for `make bench-fidelity`: the plainest C loop that reads or writes a file
 * with one buffer size, timed around the loop only (CLOCK_MONOTONIC, as iobench's clock).
 *
 *   cloop read  PATH BS REPS         read PATH to EOF, REPS times
 *   cloop write PATH BS SIZE REPS    write SIZE bytes to a new PATH, REPS times
 *
 * Prints one line per repetition: elapsed nanoseconds. Untimed, like iobench: opening,
 * and for writes unlinking the old file before and fsync after each repetition.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

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

int main(int argc, char **argv)
{
    if (argc < 5) {
        fprintf(stderr, "usage: cloop read PATH BS REPS | cloop write PATH BS SIZE REPS\n");
        return 2;
    }
    int writing = strcmp(argv[1], "write") == 0;
    const char *path = argv[2];
    size_t bs = strtoull(argv[3], NULL, 10);
    long long size = writing ? atoll(argv[4]) : 0;
    int reps = atoi(argv[writing ? 5 : 4]);
    char *buffer = NULL; /* page-aligned, as iobench's buffers (loops/buffers.py) */
    if (posix_memalign((void **)&buffer, 4096, bs))
        buffer = NULL;
    if (!buffer)
        die("malloc");
    memset(buffer, 'x', bs); /* touched before timing */
    for (int rep = 0; rep < reps; rep++) {
        int fd;
        if (writing) {
            unlink(path);
            fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
        } else {
            fd = open(path, O_RDONLY);
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
        printf("%lld %lld\n", elapsed, moved);
    }
    return 0;
}
