"""export.native_lib: typed ctypes loading with an ABI check, status codes, the build lock."""

from __future__ import annotations

import ctypes
import ctypes.util
import threading
import time
from pathlib import Path

import pytest

from export.native_lib import check_status, file_lock, load_typed_library


class LoadError(RuntimeError):
    pass


def _libc_path() -> str:
    name = ctypes.util.find_library("c")
    if name is None:
        pytest.skip("no C library found by ctypes.util.find_library (needed as a stand-in shared library)")
    return name


def test_prototypes_applied_and_cached():
    # libc stands in for a native library, its getpid() for the ABI-version function (expected: this pid)
    import os

    libc = _resolve(_libc_path())
    cache: dict = {}
    proto = {"getpid": (ctypes.c_int32, []), "abs": (ctypes.c_int, [ctypes.c_int])}
    lib = load_typed_library(libc, proto, "getpid", os.getpid(), LoadError, cache)
    assert lib.abs(-7) == 7 and lib.abs.argtypes == [ctypes.c_int]
    assert load_typed_library(libc, proto, "getpid", os.getpid(), LoadError, cache) is lib
    assert len(cache) == 1


def _resolve(name: str) -> Path:
    """find_library gives a soname (libc.so.6); the file is the one this process has mapped."""
    for line in Path("/proc/self/maps").read_text().splitlines():
        if line.rstrip().endswith(name) or f"/{name}" in line:
            return Path(line.split()[-1])
    pytest.skip(f"{name} not found in /proc/self/maps")


def test_wrong_abi_missing_symbol_and_bad_file(tmp_path):
    import os

    libc = _resolve(_libc_path())
    with pytest.raises(LoadError, match=r"has C ABI \d+, expected -1; delete it to rebuild"):
        load_typed_library(libc, {"getpid": (ctypes.c_int32, [])}, "getpid", -1, LoadError, {})
    with pytest.raises(LoadError, match="has no symbol no_such_symbol_here"):
        load_typed_library(libc, {"no_such_symbol_here": (ctypes.c_int, [])}, "getpid", os.getpid(), LoadError, {})
    junk = tmp_path / "libjunk.so"
    junk.write_bytes(b"not an ELF file")
    with pytest.raises(LoadError, match="cannot load .*libjunk.so"):
        load_typed_library(junk, {}, "x", 1, LoadError, {})


def test_check_status():
    class FakeLib:
        @staticmethod
        def last_error() -> bytes:
            return b"radius must be in [0, 64], got 99"

    check_status(0, FakeLib, "last_error")  # zero: no error
    with pytest.raises(ValueError, match=r"^libx: radius must be in \[0, 64\], got 99$"):
        check_status(3, FakeLib, "last_error", "libx: ")


def test_file_lock_excludes(tmp_path):
    lock = tmp_path / "sub" / ".lock"  # the folder is created
    order: list[str] = []

    def other() -> None:
        with file_lock(lock):
            order.append("other")

    with file_lock(lock):
        t = threading.Thread(target=other)
        t.start()
        time.sleep(0.2)
        order.append("first")  # the other thread is still waiting for the lock
    t.join(5)
    assert order == ["first", "other"]
