"""Operating-system helpers the experiments share (not timed loops): forked children with
deadlines, libc calls Python lacks, loopback sockets, scratch files, integrity checks."""
