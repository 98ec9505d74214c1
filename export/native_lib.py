"""Shared plumbing for the package's two native GaussPSF libraries (the onnxruntime op, :mod:`export.ort_native`,
and the TensorRT plugin's host library, :mod:`export.psf_ext`): a build lock, loading through ctypes with typed
prototypes and an ABI check, and C status codes turned into Python errors.
"""

from __future__ import annotations

import ctypes
import fcntl
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

#: ``{symbol: (restype, argtypes)}`` for :func:`load_typed_library`
Prototypes = Mapping[str, tuple[Any, Sequence[Any]]]


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (created with its folder) for the ``with`` block, so concurrent
    first uses of a library build it once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def load_typed_library(path: Path, prototypes: Prototypes, abi_symbol: str, expected_abi: int,
                       error: type[Exception], cache: dict[Path, ctypes.CDLL]) -> ctypes.CDLL:
    """``ctypes.CDLL(path)`` with ``prototypes`` applied, once per resolved path (kept in ``cache``).

    ``abi_symbol`` (an ``int32 f(void)`` in ``prototypes``) must return ``expected_abi``.

    Raises:
        error: the file cannot be loaded, lacks a symbol, or has another ABI version (the message says to
            delete the file so that it is rebuilt).
    """
    lib_path = Path(path).resolve()
    if lib_path in cache:
        return cache[lib_path]
    try:
        lib = ctypes.CDLL(str(lib_path))
    except OSError as e:
        raise error(f"cannot load {lib_path}: {e}") from None
    for name, (restype, argtypes) in prototypes.items():
        try:
            fn = getattr(lib, name)
        except AttributeError:
            raise error(f"{lib_path} has no symbol {name}: an old or foreign build; delete it to rebuild") from None
        fn.restype = restype
        fn.argtypes = list(argtypes)
    found = getattr(lib, abi_symbol)()
    if found != expected_abi:
        raise error(f"{lib_path} has C ABI {found}, expected {expected_abi}; delete it to rebuild")
    cache[lib_path] = lib
    return lib


def check_status(status: int, lib: ctypes.CDLL, last_error_symbol: str, prefix: str = "") -> None:
    """Raise ``ValueError`` with the library's last error message (``const char* f(void)``) when ``status != 0``."""
    if status != 0:
        message = getattr(lib, last_error_symbol)().decode(errors="replace")
        raise ValueError(f"{prefix}{message}")
