"""The optional C extension; everything else is declared in pyproject.toml.

``optional=True``: where no compiler exists the build warns and goes on, and iobench runs
its pure-Python loops (``--engine auto`` falls back; ``--engine native`` says why it can't).

io_uring and Linux AIO are made with raw system calls from the kernel headers
(<linux/io_uring.h>, <linux/aio_abi.h>, in linux-libc-dev, which libc6-dev depends on): no
liburing or libaio to install, link or ship. ``IOBENCH_NO_URING=1`` / ``IOBENCH_NO_LIBAIO=1``
at build time leave them out (as missing headers do); the async-io methods then say
"unsupported: built without io_uring" (tests build both ways).
"""

import os

from setuptools import Extension, setup

_LEFT_OUT = {
    "IOBENCH_NO_URING": '"IOBENCH_NO_URING was set at build time"',
    "IOBENCH_NO_LIBAIO": '"IOBENCH_NO_LIBAIO was set at build time"',
}

setup(
    ext_modules=[
        Extension(
            "iobench.loops._native",
            sources=["iobench/loops/_native.c", "iobench/loops/_async.c"],
            depends=["iobench/loops/_async.h", "iobench/loops/_uring_net.c"],
            define_macros=[
                (name, why) for name, why in _LEFT_OUT.items() if os.environ.get(name, "") not in ("", "0")
            ],
            extra_compile_args=["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"],
            optional=True,
        ),
        # The TUN delay line of iobench.netemu (docs/NETEMU.md): without it, a kernel that has
        # no sch_netem cannot emulate a link, and VirtualLink says so.
        Extension(
            "iobench.netemu._relay",
            sources=["iobench/netemu/_relay.c"],
            extra_compile_args=["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"],
            optional=True,
        ),
    ]
)
