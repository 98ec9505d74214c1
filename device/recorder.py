"""Writing what the device captures and predicts.

- :class:`StackRecorder` writes each captured stack as a ``focal-stack/1`` folder (``stack_000000``, ...)
  with a ``capture`` block (camera, locked exposure, control values, timestamps), on its own thread
  behind a bounded queue. Folders are built in a temporary sibling and renamed into place
  (:func:`model.formats.write_stack`), so a crash or a full disk never leaves a half-written stack. On a
  full disk (or any write error) recording stops with a message; every stack finished before is intact.
  The recorder holds a lock on its folder (a second recording into it is refused) and removes the
  temporary folders a killed run left there.
- :class:`PredictionWriter` writes predictions as ``docs/FORMATS.md`` "Predictions" describe, through
  the same writer as ``model.predict`` (:mod:`model.prediction_io`): ``depth.npy`` (float32 metres, the
  input's size), ``aif.png``, ``confidence.npy``, ``depth.png`` and ``prediction.json``.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import re
import threading
from pathlib import Path
from typing import Any

import numpy as np

from device.sweep import CapturedStack
from model.atomic import FolderBusyError, exclusive_folder, is_disk_full, remove_orphans
from model.formats import write_stack
from model.lens import LensProfile

__all__ = ["StackRecorder", "PredictionWriter", "stack_name", "next_stack_number"]

log = logging.getLogger(__name__)

_NAME = re.compile(r"^stack_(\d{6,})$")


def stack_name(number: int) -> str:
    """Folder name of stack ``number``: ``stack_000042``."""
    return f"stack_{int(number):06d}"


def next_stack_number(root: Path) -> int:
    """One past the largest ``stack_NNNNNN`` already in ``root`` (0 for a new folder), so runs append."""
    if not root.is_dir():
        return 0
    nums = [int(m.group(1)) for p in root.iterdir() if (m := _NAME.match(p.name))]
    return max(nums) + 1 if nums else 0


def _disk_message(e: OSError, where: Path) -> str:
    if is_disk_full(e):
        return f"disk full writing {where}: recording stopped (stacks written before are complete)"
    return f"cannot write {where}: {e.strerror or e}: recording stopped (stacks written before are complete)"


class StackRecorder:
    """Records captured stacks under ``root`` on a background thread.

    Args:
        root: output folder (created; numbering continues after stacks already there).
        lens: the lens profile written into each ``stack.json`` (pitch for the recorded image size).
        bit_depth: 8 or 16 bit PNG frames.
        queue_size: stacks waiting to be written; :meth:`submit` blocks when it is full.
    """

    def __init__(self, root: str | Path, lens: LensProfile, bit_depth: int = 8, queue_size: int = 4) -> None:
        if bit_depth not in (8, 16):
            raise ValueError(f"bit_depth must be 8 or 16, got {bit_depth}")
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock = contextlib.ExitStack()
        try:
            self._lock.enter_context(exclusive_folder(self.root, what="another recording"))
        except FolderBusyError as e:
            raise ValueError(str(e)) from None
        removed = remove_orphans(self.root)  # what a killed run was writing (never a finished stack)
        if removed:
            log.info("removed %d unfinished temporary folder(s) of an interrupted recording in %s", len(removed), self.root)
        self.lens = lens
        self.bit_depth = bit_depth
        self._next = next_stack_number(self.root)
        self._q: queue.Queue[CapturedStack | None] = queue.Queue(maxsize=max(1, int(queue_size)))
        self.written: list[Path] = []
        self.error: str | None = None
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="stack-recorder", daemon=True)
        self._thread.start()

    @property
    def active(self) -> bool:
        """False once recording stopped (disk full, write error, or closed)."""
        return not self._stopped.is_set()

    def submit(self, stack: CapturedStack, stop: threading.Event | None = None) -> bool:
        """Queue ``stack`` for writing (blocks while the queue is full). False if recording has stopped."""
        while self.active:
            if stop is not None and stop.is_set():
                return False
            try:
                self._q.put(stack, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        while True:
            item = self._q.get()
            if item is None:
                return
            if self._stopped.is_set():
                continue  # drain after a failure
            folder = self.root / stack_name(self._next)
            try:
                write_stack(folder, item.to_focal_stack(self.lens), bit_depth=self.bit_depth)
            except OSError as e:
                self.error = _disk_message(e, folder)
                log.error("%s", self.error)
                self._stopped.set()
                continue
            except Exception as e:  # noqa: BLE001 - never kill the capture over one bad stack
                self.error = f"cannot record {folder}: {type(e).__name__}: {e}: recording stopped"
                log.error("%s", self.error)
                self._stopped.set()
                continue
            self.written.append(folder)
            self._next += 1

    def close(self, timeout: float | None = 60.0) -> None:
        """Write what is queued, then stop the thread. Idempotent."""
        if self._thread.is_alive():
            while True:
                try:
                    self._q.put(None, timeout=0.1)
                    break
                except queue.Full:
                    if not self._thread.is_alive():
                        break
            self._thread.join(timeout)
        self._stopped.set()
        if not self._thread.is_alive():
            self._lock.close()


class PredictionWriter:
    """Writes predictions under ``root`` as ``stack_NNNNNN/`` prediction folders.

    Each folder is written by :func:`model.prediction_io.write_prediction_folder`, the writer
    ``model.predict`` uses too: ``depth.npy``, ``aif.png``, ``confidence.npy`` (clipped to [0, 1]),
    ``depth.png`` and ``prediction.json``. Given the stack's frames and focus distances,
    :meth:`save` checks them (:func:`model.stack_checks.check_stack_evidence`): a stack without depth
    evidence gets a confidence of 0, a warning and the reason in ``prediction.json``.

    Args:
        root: output folder.
        near_m, far_m: depth range of the ``depth.png`` colour scale.
        depth_png: also write ``depth.png`` (a Matplotlib figure: about 0.1 s per stack).
    """

    def __init__(self, root: str | Path, near_m: float, far_m: float, depth_png: bool = True) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock = contextlib.ExitStack()
        try:
            self._lock.enter_context(exclusive_folder(self.root, what="another prediction writer"))
        except FolderBusyError as e:
            raise ValueError(str(e)) from None
        remove_orphans(self.root)
        self.near_m, self.far_m = float(near_m), float(far_m)
        self.depth_png = bool(depth_png)
        self._next = next_stack_number(self.root)
        self.written: list[Path] = []
        self.warned: list[tuple[Path, str]] = []
        self.error: str | None = None

    @property
    def active(self) -> bool:
        return self.error is None

    def save(self, depth_m: np.ndarray, aif: np.ndarray, confidence: np.ndarray | None, number: int | None = None,
             images: np.ndarray | None = None, focus_m: np.ndarray | None = None,
             metadata: dict[str, Any] | None = None) -> Path | None:
        """Write one prediction folder atomically; returns it, or ``None`` once writing has failed.

        ``images`` ``(S, H, W, 3)`` and ``focus_m`` ``(S,)`` metres: the stack that was predicted, for the
        depth-evidence check (skipped when not given). ``metadata``: more keys for ``prediction.json``.
        """
        from model.prediction_io import write_prediction_folder
        from model.stack_checks import check_stack_evidence, no_evidence_confidence

        if self.error is not None:
            return None
        folder = self.root / stack_name(self._next if number is None else number)
        if (folder / "stack.json").exists():
            self.error = f"{folder} holds a recorded focal stack: predictions never replace recordings; saving predictions stopped"
            log.error("%s", self.error)
            return None
        meta: dict[str, Any] = dict(metadata or {})
        warnings: list[str] = []
        if images is not None:
            ev = check_stack_evidence(images, focus_m)
            meta["depth_evidence"] = ev.to_dict()
            if not ev.has_evidence:
                confidence = no_evidence_confidence(np.asarray(depth_m).shape)
                warnings.append(f"no depth evidence: {ev.reason}; depth written with confidence 0")
            elif ev.problems:
                warnings.append("less depth evidence: " + "; ".join(ev.problems))
        meta["warnings"] = warnings
        try:
            write_prediction_folder(folder, depth_m, aif, confidence, near_m=self.near_m, far_m=self.far_m,
                                    depth_png=self.depth_png, metadata=meta, overwrite=True)
        except OSError as e:
            self.error = _disk_message(e, folder).replace("recording", "saving predictions")
            log.error("%s", self.error)
            return None
        for w in warnings:
            log.warning("%s: %s", folder, w)
            self.warned.append((folder, w))
        self.written.append(folder)
        self._next = max(self._next, int(folder.name.split("_")[1]) + 1)
        return folder

    def close(self) -> None:
        """Release the folder (another writer may use it then). Idempotent."""
        self._lock.close()
