"""mfrn.runtime: large freed blocks are reused instead of being mapped afresh (fewer page faults per step)."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

from mfrn import runtime

glibc = pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only")

# a 64 MiB block is malloc'd, written, freed, malloc'd and written again: the faults of the second writing
PROBE = """
import ctypes, resource, sys
from mfrn.runtime import retain_freed_memory
line = retain_freed_memory()
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
size = 64 << 20
block = libc.malloc(size); ctypes.memset(block, 1, size); libc.free(block)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
block = libc.malloc(size); ctypes.memset(block, 2, size)
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before, bool(line))
"""


def _faults(env_value: str | None) -> tuple[int, bool]:
    env = {k: v for k, v in os.environ.items() if k != runtime.ENV}
    if env_value is not None:
        env[runtime.ENV] = env_value
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True).stdout.split()
    return int(out[0]), out[1] == "True"


@glibc
def test_a_freed_large_block_is_reused_without_new_page_faults():
    pages = (64 << 20) // os.sysconf("SC_PAGE_SIZE")
    default_faults, default_applied = _faults("0")  # malloc as it is: a fresh mapping, every page faults again
    kept_faults, kept_applied = _faults(None)
    assert not default_applied and default_faults > pages // 2
    assert kept_applied and kept_faults < pages // 20


def test_it_can_be_switched_off_and_runs_once(monkeypatch):
    monkeypatch.setattr(runtime, "_state", {})
    monkeypatch.setenv(runtime.ENV, "off")
    assert runtime.retain_freed_memory() is None
    monkeypatch.setenv(runtime.ENV, "1")
    assert runtime.retain_freed_memory() is None  # decided once per process


@pytest.mark.parametrize("accepted, expected", [({runtime._M_MMAP_MAX}, "no mmap blocks;"),
                                                ({runtime._M_TRIM_THRESHOLD}, "no trimming;"),
                                                ({runtime._M_MMAP_MAX, runtime._M_TRIM_THRESHOLD},
                                                 "no mmap blocks, no trimming;"),
                                                (set(), None)])
def test_the_line_names_what_mallopt_took(monkeypatch, accepted, expected):
    """A glibc that refuses one parameter keeps the other: the line says which was applied (None: neither)."""
    calls = []

    class Libc:
        def mallopt(self, parameter, value):
            calls.append(parameter)
            return 1 if parameter in accepted else 0

    monkeypatch.setattr(runtime, "_state", {})
    monkeypatch.delenv(runtime.ENV, raising=False)
    monkeypatch.setattr(runtime.platform, "system", lambda: "Linux")
    monkeypatch.setattr(runtime.platform, "libc_ver", lambda: ("glibc", "2.36"))
    monkeypatch.setattr(runtime.ctypes, "CDLL", lambda name: Libc())
    line = runtime.retain_freed_memory()
    assert calls == [runtime._M_MMAP_MAX, runtime._M_TRIM_THRESHOLD]  # both tried, whatever the first answered
    if expected is None:
        assert line is None
    else:
        assert f"glibc mallopt: {expected}" in line
