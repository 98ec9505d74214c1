"""Capture and inference running concurrently, with bounded queues and statistics.

::

    capture thread                inference thread               caller (results())
    camera -> SweepScheduler --> [stacks, bounded] --> runner --> [results, bounded] --> display / save
                 |
                 +--> StackRecorder (own thread, bounded queue)

Memory is bounded: each queue holds at most ``queue_size`` items. In ``drop`` mode (the live view) a
full queue drops its *oldest* item, so inference always works on the freshest stack and the display
never lags; otherwise (counting, recording) the producer waits. A camera that errors or disappears is
closed and reopened with exponential back-off (``retry_initial_s`` doubling up to ``retry_max_s``),
with a clear message each time; ``max_retries`` bounds the attempts.

Statistics (:class:`PipelineStats`): capture rate (frames/s, stacks/s), inference latency (the
runner's ``predict``), end-to-end latency (newest frame of a stack arriving -> its prediction ready),
dropped stacks.
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from device.cameras.base import Camera
from device.errors import CameraError
from device.recorder import StackRecorder
from device.sweep import CapturedStack, SweepConfig, SweepScheduler
from model.lens import LensProfile

__all__ = ["PipelineConfig", "StackResult", "PipelineStats", "Pipeline", "summary_line"]

log = logging.getLogger(__name__)


@dataclass
class PipelineConfig:
    """Options of :class:`Pipeline`.

    Attributes:
        queue_size: capacity of each queue (stacks waiting for inference, results waiting for the caller).
        drop: drop the oldest queued item instead of waiting (live view); ``False`` keeps every stack.
        max_stacks: stop after this many predictions (``None``: until :meth:`Pipeline.stop`).
        infer_size: ``(width, height)`` frames are resized to for inference (``None``: as captured).
        retry_initial_s: first reopen delay after a camera error, seconds (doubles each time).
        retry_max_s: longest reopen delay, seconds.
        max_retries: give up after this many failed attempts in a row (``None``: never).
    """

    queue_size: int = 2
    drop: bool = True
    max_stacks: int | None = None
    infer_size: tuple[int, int] | None = None
    retry_initial_s: float = 0.5
    retry_max_s: float = 10.0
    max_retries: int | None = None

    def validate(self) -> None:
        if int(self.queue_size) < 1:
            raise ValueError(f"queue_size must be >= 1, got {self.queue_size}")
        if self.max_stacks is not None and int(self.max_stacks) < 1:
            raise ValueError(f"max_stacks must be >= 1, got {self.max_stacks}")
        if not (self.retry_initial_s > 0 and self.retry_max_s >= self.retry_initial_s):
            raise ValueError("need 0 < retry_initial_s <= retry_max_s")


@dataclass
class StackResult:
    """A prediction and the stack it came from.

    Attributes:
        stack: the captured stack (frames at capture size).
        depth_m, aif, confidence: the prediction at capture size (``(H, W)``, ``(H, W, 3)``, ``(H, W)`` or ``None``).
        runtime: the runner's name.
        infer_ms: time in ``runner.predict`` (plus resizing), milliseconds.
        e2e_ms: from the stack's newest frame reaching the host to this result, milliseconds.
        number: running number of the prediction (0, 1, ...).
    """

    stack: CapturedStack
    depth_m: np.ndarray
    aif: np.ndarray
    confidence: np.ndarray | None
    runtime: str
    infer_ms: float
    e2e_ms: float
    number: int


class _Rate:
    """Events per second over a sliding window of timestamps (bounded)."""

    def __init__(self, window_s: float = 5.0, maxlen: int = 2048) -> None:
        self.window_ns = int(window_s * 1e9)
        self.t: deque[int] = deque(maxlen=maxlen)

    def add(self, t_ns: int, n: int = 1) -> None:
        for _ in range(n):
            self.t.append(t_ns)

    def rate(self, now_ns: int | None = None) -> float:
        now = time.monotonic_ns() if now_ns is None else now_ns
        while self.t and now - self.t[0] > self.window_ns:
            self.t.popleft()
        if len(self.t) < 2:
            return 0.0
        span = (self.t[-1] - self.t[0]) / 1e9
        return (len(self.t) - 1) / span if span > 0 else 0.0


class PipelineStats:
    """Thread-safe counters and rolling statistics (bounded memory)."""

    def __init__(self, window: int = 200) -> None:
        self._lock = threading.Lock()
        self.frames = 0
        self.stacks_captured = 0
        self.stacks_inferred = 0
        self.dropped = 0
        self.camera_errors = 0
        self._frame_rate = _Rate()
        self._stack_rate = _Rate()
        self._infer: deque[float] = deque(maxlen=window)
        self._e2e: deque[float] = deque(maxlen=window)
        self._all_infer_sum = 0.0
        self._all_e2e_sum = 0.0
        self.started_ns = time.monotonic_ns()
        self.message = ""

    def on_stack(self, stack: CapturedStack, new_frames: int) -> None:
        now = time.monotonic_ns()
        with self._lock:
            self.frames += new_frames
            self.stacks_captured += 1
            self._frame_rate.add(now, new_frames)
            self._stack_rate.add(now)

    def on_result(self, infer_ms: float, e2e_ms: float) -> None:
        with self._lock:
            self.stacks_inferred += 1
            self._infer.append(infer_ms)
            self._e2e.append(e2e_ms)
            self._all_infer_sum += infer_ms
            self._all_e2e_sum += e2e_ms

    def on_drop(self, n: int = 1) -> None:
        with self._lock:
            self.dropped += n

    def snapshot(self) -> dict[str, Any]:
        """Plain numbers: rates (per second) and latencies (ms; ``mean``/``p50``/``p95`` over recent stacks)."""
        with self._lock:
            inf = np.array(self._infer) if self._infer else np.zeros(0)
            e2e = np.array(self._e2e) if self._e2e else np.zeros(0)
            elapsed = (time.monotonic_ns() - self.started_ns) / 1e9

            def pct(a: np.ndarray, q: float) -> float | None:
                return float(np.percentile(a, q)) if a.size else None

            return {
                "elapsed_s": elapsed,
                "frames": self.frames,
                "stacks_captured": self.stacks_captured,
                "stacks_inferred": self.stacks_inferred,
                "dropped": self.dropped,
                "camera_errors": self.camera_errors,
                "capture_fps": self._frame_rate.rate(),
                "stacks_per_s": self._stack_rate.rate(),
                "frames_per_s_total": self.frames / elapsed if elapsed > 0 else 0.0,
                "infer_ms": {"mean": float(inf.mean()) if inf.size else None, "p50": pct(inf, 50), "p95": pct(inf, 95)},
                "e2e_ms": {"mean": float(e2e.mean()) if e2e.size else None, "p50": pct(e2e, 50), "p95": pct(e2e, 95)},
                "infer_ms_mean_all": self._all_infer_sum / self.stacks_inferred if self.stacks_inferred else None,
                "e2e_ms_mean_all": self._all_e2e_sum / self.stacks_inferred if self.stacks_inferred else None,
                "message": self.message,
            }


def _resize_stack(images: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    import cv2

    w, h = size
    if images.shape[2] == w and images.shape[1] == h:
        return images
    interp = cv2.INTER_AREA if images.shape[2] > w else cv2.INTER_LINEAR
    return np.stack([cv2.resize(im, (w, h), interpolation=interp) for im in images])


def _resize_back(depth: np.ndarray, aif: np.ndarray, conf: np.ndarray | None, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    import cv2

    w, h = size
    if depth.shape == (h, w):
        return depth, aif, conf
    inv = cv2.resize((1.0 / np.maximum(depth, 1e-6)).astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
    d = (1.0 / np.maximum(inv, 1e-9)).astype(np.float32)
    a = cv2.resize(aif.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
    c = cv2.resize(conf.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR) if conf is not None else None
    return d, a, c


class Pipeline:
    """Concurrent capture, inference and recording.

    Args:
        camera_factory: opens the camera (called again to reconnect after an error).
        runner: a :class:`model.runners.Runner`.
        focus_m: focus distances of a stack (default: ``runner.focus_m``).
        sweep: how to sweep (:class:`SweepConfig`).
        config: :class:`PipelineConfig`.
        recorder: writes full-sweep stacks, or ``None``.
        lens: lens for breathing alignment (default: the camera's, else the runner's).
    """

    def __init__(
        self,
        camera_factory: Callable[[], Camera],
        runner: Any,
        focus_m: Sequence[float] | None = None,
        sweep: SweepConfig | None = None,
        config: PipelineConfig | None = None,
        recorder: StackRecorder | None = None,
        lens: LensProfile | None = None,
    ) -> None:
        self.config = config or PipelineConfig()
        self.config.validate()
        self.sweep = sweep or SweepConfig()
        self.sweep.validate()
        self.camera_factory = camera_factory
        self.runner = runner
        self.focus_m = list(focus_m if focus_m is not None else runner.focus_m)
        self.recorder = recorder
        self.lens = lens
        self.stats = PipelineStats()
        self.error: BaseException | None = None
        self.stop_event = threading.Event()
        self._capture_done = threading.Event()
        self._infer_done = threading.Event()
        n = int(self.config.queue_size)
        self._stacks: queue.Queue[CapturedStack] = queue.Queue(maxsize=n)
        self._results: queue.Queue[StackResult] = queue.Queue(maxsize=n)
        self._threads: list[threading.Thread] = []
        self.camera_info: dict[str, Any] = {}

    # ------------------------------------------------------------------ control

    def start(self) -> "Pipeline":
        """Start the capture and inference threads."""
        if self._threads:
            raise RuntimeError("pipeline already started")
        self._threads = [
            threading.Thread(target=self._capture_loop, name="capture", daemon=True),
            threading.Thread(target=self._infer_loop, name="inference", daemon=True),
        ]
        for t in self._threads:
            t.start()
        return self

    def stop(self) -> None:
        """Ask every thread to stop (returns at once; see :meth:`join`)."""
        self.stop_event.set()

    def join(self, timeout: float = 30.0) -> None:
        """Wait for the threads, then flush the recorder."""
        deadline = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
        if self.recorder is not None:
            self.recorder.close()

    def __enter__(self) -> "Pipeline":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
        self.join()

    @property
    def finished(self) -> bool:
        """True when no more results will come."""
        return self._infer_done.is_set() and self._results.empty()

    # ------------------------------------------------------------------ queues

    def _put(self, q: queue.Queue, item: Any, drop: bool, stop_waiting: Callable[[], bool]) -> bool:
        if drop:
            while True:
                try:
                    q.put_nowait(item)
                    return True
                except queue.Full:
                    try:
                        q.get_nowait()
                        self.stats.on_drop()
                    except queue.Empty:
                        pass
        while not stop_waiting():
            try:
                q.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    # ------------------------------------------------------------------ threads

    def _capture_loop(self) -> None:
        cfg = self.config
        attempt = 0
        captured = 0
        limit = None if cfg.drop else cfg.max_stacks
        try:
            while not self.stop_event.is_set():
                cam: Camera | None = None
                try:
                    cam = self.camera_factory()
                    self.camera_info = cam.describe()
                    lens = self.lens or cam.lens or getattr(self.runner, "lens", None)
                    sched = SweepScheduler(cam, self.focus_m, self.sweep, lens=lens)
                    if attempt:
                        log.info("camera reopened after %d failed attempt(s)", attempt)
                        self.stats.message = ""
                    attempt = 0
                    last_frames = 0
                    remaining = None if limit is None else limit - captured
                    for stack in sched.stacks(max_stacks=remaining, stop=self.stop_event):
                        self.stats.on_stack(stack, sched.frames_captured - last_frames)
                        last_frames = sched.frames_captured
                        if self.recorder is not None and stack.full_sweep and self.recorder.active:
                            self.recorder.submit(stack, stop=self.stop_event)
                        self._put(self._stacks, stack, cfg.drop, self.stop_event.is_set)
                        captured += 1
                    if limit is not None and captured >= limit:
                        return
                except (CameraError, OSError) as e:
                    attempt += 1
                    self.stats.camera_errors += 1
                    if cfg.max_retries is not None and attempt > cfg.max_retries:
                        self.error = CameraError(f"camera failed {attempt} time(s) in a row, giving up: {e}")
                        log.error("%s", self.error)
                        self.stop_event.set()
                        return
                    delay = min(cfg.retry_max_s, cfg.retry_initial_s * 2 ** (attempt - 1))
                    msg = f"camera error: {e}; reopening in {delay:.1f} s (attempt {attempt})"
                    self.stats.message = msg
                    log.warning("%s", msg)
                    if self.stop_event.wait(delay):
                        return
                finally:
                    if cam is not None:
                        cam.close()
        except BaseException as e:  # noqa: BLE001 - report bad configuration or bugs to the caller
            self.error = e
            log.debug("capture thread failed", exc_info=True)
            self.stop_event.set()
        finally:
            self._capture_done.set()

    def _infer_loop(self) -> None:
        cfg = self.config
        number = 0
        try:
            while not self.stop_event.is_set():
                try:
                    stack = self._stacks.get(timeout=0.05)
                except queue.Empty:
                    if self._capture_done.is_set() and self._stacks.empty():
                        return
                    continue
                t0 = time.perf_counter()
                images = stack.images
                size = (images.shape[2], images.shape[1])
                if cfg.infer_size is not None:
                    images = _resize_stack(images, cfg.infer_size)
                pred = self.runner.predict(images, stack.focus_m)
                depth, aif, conf = _resize_back(pred.depth_m, pred.aif, pred.confidence, size)
                infer_ms = (time.perf_counter() - t0) * 1e3
                e2e_ms = (time.monotonic_ns() - stack.t_last_ns) / 1e6
                self.stats.on_result(infer_ms, e2e_ms)
                result = StackResult(stack, depth, aif, conf, getattr(self.runner, "name", "?"), infer_ms, e2e_ms, number)
                number += 1
                self._put(self._results, result, cfg.drop, self.stop_event.is_set)
                if cfg.max_stacks is not None and number >= cfg.max_stacks:
                    self.stop_event.set()  # enough: the capture thread stops too
                    return
        except BaseException as e:  # noqa: BLE001
            self.error = e
            log.debug("inference thread failed", exc_info=True)
            self.stop_event.set()
        finally:
            self._infer_done.set()

    # ------------------------------------------------------------------ results

    def get(self, timeout: float = 0.1) -> StackResult | None:
        """The next result, or ``None`` if none arrived within ``timeout`` (check :attr:`finished`)."""
        try:
            return self._results.get(timeout=timeout)
        except queue.Empty:
            return None

    def results(self) -> Iterator[StackResult]:
        """Yield results until the pipeline finishes or is stopped."""
        while True:
            r = self.get(0.05)
            if r is not None:
                yield r
                continue
            if self.finished or (self.stop_event.is_set() and self._results.empty() and self._infer_done.is_set()):
                return
            if self.stop_event.is_set() and self._results.empty() and not any(t.is_alive() for t in self._threads):
                return


def summary_line(stats: dict[str, Any], runtime: str) -> str:
    """One human line with the rates and latencies of a :meth:`PipelineStats.snapshot`."""
    def ms(d: dict[str, Any], k: str) -> str:
        v = d.get(k)
        return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.0f}"

    return (
        f"{stats['stacks_inferred']} stacks | capture {stats['capture_fps']:.1f} frames/s, {stats['stacks_per_s']:.2f} stacks/s"
        f" | inference ({runtime}) {ms(stats['infer_ms'], 'mean')} ms mean, {ms(stats['infer_ms'], 'p95')} ms p95"
        f" | end-to-end {ms(stats['e2e_ms'], 'mean')} ms mean, {ms(stats['e2e_ms'], 'p95')} ms p95"
        f" | dropped {stats['dropped']}"
    )
