"""Atomic file writes: a temporary file in the destination folder, then ``os.replace``.

A run killed half-way never leaves a truncated checkpoint, image or JSON file behind: readers see the
old file or the new one, never a mix.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator

__all__ = [
    "atomic_write_bytes",
    "atomic_write_text",
    "atomic_write_json",
    "atomic_write_with",
    "atomic_torch_save",
    "atomic_save_npy",
    "atomic_dir",
]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_MODE = 0o666 & ~_umask()


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_with(path: str | os.PathLike[str], writer: Callable[[io.BufferedWriter], None]) -> Path:
    """Write ``path`` atomically by calling ``writer(fileobj)`` on a temporary file beside it.

    Raises whatever ``writer`` raises (the temporary file is removed) and ``OSError`` on a full disk.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, _MODE)  # mkstemp makes 0600 files; give the usual permissions
        with os.fdopen(fd, "wb") as fh:
            writer(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)
    return path


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically."""
    return atomic_write_with(path, lambda fh: fh.write(data))


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike[str], obj: Any, indent: int = 2) -> Path:
    """Serialise ``obj`` as JSON and write it atomically (a trailing newline is added)."""
    return atomic_write_text(path, json.dumps(obj, indent=indent) + "\n")


def atomic_torch_save(obj: Any, path: str | os.PathLike[str]) -> Path:
    """``torch.save`` ``obj`` to ``path`` atomically."""
    import torch

    return atomic_write_with(path, lambda fh: torch.save(obj, fh))


def atomic_save_npy(path: str | os.PathLike[str], array: Any) -> Path:
    """``numpy.save`` ``array`` to ``path`` atomically (``path`` keeps its own name, no ``.npy`` added)."""
    import numpy as np

    return atomic_write_with(path, lambda fh: np.save(fh, np.asarray(array)))


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike[str], overwrite: bool = False) -> Iterator[Path]:
    """Build a folder atomically: yields a temporary sibling folder, renamed to ``path`` on success.

    On an exception the temporary folder is removed and ``path`` is left as it was. With
    ``overwrite=False`` an existing ``path`` raises ``FileExistsError`` before any work is done.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path}: already exists (refusing to overwrite)")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    os.chmod(tmp, 0o777 & ~_umask())
    try:
        yield tmp
        if path.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
            os.replace(path, old / "x")
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
