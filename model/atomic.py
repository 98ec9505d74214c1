"""Atomic file writes: a temporary file in the destination folder, then ``os.replace``.

A run killed half-way never leaves a truncated checkpoint, image or JSON file behind: readers see the
old file or the new one, never a mix. What a killed run does leave are its temporary files and folders,
named ``.NAME.XXXXXXXX.tmp`` (a file or folder being built) and ``.NAME.XXXXXXXX.old`` (a folder being
replaced) beside their destination; :func:`remove_orphans` removes them (restoring a replaced folder
whose replacement never arrived), and :func:`exclusive_folder` keeps a second run from doing that to a
run still in progress.

A write that runs out of disk space raises ``OSError`` with ``errno.ENOSPC`` (NumPy's short write,
``"N requested and M written"``, is turned into that too).

:func:`sha256_file` is the one file digest (exports' sidecars, teacher groups' manifests).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator

__all__ = [
    "sha256_file",
    "atomic_write_bytes",
    "atomic_write_text",
    "atomic_write_json",
    "atomic_write_with",
    "atomic_torch_save",
    "atomic_save_npy",
    "atomic_dir",
    "remove_orphans",
    "exclusive_folder",
    "FolderBusyError",
    "is_disk_full",
    "ORPHAN_PATTERN",
]

ORPHAN_PATTERN = re.compile(r"^\.(?P<name>.+)\.[a-z0-9_]{8}\.(?P<kind>tmp|old)$")
"""Names of the temporary files and folders made here (``tempfile``'s 8 random characters)."""

_SHORT_WRITE = re.compile(r"\d+ requested and \d+ written")


def is_disk_full(e: BaseException) -> bool:
    """True for an ``OSError`` that means the disk (or the quota) is full."""
    return isinstance(e, OSError) and (e.errno in (errno.ENOSPC, errno.EDQUOT) or bool(_SHORT_WRITE.search(str(e))))


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
    except BaseException as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(e, OSError) and e.errno is None and is_disk_full(e):
            raise OSError(errno.ENOSPC, f"No space left on device ({e})", str(path)) from None
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


def remove_orphans(root: str | os.PathLike[str]) -> list[Path]:
    """Remove the temporary files and folders that killed runs left under ``root``; returns what went.

    A ``.NAME.XXXXXXXX.old`` folder whose ``NAME`` is missing still holds the folder it was replacing
    (the run died between the two renames of :func:`atomic_dir`): that folder is moved back to ``NAME``
    instead of being deleted. Hold :func:`exclusive_folder` on ``root`` first if another run might be
    writing there.
    """
    root = Path(root)
    removed: list[Path] = []
    if not root.is_dir():
        return removed
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        for name in sorted(dirnames + filenames):
            m = ORPHAN_PATTERN.match(name)
            if not m:
                continue
            p = here / name
            if m.group("kind") == "old" and p.is_dir() and (p / "x").exists() and not (here / m.group("name")).exists():
                with contextlib.suppress(OSError):
                    os.replace(p / "x", here / m.group("name"))
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    p.unlink()
            removed.append(p)
        dirnames[:] = [d for d in dirnames if not ORPHAN_PATTERN.match(d)]
    return removed


class FolderBusyError(RuntimeError):
    """Another process holds :func:`exclusive_folder` on the same folder."""


@contextlib.contextmanager
def exclusive_folder(path: str | os.PathLike[str], what: str = "another run") -> Iterator[Path]:
    """Hold an exclusive lock on the folder ``path`` (created) while the block runs.

    An advisory ``flock`` on the folder itself (no lock file is left behind); released when the block
    ends or the process dies. Raises :class:`FolderBusyError` when another process holds it. Where the
    file system has no locks (some network file systems), the block runs unlocked.
    """
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # not POSIX
        yield path
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise FolderBusyError(f"{path}: {what} is writing here now (wait for it to finish, or choose another folder)") from None
        except OSError:
            pass  # no locking on this file system
        yield path
    finally:
        os.close(fd)


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file (streamed)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
