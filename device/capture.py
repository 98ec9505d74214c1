"""Focus-sweeping capture and on-board metric depth (DAIF-Net depth from defocus).

Sweeps a motorised-focus camera over the focus distances the model was trained for, or with
--range NEAR FAR over distances planned from the lens for that working range (alternating direction,
waiting for the lens to settle), aligns the frames for focus breathing, and predicts metric depth, an
all-in-focus image and a confidence map for every stack. Capture and inference run
concurrently. With no camera attached the simulated camera is used, so everything runs anywhere.

examples:
  python -m device.capture --count 5 --out preds/      headless: 5 stacks, predictions saved, summary
  python -m device.capture --live                      live view: a window, or a page on 127.0.0.1:8000
  python -m device.capture --live --record rec/        ... and record every stack (focal-stack/1)
  python -m device.capture --camera picamera2 --lens lens.json --model mine.pt --live
  python -m device.capture --camera picamera2 --lens lens.json --range 0.3 2 --live   focus planned for 0.3-2 m
  python -m device.capture --camera jetson --camera-opt vcm=ak7375 --model mine.engine --live

outputs:
  --out DIR      DIR/stack_NNNNNN/{depth.npy, aif.png, confidence.npy, depth.png} per predicted stack
  --record DIR   DIR/stack_NNNNNN/ focal-stack/1 folders with a "capture" block (exposure, gain,
                 control values, timestamps), written atomically; for fine-tuning (docs/device.md)

Ctrl-C or SIGTERM stops cleanly (queued stacks are recorded, then a summary is printed). A camera that
fails is reopened with back-off. A full disk stops recording with a message; finished stacks stay.
Exit codes: 0 done, 1 failure (camera lost for good, disk), 2 bad input.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from model.cli import UsageError, parse_options, run_cli, setup_logging
from model.runners import RUNTIMES  # the one list of runtime names

log = logging.getLogger("device.capture")

CAMERAS = ("auto", "sim", "picamera2", "jetson", "v4l2")


@dataclass
class CaptureConfig:
    """Everything the tool was asked to do (built from the command line)."""

    live: bool = False
    camera: str = "auto"
    camera_opts: dict[str, Any] = field(default_factory=dict)
    lens: Path | None = None
    model: Path | None = None
    runtime: str = "auto"
    count: int | None = None
    range_m: tuple[float, float] | None = None
    plan_frames: int | None = None
    out: Path | None = None
    record: Path | None = None
    sliding: bool = False
    align: bool = True
    display: str = "auto"
    port: int = 8000
    queue_size: int = 2
    retries: int | None = None
    ignore_lens: bool = False
    confidence: bool = True
    sweep: bool = False
    fast_refine: bool = False
    verbose: bool = False


def parse_args(argv: list[str] | None = None) -> CaptureConfig:
    p = argparse.ArgumentParser(prog="python -m device.capture", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--live", action="store_true", help="show a live view (window if a display exists, else a local web page)")
    p.add_argument("--camera", choices=CAMERAS, default="auto", help="camera backend (default: auto = first found, else sim)")
    p.add_argument("--camera-opt", action="append", default=[], metavar="KEY=VALUE",
                   help="backend option: numbers, true/false, WIDTHxHEIGHT or JSON lists, else text; e.g. size=640x480, "
                        "vcm=ak7375, device=/dev/video2, moving_objects=2")
    p.add_argument("--lens", type=Path, help="lens profile (lens/1) of the camera, from calibration")
    p.add_argument("--model", type=Path, help="checkpoint (.pt), ONNX (.onnx) or TensorRT engine (.engine); default: shipped model")
    p.add_argument("--runtime", choices=RUNTIMES, default="auto",
                   help="inference runtime (auto: a TensorRT engine, then onnxruntime, then PyTorch: the --model file first, then X.engine / X.onnx / X.pt beside it)")
    p.add_argument("--count", type=int, help="stop after N predicted stacks")
    p.add_argument("--range", type=float, nargs=2, default=None, metavar=("NEAR", "FAR"),
                   help="working range in metres: sweep focus distances planned from the lens for it "
                        "(model.sweep_plan; printed with the lens's warnings) instead of the model's own")
    p.add_argument("--plan-frames", type=int, default=None, metavar="N",
                   help="frames per stack for --range (default: as many as the model's focus distances)")
    p.add_argument("--out", type=Path, help="save predictions here (depth.npy, aif.png, confidence.npy, depth.png)")
    p.add_argument("--record", type=Path, help="record every captured stack here as focal-stack/1 folders")
    p.add_argument("--sliding", action="store_true", help="sliding window: a new stack with every frame")
    p.add_argument("--no-align", action="store_true", help="do not align frames for focus breathing")
    p.add_argument("--display", choices=("auto", "window", "web"), default="auto", help="live view kind (default: auto)")
    p.add_argument("--port", type=int, default=8000, help="port of the live page on 127.0.0.1 (0: any free port)")
    p.add_argument("--queue", type=int, default=2, help="capacity of each queue between the threads")
    p.add_argument("--retries", type=int, help="give up after N failed camera reopen attempts (default: never when live, else 5)")
    p.add_argument("--ignore-lens", action="store_true", help="run even if the camera's lens differs from the model's")
    p.add_argument("--no-confidence", action="store_true", help="skip the physics-check confidence (faster)")
    p.add_argument("--sweep", action="store_true",
                   help="sharpen each depth map with the relative-blur sweep around the network's depth (model.defocus_sweep; "
                        "+~0.25-0.3 s per 320x240 stack on 2 CPU cores, in PyTorch on the CPU; more accurate, see README Results)")
    p.add_argument("--fast-refine", action="store_true",
                   help="the fast refinement instead: twice that sweep, each followed by filling untrusted and textureless pixels from "
                        "trusted ones along colour edges (model.refine.FAST_REFINE; ~5.5 s per 320x240 stack on two CPU "
                        "threads, so for --count/--record runs rather than a live view on a CPU; always makes the "
                        "confidence, which its fill needs)")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    a = p.parse_args(argv)
    if a.fast_refine and a.sweep:
        raise UsageError("--fast-refine already sweeps: give --fast-refine or --sweep, not both")
    if a.count is not None and a.count < 1:
        raise UsageError(f"--count must be >= 1, got {a.count}")
    if not 0 <= a.port <= 65535:
        raise UsageError(f"--port must be in 0..65535, got {a.port}")
    if a.queue < 1:
        raise UsageError(f"--queue must be >= 1, got {a.queue}")
    if a.retries is not None and a.retries < 0:
        raise UsageError(f"--retries must be >= 0, got {a.retries}")
    if a.range is not None and not (all(math.isfinite(x) and x > 0 for x in a.range) and a.range[1] > a.range[0]):
        raise UsageError(f"--range NEAR FAR must be metres with 0 < NEAR < FAR, got {a.range[0]:g} {a.range[1]:g}")
    if a.plan_frames is not None and a.range is None:
        raise UsageError("--plan-frames needs --range NEAR FAR")
    if a.plan_frames is not None and not 2 <= a.plan_frames <= 64:
        raise UsageError(f"--plan-frames must be between 2 and 64, got {a.plan_frames}")
    if a.lens is not None and not a.lens.is_file():
        raise UsageError(f"{a.lens}: lens profile not found")
    if a.model is not None and not a.model.exists():
        raise UsageError(f"{a.model}: model file not found")
    for d, flag in ((a.out, "--out"), (a.record, "--record")):
        if d is not None and d.exists() and not d.is_dir():
            raise UsageError(f"{flag} {d}: exists and is not a folder")
    if a.out is not None and a.record is not None:
        o, r = Path(os.path.realpath(a.out)), Path(os.path.realpath(a.record))
        if o == r or r in o.parents or o in r.parents:
            raise UsageError(f"--out {a.out} and --record {a.record} overlap: predictions would be written among the "
                             f"recorded stacks; give them separate folders")
    opts = parse_options(a.camera_opt, "--camera-opt")
    return CaptureConfig(
        live=a.live, camera=a.camera, camera_opts=opts, lens=a.lens, model=a.model, runtime=a.runtime, count=a.count,
        range_m=None if a.range is None else (float(a.range[0]), float(a.range[1])), plan_frames=a.plan_frames,
        out=a.out, record=a.record, sliding=a.sliding, align=not a.no_align, display=a.display, port=a.port,
        queue_size=a.queue, retries=a.retries, ignore_lens=a.ignore_lens, confidence=not a.no_confidence, sweep=a.sweep,
        fast_refine=a.fast_refine, verbose=a.verbose,
    )


class _Stopper:
    """Turns SIGTERM (and SIGINT) into a stop request instead of an abrupt exit."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.signal_name: str | None = None
        self._old: dict[int, Any] = {}

    def __enter__(self) -> "_Stopper":
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.event.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C: leave now
        self.signal_name = signal.Signals(signum).name
        self.event.set()

    def __exit__(self, *exc: object) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


