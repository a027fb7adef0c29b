/*
 * The plainest QD1 O_DIRECT random reader: pread() of bs bytes at every block of FILE once per
 * pass, in a fresh random order each pass; prints each pass's IOPS. The third party of
 * benchmarks/fio/same_file.py: what a hand-written C loop gets on the same file as fio and
 * iobench. Usage: qd1_pread FILE SIZE PASSES [BS]
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static long long now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000000000LL + t.tv_nsec;
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: %s FILE SIZE PASSES [BS]\n", argv[0]);
        return 2;
    }
    long size = atol(argv[2]), bs = argc > 4 ? atol(argv[4]) : 4096;
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
        for (long i = 0; i < blocks; i++)
            if (pread(fd, buffer, bs, offsets[i]) != bs) {
                perror("pread");
                return 1;
            }
        printf("%.0f\n", blocks / ((now_ns() - start) / 1e9));
    }
    return 0;
}
