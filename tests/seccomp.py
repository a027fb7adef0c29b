"""Run a function in a forked child under a seccomp filter that refuses chosen system calls.

What container runtimes do to io_uring (Docker's default profile answers io_uring_setup with
EPERM), made on purpose: the child sets no_new_privs, installs a classic-BPF filter with
prctl(PR_SET_SECCOMP), calls the function and sends its JSON result back through a pipe. A
rule refuses a system call by number, optionally only when its second argument (an opcode,
e.g. io_uring_register's) has a given value.
"""

from __future__ import annotations

import ctypes
import json
import os
import platform
import struct
from collections.abc import Callable
from typing import Any

import pytest

#: x86_64 system call numbers.
NR = {
    "io_setup": 206,
    "io_submit": 209,
    "io_uring_setup": 425,
    "io_uring_enter": 426,
    "io_uring_register": 427,
}
_AUDIT_ARCH_X86_64 = 0xC000003E
_LD_W_ABS, _JEQ_K, _RET_K = 0x20, 0x15, 0x06
_RET_ALLOW, _RET_ERRNO = 0x7FFF0000, 0x00050000
_PR_SET_NO_NEW_PRIVS, _PR_SET_SECCOMP, _SECCOMP_MODE_FILTER = 38, 22, 2
#: Offsets in struct seccomp_data: nr, arch, then args[] from 16 (low 32 bits first).
_NR, _ARCH, _ARG1 = 0, 4, 24

Rule = tuple[str, int] | tuple[str, int, int]  # (syscall, errno) or (syscall, errno, arg1 value)


def _program(rules: list[Rule]) -> bytes:
    insns = [(_LD_W_ABS, 0, 0, _ARCH), (_JEQ_K, 1, 0, _AUDIT_ARCH_X86_64), (_RET_K, 0, 0, _RET_ALLOW)]
    for rule in rules:
        name, code = rule[0], rule[1]
        insns.append((_LD_W_ABS, 0, 0, _NR))
        if len(rule) == 2:
            insns += [(_JEQ_K, 0, 1, NR[name]), (_RET_K, 0, 0, _RET_ERRNO | code)]
        else:
            insns += [
                (_JEQ_K, 0, 3, NR[name]),
                (_LD_W_ABS, 0, 0, _ARG1),
                (_JEQ_K, 0, 1, rule[2]),
                (_RET_K, 0, 0, _RET_ERRNO | code),
            ]
    insns.append((_RET_K, 0, 0, _RET_ALLOW))
    return b"".join(struct.pack("HBBI", *insn) for insn in insns)


def _install(rules: list[Rule]) -> None:
    code = _program(rules)
    filters = ctypes.create_string_buffer(code, len(code))

    class Fprog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

    prog = Fprog(len(code) // 8, ctypes.addressof(filters))
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "PR_SET_NO_NEW_PRIVS")
    if libc.prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.byref(prog), 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "PR_SET_SECCOMP")


def run_filtered(rules: list[Rule], function: Callable[[], Any]) -> Any:
    """``function()``'s result (JSON-able) from a forked child whose listed calls are refused."""
    if platform.machine() != "x86_64":
        pytest.skip("the seccomp test filter knows x86_64 system call numbers only")
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: filter, work, report, leave without running the parent's cleanup
        status = 1
        try:
            os.close(read_end)
            _install(rules)
            os.write(write_end, json.dumps(function(), default=str).encode())
            status = 0
        except BaseException as exc:
            os.write(write_end, json.dumps({"child_error": repr(exc)}).encode())
        finally:
            os._exit(status)
    os.close(write_end)
    with os.fdopen(read_end) as pipe:
        data = pipe.read()
    os.waitpid(pid, 0)
    result = json.loads(data)
    assert not (isinstance(result, dict) and "child_error" in result), result
    return result