def _fmt_ms(v: float | None) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.0f} ms"


def run(cfg: CaptureConfig) -> int:
    """Run the tool with ``cfg``; returns the exit code."""
    setup_logging(cfg.verbose)
    from device.cameras import CameraError, CameraNotFoundError, detect_camera, open_camera
    from device.focus_plan import plan_capture_focus
    from device.live import LiveServer, LiveState, LiveWindow, gui_available
    from device.pipeline import Pipeline, PipelineConfig, summary_line
    from device.recorder import PredictionWriter, StackRecorder
    from device.sweep import SweepConfig
    from model.lens import LensProfile
    from model.runners import bind_lens, create_runner, working_range_of

    lens = LensProfile.load(cfg.lens) if cfg.lens is not None else None
    try:
        runner = create_runner(cfg.runtime, cfg.model,
                               with_confidence=cfg.confidence and not (cfg.sweep or cfg.fast_refine))
    except ImportError as e:
        raise UsageError(f"runtime {cfg.runtime!r} is not available here ({e}); try --runtime torch") from None
    if cfg.sweep:  # the physics check is made once, of the swept depth
        from model.defocus_sweep import SweepingRunner

        runner = SweepingRunner(runner, with_confidence=cfg.confidence)
    if cfg.fast_refine:  # sweeps, fills, and makes the physics check of the final depth
        from model.refine import FAST_REFINE, RefiningRunner

        runner = RefiningRunner(runner, FAST_REFINE)
    runtime_name = getattr(runner, "name", cfg.runtime)
    kind = detect_camera() if cfg.camera == "auto" else cfg.camera
    if cfg.camera == "auto":
        log.info("camera: %s (auto-detected; --camera sim forces the simulated camera)", kind)
    if cfg.range_m is not None and kind != "sim" and lens is None:
        raise UsageError(f"--range plans the focus sweep from the lens profile: give the {kind} camera's --lens "
                         "(python -m calibration)")
    opts = dict(cfg.camera_opts)
    if kind == "sim":
        cam_lens = lens if lens is not None else runner.lens
    else:
        cam_lens = lens
        if lens is None:
            log.warning("no --lens given: the %s camera uses its nominal focus mapping and the model's optics are assumed; "
                        "calibrate it (python -m calibration) for metric depth", kind)

    try:
        first = open_camera(kind, lens=cam_lens, **opts)
    except TypeError as e:
        raise UsageError(str(e)) from None
    except CameraNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    size = first.image_size
    # the model's lens at the capture size decides the inference size and whether the optics agree
    model_lens = runner.lens
    infer_size = None
    if model_lens.image_size is not None and tuple(model_lens.image_size) != tuple(size):
        mw, mh = model_lens.image_size
        if abs(mw / mh - size[0] / size[1]) < 0.02 * (mw / mh):
            infer_size = (int(mw), int(mh))
        else:
            log.warning("capture size %dx%d has another aspect than the model's %dx%d: inferring at capture size", size[0], size[1], mw, mh)
    cam_for_check = cam_lens or model_lens
    rec_lens = cam_for_check
    if cam_for_check.image_size is not None and tuple(cam_for_check.image_size) != tuple(size):
        try:
            rec_lens = cam_for_check.scaled_to(size)
        except ValueError as e:
            log.warning("%s", e)
    test = None  # the camera's lens as the model sees it (at the inference size)
    if cam_lens is not None:
        test = rec_lens.scaled_to(infer_size) if infer_size is not None and rec_lens.image_size is not None else rec_lens
    focus_m = list(runner.focus_m)
    plan = None
    if cfg.range_m is not None and test is not None:  # (a camera without a lens profile was refused above)
        try:
            plan = plan_capture_focus(test, cfg.range_m[0], cfg.range_m[1], cfg.plan_frames or len(focus_m), camera=first)
        except ValueError:
            first.close()
            raise
        focus_m = plan.focus_m  # what the camera sweeps and the model is given
        for line in plan.lines():
            print(line, file=sys.stderr, flush=True)
    if test is not None:
        try:
            # a lens-aware model takes the camera's lens; a lens-specific one must match it
            bind_lens(runner, test, focus_m, source=f"{kind} camera ({cfg.lens or 'lens profile'})",
                      ignore_lens=cfg.ignore_lens)
        except ValueError:
            first.close()
            raise

    opened = [first]

    def factory():
        if opened:
            return opened.pop()
        return open_camera(kind, lens=cam_lens, **opts)

    near_m, far_m = working_range_of(runner)
    if plan is not None:  # the depths the model predicts for this lens are known once it has the lens
        checked = plan.against_model((near_m, far_m))
        for w in checked.warnings[len(plan.warnings):]:
            print(f"warning: {w}", file=sys.stderr, flush=True)
        plan = checked
    retries = cfg.retries if cfg.retries is not None else (None if cfg.live else 5)
    recorder = StackRecorder(cfg.record, rec_lens) if cfg.record is not None else None
    writer = PredictionWriter(cfg.out, near_m, far_m) if cfg.out is not None else None
    pipe = Pipeline(
        factory, runner, focus_m=focus_m,
        sweep=SweepConfig(mode="sliding" if cfg.sliding else "stack", align=cfg.align),
        config=PipelineConfig(queue_size=cfg.queue_size, drop=cfg.live, max_stacks=cfg.count, infer_size=infer_size,
                              max_retries=retries),
        recorder=recorder,
    )
    state = server = window = None
    if cfg.live:
        state = LiveState(near_m, far_m, runtime=runtime_name, camera=kind)
        use_window = cfg.display == "window" or (cfg.display == "auto" and gui_available())
        if cfg.display == "window" and not gui_available():
            first.close()
            raise UsageError("--display window: no display or OpenCV has no GUI (opencv-python-headless); use --display web")
        if use_window:
            window = LiveWindow(state)
        else:
            try:
                server = LiveServer(state, cfg.port).start()
            except OSError as e:
                first.close()
                raise UsageError(f"cannot serve the live page on port {cfg.port}: {e.strerror or e} (try --port 0)") from None
            print(f"live view: {server.url}  (Ctrl-C to stop)", file=sys.stderr, flush=True)

    print(f"camera {kind} {size[0]}x{size[1]}, runtime {runtime_name}, focus "
          + ", ".join(f"{f:.4g}" for f in focus_m) + " m" + (" (planned)" if plan is not None else "")
          + (", sliding window" if cfg.sliding else ""), file=sys.stderr, flush=True)
    n_done = 0
    last_log = time.monotonic()
    stopped_by: str | None = None
    with _Stopper() as stopper:
        pipe.start()
        try:
            while True:
                if stopper.event.is_set():
                    stopped_by = stopper.signal_name
                    break
                r = pipe.get(0.03 if window else 0.1)
                if r is None:
                    if pipe.finished or (pipe.stop_event.is_set() and pipe.error is not None):
                        break
                    if window is not None and not window.poll():
                        stopped_by = "window closed"
                        break
                    if state is not None:
                        state.set_stats(pipe.stats.snapshot())
                    continue
                snap = pipe.stats.snapshot()
                if writer is not None:
                    writer.save(r.depth_m, r.aif, r.confidence, images=r.stack.images, focus_m=r.stack.focus_m,
                                metadata={"camera": kind, "runtime": runtime_name,
                                          **({"focus_plan": plan.to_dict()} if plan is not None else {})})
                if state is not None:
                    state.update(r.depth_m, r.aif, r.confidence, snap, list(r.stack.focus_m))
                if window is not None:
                    lines = [summary_line(snap, runtime_name)]
                    if snap["message"]:
                        lines.append(snap["message"])
                    if not window.show(r.depth_m, r.aif, r.confidence, lines):
                        stopped_by = "window closed"
                        break
                n_done += 1
                if time.monotonic() - last_log > 2.0 and (cfg.live or cfg.count is None or cfg.count > 5):
                    log.info("%s", summary_line(snap, runtime_name))
                    last_log = time.monotonic()
                if cfg.count is not None and n_done >= cfg.count:
                    break
        except KeyboardInterrupt:
            stopped_by = "SIGINT"
        finally:
            pipe.stop()
            pipe.join()
            if writer is not None:
                writer.close()
            if server is not None:
                server.close()
            if window is not None:
                window.close()

    snap = pipe.stats.snapshot()
    elapsed = snap["elapsed_s"]
    print(f"captured {snap['stacks_captured']} stacks ({snap['frames']} frames) from the {kind} camera in {elapsed:.1f} s: "
          f"{snap['frames_per_s_total']:.1f} frames/s, {snap['stacks_captured'] / elapsed if elapsed else 0:.2f} stacks/s")
    print(f"inference ({runtime_name}): {n_done} stacks, {_fmt_ms(snap['infer_ms_mean_all'])} mean, "
          f"{_fmt_ms(snap['infer_ms']['p95'])} p95; end-to-end {_fmt_ms(snap['e2e_ms_mean_all'])} mean, "
          f"{_fmt_ms(snap['e2e_ms']['p95'])} p95; dropped {snap['dropped']}")
    if writer is not None:
        print(f"saved {len(writer.written)} predictions to {cfg.out}")
    if recorder is not None:
        print(f"recorded {len(recorder.written)} stacks to {cfg.record}")
    if stopped_by:
        print(f"stopped ({stopped_by})", file=sys.stderr)
    code = 0
    for w in (writer, recorder):
        if w is not None and w.error:
            print(f"error: {w.error}", file=sys.stderr)
            code = 1
    if pipe.error is not None:
        e = pipe.error
        if isinstance(e, CameraError):
            print(f"error: {e}", file=sys.stderr)
            return 1
        if isinstance(e, (ValueError, TypeError)):
            raise UsageError(str(e))
        raise e
    return code


def main(argv: list[str] | None = None) -> int:
    cfg = parse_args(argv)
    return run(cfg)


if __name__ == "__main__":
    run_cli(main)
