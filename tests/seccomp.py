"""Run a program under the system-call filter a systemd unit declares, without systemd.

`python tests/seccomp.py UNIT -- PROGRAM ARGS...` reads the unit's
SystemCallFilter= lines, expands their groups with `systemd-analyze
syscall-filter` (systemd's own tables), loads the resulting allow list with
libseccomp (SystemCallErrorNumber=: a call outside it fails with that errno) and
execs PROGRAM, which inherits the filter. What is left out on purpose: the
architecture check (SystemCallArchitectures=native) and the rest of the
sandbox, which need systemd itself.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import re
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path

SCMP_ACT_ALLOW = 0x7FFF0000
SCMP_ACT_ERRNO_BASE = 0x00050000


def available() -> str | None:
    """Why the filter cannot be loaded here, or None when it can."""
    if shutil.which("systemd-analyze") is None:
        return "systemd-analyze is not installed (Debian: apt-get install systemd)"
    if ctypes.util.find_library("seccomp") is None:
        return "libseccomp is not installed"
    if not sys.platform.startswith("linux"):
        return "seccomp is Linux only"
    return None


@cache
def group(name: str) -> frozenset[str]:
    """The system calls of `@name` or of one call, groups expanded recursively."""
    if not name.startswith("@"):
        return frozenset({name})
    listing = subprocess.run(
        ["systemd-analyze", "syscall-filter", "--no-pager", name],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()[1:]
    calls: set[str] = set()
    for line in listing:
        word = line.strip().split(" ")[0]
        if word and not word.startswith("#"):
            calls |= group(word)
    return frozenset(calls)


def allowed_calls(unit: Path) -> tuple[frozenset[str], int]:
    """The allow list the unit's SystemCallFilter= lines make, and the errno for the rest."""
    text = unit.read_text(encoding="utf-8")
    lines = re.findall(r"^SystemCallFilter=(.*)$", text, re.MULTILINE)
    if not lines or lines[0].startswith("~"):
        raise SystemExit(f"{unit}: expected an allow list first in SystemCallFilter=")
    allowed: set[str] = set()
    for line in lines:
        deny = line.startswith("~")
        names = set().union(*(group(word) for word in line.lstrip("~").split()))
        allowed = allowed - names if deny else allowed | names
    number = re.search(r"^SystemCallErrorNumber=(\w+)$", text, re.MULTILINE)
    code = getattr(errno, number.group(1)) if number else errno.EPERM
    return frozenset(allowed), code


def load(allowed: frozenset[str], code: int) -> None:
    library = ctypes.CDLL(ctypes.util.find_library("seccomp"), use_errno=True)
    library.seccomp_init.restype = ctypes.c_void_p
    library.seccomp_init.argtypes = [ctypes.c_uint32]
    library.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    library.seccomp_rule_add.argtypes = [
        ctypes.c_void_p,
        ctypes.c_uint32,
        ctypes.c_int,
        ctypes.c_uint,
    ]
    library.seccomp_load.argtypes = [ctypes.c_void_p]
    context = library.seccomp_init(SCMP_ACT_ERRNO_BASE | code)
    for name in sorted(allowed):
        number = library.seccomp_syscall_resolve_name(name.encode())
        if number >= 0:  # a call this architecture does not have is skipped
            library.seccomp_rule_add(context, SCMP_ACT_ALLOW, number, 0)
    if library.seccomp_load(context) != 0:
        raise SystemExit(f"seccomp_load failed: {os.strerror(ctypes.get_errno())}")


def main(argv: list[str]) -> None:
    unit, separator, *program = argv
    if separator != "--" or not program:
        raise SystemExit("usage: seccomp.py UNIT -- PROGRAM ARGS...")
    allowed, code = allowed_calls(Path(unit))
    load(allowed, code)
    os.execv(program[0], program)


if __name__ == "__main__":
    main(sys.argv[1:])
