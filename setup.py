"""The optional C extension; everything else is declared in pyproject.toml.

``optional=True``: where no compiler exists the build warns and goes on, and iobench runs
its pure-Python loops (``--engine auto`` falls back; ``--engine native`` says why it can't).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "iobench.loops._native",
            sources=["iobench/loops/_native.c"],
            extra_compile_args=["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"],
            optional=True,
        )
    ]
)
