"""Calibrate a camera module's lens step by step: python -m calibration.wizard [options]

Print the chart first (python -m calibration target --out chart/), fix it flat on a wall or board,
and put the camera on a stand facing it. The wizard then, for each chart distance:

  1. asks you to put the chart at about X m and to type the distance you measured (from the front
     of the lens to the chart, in metres);
  2. checks the chart is in view, not over-exposed, not moving, and facing the camera;
  3. sweeps the focus over its whole range, checks the chart was sharp somewhere in the sweep and
     did not move, and refuses captures that repeat a distance you already have;
  4. shows which distances are covered and what the fit still needs.

Then it fits the lens (focal length, f-number, pixel pitch, focus mapping), shows the picture of the
fit, and writes the lens/1 profile (with the measured focus settle time) and the raw session (which
`python -m calibration fit SESSION --out lens.json` can fit again offline). It also measures how many frames the
focus actuator needs to settle after a move.

Cameras: --camera chart-sim (a simulated camera looking at the chart; always available), or any
kind the device package offers (sim, picamera2, jetson, v4l2, auto).

Scripting: answers can come from a file (--answers FILE, one answer per line; a blank line finishes)
or from stdin; --non-interactive --distances 0.4 0.8 asks nothing and captures those distances (the
simulated cameras place the chart there themselves).

Examples:
  python -m calibration.wizard --camera picamera2 --preset camera-module-3 --out cm3-session
  python -m calibration.wizard --camera chart-sim --non-interactive --distances 0.3 0.5 0.9 --out /tmp/s

Exit codes: 0 profile written, 1 failure or quit, 2 bad input or a session that cannot be fitted.
"""

from __future__ import annotations

import argparse
import math
import sys
from typing import Any, Iterator, Sequence, TextIO

from calibration.cli_args import image_size_arg

__all__ = ["main", "build_parser"]


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m calibration.wizard",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        epilog="\n\n".join(__doc__.split("\n\n")[1:]) if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--camera", default="chart-sim", help="camera kind: chart-sim, or a device kind (sim, picamera2, jetson, v4l2, auto)")
    ap.add_argument("--camera-opt", action="append", default=[], metavar="KEY=VALUE",
                    help="option for the device camera (repeatable; as device.capture reads them: numbers, true/false, "
                         "WIDTHxHEIGHT, JSON lists, else text)")
    ap.add_argument("--out", default=None, help="session folder to create (default: calibration-session-<time>)")
    ap.add_argument("--resume", action="store_true", help="add distances to an existing session folder")
    ap.add_argument("--profile", default=None, help="where to write the lens profile (default: SESSION/lens.json)")
    ap.add_argument("--name", default=None, help="name written into the profile")
    ap.add_argument("--chart", default=None, help="chart.json of the printed chart (default: the standard A4 chart)")
    ap.add_argument("--bar-mm", type=float, default=None, help="measured length of the chart's check bar, mm (corrects the print scale)")
    ap.add_argument("--preset", default=None, help="nominal numbers of a known module (camera-module-3, camera-module-3-wide, imx519, arducam-64mp)")
    ap.add_argument("--focal-length-mm", type=float, default=None, help="your own first guess of the focal length")
    ap.add_argument("--f-number", type=float, default=None, help="your own first guess of the f-number")
    ap.add_argument("--pixel-um", type=float, default=None, help="your own first guess of the sensor's pixel pitch, um")
    ap.add_argument("--native-width", type=int, default=None, help="full-resolution sensor width for --pixel-um, pixels")
    ap.add_argument("--frames", type=int, default=15, help="focus values per sweep (default 15)")
    ap.add_argument("--distances", type=float, nargs="+", default=None, help="chart distances to capture, metres (with --non-interactive)")
    ap.add_argument("--non-interactive", action="store_true", help="ask nothing: capture --distances, fit, write")
    ap.add_argument("--answers", default=None, help="file of answers, one per line (instead of typing them)")
    ap.add_argument("--gamma", choices=("auto", "srgb", "linear"), default="auto",
                    help="how frames are encoded (auto: linear for the device simulator, else sRGB)")
    ap.add_argument("--no-distance-offset", action="store_true", help="do not fit an offset of the measured distances")
    ap.add_argument("--sim-lens", default=None, help="simulators: the true lens (lens/1 with focus_control); default: a Camera-Module-3-like module")
    ap.add_argument("--sim-size", type=image_size_arg, default=(640, 360), help="simulators: frame size WxH (default 640x360)")
    ap.add_argument("--sim-seed", type=int, default=0, help="simulators: noise seed")
    ap.add_argument("--sim-motion-px", type=float, default=0.0, help="chart-sim: the chart drifts this many px per frame")
    ap.add_argument("--sim-white", type=float, default=0.75, help="chart-sim: paper brightness (above 1 over-exposes)")
    ap.add_argument("--sim-distance-error-mm", type=float, default=0.0, help="simulators: the chart stands this much farther than typed")
    ap.add_argument("--range", type=float, nargs=2, default=None, metavar=("NEAR", "FAR"),
                    help="after fitting, plan the focus distances of a depth sweep for this working range, metres "
                         "(as `python -m calibration plan`; plot: SESSION/plan.png)")
    ap.add_argument("--plan-frames", type=int, default=5, help="frames per depth stack for --range (default 5)")
    ap.add_argument("--show", action="store_true", help="open the picture of the fit in the system's image viewer")
    ap.add_argument("--verbose", action="store_true", help="debug logging")
    return ap


# ----------------------------------------------------------------------------- prompts


class Prompter:
    """Asks questions: from an answers file, from stdin, or not at all (non-interactive)."""

    def __init__(self, answers: Sequence[str] | None, interactive: bool, out: TextIO) -> None:
        self._answers: Iterator[str] | None = iter(answers) if answers is not None else None
        self.interactive = interactive
        self.out = out

    def say(self, text: str = "") -> None:
        print(text, file=self.out, flush=True)

    def ask(self, question: str, default: str = "") -> str | None:
        """The answer (stripped), ``default`` for an empty one, ``None`` at the end of the answers."""
        if not self.interactive:
            return None
        prompt = f"{question}{f' [{default}]' if default else ''}: "
        if self._answers is not None:
            try:
                ans = next(self._answers).strip()
            except StopIteration:
                self.say(prompt + "(no more answers)")
                return None
            self.say(prompt + ans)
        else:
            try:
                print(prompt, end="", file=self.out, flush=True)
                ans = input().strip()
            except EOFError:
                self.say("")
                return None
            if not sys.stdin.isatty():  # piped answers: show them, as a terminal would
                self.say(ans)
        return ans or default


# ----------------------------------------------------------------------------- the wizard


def _parse_opts(items: Sequence[str]) -> dict[str, Any]:
    """``--camera-opt KEY=VALUE`` items, read as ``device.capture`` reads them (:func:`model.cli.parse_options`)."""
    from model.cli import parse_options

    return parse_options(items, "--camera-opt")


class _Placer:
    """Puts the chart at a distance when the camera is simulated (a person does it otherwise)."""

    def __init__(self, camera: Any, kind: str, chart: Any, truth: Any, size: tuple[int, int], error_m: float) -> None:
        self.camera, self.kind, self.chart, self.truth, self.size, self.error_m = camera, kind, chart, truth, size, error_m

    @property
    def automatic(self) -> bool:
        return self.kind in ("chart-sim", "sim")

    def place(self, distance_m: float) -> None:
        d = distance_m + self.error_m
        if self.kind == "chart-sim":
            self.camera.place_chart(d)
        elif self.kind == "sim":
            from calibration.simulate import chart_scene

            self.camera.set_scene(*chart_scene(self.chart, self.truth, d, self.camera.image_size))


def _open_camera(args: argparse.Namespace, chart: Any, guess_profile: Any) -> tuple[Any, _Placer, str]:
    from calibration.camera_protocol import SIM_KIND, open_calibration_camera
    from calibration.simulate import ChartSimCamera, SimOptions, chart_scene, default_sim_lens
    from model.lens import LensProfile

    truth = None
    if args.camera in (SIM_KIND, "sim"):
        truth = LensProfile.load(args.sim_lens) if args.sim_lens else default_sim_lens(args.sim_size)
        if truth.focus_control is None or truth.image_size is None:
            from model.cli import UsageError

            raise UsageError(f"{args.sim_lens}: the simulated camera's lens needs focus_control and image_size")
        if tuple(truth.image_size) != tuple(args.sim_size):
            truth = truth.scaled_to(args.sim_size)
    first = (args.distances or [0.5])[0]
    if args.camera == SIM_KIND:
        cam = ChartSimCamera(lens=truth, chart=chart, distance_m=first, options=SimOptions(white=args.sim_white),
                             motion_px_per_frame=args.sim_motion_px, seed=args.sim_seed)
        gamma = "srgb"
    elif args.camera == "sim":
        assert truth is not None  # noqa: S101 - set above
        opts = {"size": args.sim_size, "realtime": False, "control_range": (0.0, 10.0), "seed": args.sim_seed}
        opts.update(_parse_opts(args.camera_opt))
        cam = open_calibration_camera("sim", lens=guess_profile, true_lens=truth, true_focus_control=truth.focus_control,
                                      scene=chart_scene(chart, truth, first, args.sim_size), **opts)
        gamma = "linear"
    else:
        cam = open_calibration_camera(args.camera, lens=guess_profile, **_parse_opts(args.camera_opt))
        gamma = "srgb"
    if args.gamma != "auto":
        gamma = args.gamma
    size = tuple(getattr(cam, "image_size", args.sim_size))
    return cam, _Placer(cam, args.camera, chart, truth, size, args.sim_distance_error_mm / 1000.0), gamma  # type: ignore[arg-type]


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from model.cli import run_cli

    run_cli(lambda: _run(args))
    return 0  # not reached: run_cli exits


def _run(args: argparse.Namespace) -> int:
    from model.cli import UsageError, setup_logging

    setup_logging(args.verbose)
    if args.non_interactive and not args.distances:
        raise UsageError("--non-interactive needs --distances (the chart distances to capture, metres)")
    if args.distances and any(not (math.isfinite(d) and 0.05 < d < 20) for d in args.distances):
        raise UsageError(f"--distances must be metres between 0.05 and 20, got {args.distances}")
    if args.frames < 6:
        raise UsageError("--frames must be at least 6")
    if args.range is not None and not (all(math.isfinite(x) and x > 0 for x in args.range) and args.range[1] > args.range[0]):
        raise UsageError(f"--range NEAR FAR must be metres with 0 < NEAR < FAR, got {args.range}")
    if args.range is not None and not 2 <= args.plan_frames <= 64:
        raise UsageError(f"--plan-frames must be between 2 and 64, got {args.plan_frames}")
    answers = None
    if args.answers:
        from pathlib import Path

        try:
            answers = Path(args.answers).read_text(encoding="utf-8").splitlines()
        except OSError as e:
            raise UsageError(f"{args.answers}: cannot read the answers file ({e.strerror or e})") from None
    wizard = _Wizard(args, Prompter(answers, interactive=not args.non_interactive, out=sys.stdout))
    return wizard.run()


class _Wizard:
    """One calibration session: chart, camera, distances, captures, fit."""

    #: a new distance closer than this (dioptres) to a captured one adds almost nothing
    MIN_SEPARATION_DPT = 0.15

    def __init__(self, args: argparse.Namespace, ui: Prompter) -> None:
        import datetime
        from pathlib import Path

        self.args, self.ui = args, ui
        self.session = Path(args.out or f"calibration-session-{datetime.datetime.now():%Y%m%d-%H%M%S}")
        self.have: list[float] = []  # captured distances (this run and resumed)
        self.measured: dict[str, Any] = {}  # stack folder -> Sweep: what an offline re-fit sees
        self.captured: list[Any] = []  # this run's sweeps, for trial fits
        self.planned = list(args.distances or [])
        self.settle: Any = None
        self.scale_at_unit: float | None = None  # s / p (pixels), known after the first look at the chart

    # ------------------------------------------------------------------ the steps

    def run(self) -> int:
        from model.cli import UsageError
        from model.formats import find_stacks

        existing = find_stacks(self.session) if self.session.exists() else []
        if self.session.exists() and any(self.session.iterdir()) and not self.args.resume:
            raise UsageError(f"{self.session}: exists and is not empty (use --resume to add to it, or another --out)")
        self._choose_chart()
        self.camera = None
        try:
            self._open()
            if existing:
                self._resume()
            while True:
                dist = self._next_distance()
                if dist is None:
                    break
                if dist < 0:  # quit
                    self.ui.say(f"quitting; the captures so far are in {self.session}")
                    return 1
                self._capture_at(dist)
                if not self.planned and not self.ui.interactive:
                    break
            return self._finish()
        finally:
            if self.camera is not None:
                self.camera.close()

    def _choose_chart(self) -> None:
        """The chart and its print scale; a resumed session keeps the chart its captures were taken with."""
        from calibration.chart import default_chart, load_chart
        from model.cli import UsageError

        args, ui = self.args, self.ui
        resumed = self.session / "chart.json"
        keep = args.resume and resumed.is_file()
        chart = load_chart(resumed) if keep else (load_chart(args.chart) if args.chart else default_chart())
        bar_mm = args.bar_mm
        nominal = chart.ruler_m * chart.scale * 1000
        while bar_mm is None and ui.interactive and not keep:
            ans = ui.ask("Measure the check bar printed under the squares: its length in mm", f"{nominal:.0f}")
            if ans is None:
                break
            try:
                bar_mm = float(ans)
            except ValueError:
                ui.say(f"  please type a number of millimetres (the bar should be about {nominal:.0f} mm)")
        if bar_mm is not None:
            if not 0.5 * nominal < bar_mm < 1.5 * nominal:
                raise UsageError(f"a {bar_mm:g} mm check bar is far from the nominal {nominal:.0f} mm: print the chart at 100 %")
            chart = chart.with_scale(chart.scale * bar_mm / nominal)
        self.chart = chart

    def _open(self) -> None:
        """Open the camera, work out the guesses, describe the session on disk."""
        import logging

        from calibration.camera_protocol import sweep_axis
        from calibration.capture import CaptureConfig
        from calibration.fit import FitConfig
        from calibration.measure import MeasureConfig
        from calibration.presets import get_preset, guess_from_numbers
        from calibration.session import update_session_info, write_session_chart
        from model.lens import LensProfile

        args, ui = self.args, self.ui
        preset = get_preset(args.preset) if args.preset else None
        self.camera, self.placer, gamma = _open_camera(args, self.chart, None)
        size = tuple(getattr(self.camera, "image_size", args.sim_size))
        self.size = (int(size[0]), int(size[1]))
        guess = preset.guess(self.size) if preset else guess_from_numbers(
            args.focal_length_mm, args.f_number, args.pixel_um, args.native_width, self.size)
        self.guess = guess
        self.guess_profile = None
        if guess is not None and guess.focal_length_m and guess.f_number and guess.pixel_pitch_m:
            self.guess_profile = LensProfile(guess.focal_length_m, guess.f_number, guess.pixel_pitch_m,
                                             name=guess.name or "first guess", image_size=self.size)
        self.describe = self.camera.describe() if hasattr(self.camera, "describe") else {"camera": args.camera}
        self.axis, lo, hi = sweep_axis(self.camera)
        self.focus_range = tuple(float(x) for x in self.camera.focus_range_dioptres)
        ui.say(f"camera: {self.describe.get('camera', args.camera)}, {self.size[0]}x{self.size[1]}, focus {self.axis} "
               f"{lo:g}..{hi:g} ({self.focus_range[0]:g}..{self.focus_range[1]:g} dioptres nominal)")
        self.session.mkdir(parents=True, exist_ok=True)
        write_session_chart(self.session, self.chart)
        update_session_info(
            self.session,
            camera=self.describe,
            guess=None if guess is None else {"focal_length_m": guess.focal_length_m, "f_number": guess.f_number,
                                               "pixel_pitch_m": guess.pixel_pitch_m, "name": guess.name},
            gamma=gamma,
            sweep_axis=self.axis,
            focus_range_dioptres=list(self.focus_range),
        )
        self.mconf = MeasureConfig(gamma=gamma)
        # linear frames need 16 bits on disk (8-bit linear would band the dark squares)
        self.bits = 16 if gamma == "linear" else 8
        self.cconf = CaptureConfig(frames=args.frames, measure=self.mconf, bit_depth=self.bits)
        control = self.describe.get("control") if self.axis == "control" else "dioptres"
        self.fconf = FitConfig(fit_distance_offset=not args.no_distance_offset, control_name=control or "LensPosition")
        if hasattr(self.camera, "lock_exposure"):
            try:
                self.camera.lock_exposure()
            except Exception as e:  # noqa: BLE001 - not every backend can; the sweep still works
                logging.getLogger("calibration.wizard").warning("could not lock exposure: %s", e)

    def _resume(self) -> None:
        from calibration.session import measure_session

        old = measure_session(self.session, self.mconf, progress=True)
        for folder, sw in zip(old.stacks, old.sweeps):
            self.measured[str(folder)] = sw
            self.have.append(sw.distance_m)
        self.ui.say(f"resuming: {len(self.have)} distance(s) already captured: {', '.join(f'{d:g} m' for d in self.have)}")

    # ------------------------------------------------------------------ advice

    def _limits(self, use_guess: bool = False) -> tuple[float, float] | None:
        """Where the chart is usable (whole chart in view, squares >= 24 px), from the measured scale
        (or, before the first look, the guess)."""
        s_over_p = self.scale_at_unit
        g = self.guess
        if s_over_p is None and use_guess and g is not None and g.focal_length_m and g.pixel_pitch_m:
            s_over_p = g.focal_length_m / g.pixel_pitch_m
        return self.chart.distance_limits_m(self.size, s_over_p) if s_over_p else None

    def _suggestions(self) -> list[float]:
        from calibration.fit import suggest_distances

        return [round(d, 2) for d in suggest_distances(self.have, self.focus_range, 3, self._limits(use_guess=True))]

    def _needed(self) -> str:
        if not self.have:
            return "the fit needs the chart at two or more distances, each swept through focus"
        if len(self.have) == 1:
            return f"one more distance is needed, e.g. about {self._suggestions()[0]:g} m"
        return ""

    # ------------------------------------------------------------------ one distance

    def _next_distance(self) -> float | None:
        """The next distance to capture; ``None`` to finish, ``-1`` to quit."""
        from calibration.report import coverage_text

        ui = self.ui
        while True:
            if self.planned:
                dist = self.planned.pop(0)
                ui.say(f"\nchart distance {dist:g} m")
            elif not ui.interactive:
                return None
            else:
                ui.say("")
                ui.say(coverage_text(self.have, self.focus_range))
                if self._needed():
                    ui.say(self._needed())
                ans = ui.ask(f"Put the chart at about {self._suggestions()[0]:g} m, facing the camera, then type the "
                             "distance you measured in metres (empty to finish, q to quit)")
                if ans is None:
                    ui.say("no more answers")
                    return None
                if ans == "":
                    if len(self.have) < 2:
                        continue  # the loop says again what is needed
                    return None
                if ans.lower() in ("q", "quit", "exit"):
                    return -1.0
                try:
                    dist = float(ans.replace("m", "").strip())
                except ValueError:
                    ui.say(f"  '{ans}' is not a distance in metres")
                    continue
                if not 0.05 < dist < 20:
                    ui.say(f"  {dist:g} m is not a plausible chart distance (metres, e.g. 0.4)")
                    continue
            close = [d for d in self.have if abs(1.0 / d - 1.0 / dist) < self.MIN_SEPARATION_DPT]
            if close:
                ui.say(f"  refused: {dist:g} m is too close to the {close[0]:g} m already captured (less than "
                       f"{self.MIN_SEPARATION_DPT:g} dioptres apart, it adds almost nothing); try about {self._suggestions()[0]:g} m")
                continue
            return dist

    def _capture_at(self, dist: float) -> None:
        """Check the view, (first time) measure the settle time, sweep, check, save, report."""
        from dataclasses import replace

        import numpy as np

        from calibration.capture import CaptureError, capture_sweep, measure_settle, preview
        from calibration.session import save_sweep, update_session_info

        ui = self.ui
        self.placer.place(dist)
        if self.placer.automatic and ui.interactive:
            ui.say(f"  (simulated camera: the chart is now at {dist:g} m)")
        look = preview(self.camera, self.chart, self.cconf, distance_m=dist)
        for w in look.warnings:
            ui.say(f"  note: {w}")
        if not look.ok:
            ui.say("  cannot use this view: " + "; ".join(look.problems))
            return
        m0 = look.measurement
        self.scale_at_unit = m0.scale_px_per_m * dist
        ui.say(f"  chart found: squares {m0.square_px:.0f} px, blur {m0.sigma_px:.2f} px")
        if self.settle is None:
            ui.say("  measuring the focus settle time (keep everything still)...")
            try:
                self.settle = measure_settle(self.camera)
            except CaptureError as e:
                ui.say(f"  {e}")
                return
            ui.say(f"  the focus settles {self.settle.settle_frames} frames ({self.settle.settle_time_s * 1000:.0f} ms) "
                   "after a full-range move")
            update_session_info(self.session, settle=self.settle.to_dict())
        cap = capture_sweep(self.camera, self.chart, dist, self.cconf, settle_frames=self.settle.settle_frames, progress=True)
        for w in cap.warnings:
            ui.say(f"  note: {w}")
        if not cap.ok:
            ui.say("  capture refused: " + "; ".join(cap.problems))
            return
        sw = cap.sweep()
        i_min = int(np.nanargmin(sw.sigma_px))
        ui.say(f"  swept {len(cap.controls)} focus values: sharpest at {sw.control[i_min]:.3g} (blur {sw.sigma_px[i_min]:.2f} px)")
        folder = save_sweep(self.session, cap.images, cap.controls, dist, guess=self.guess_profile, bit_depth=self.bits,
                            capture={**cap.metadata, "camera": self.describe.get("camera", self.args.camera),
                                     "sweep_axis": self.axis, "timestamps_ns": list(cap.timestamps_ns)})
        self.measured[str(folder)] = replace(sw, label=folder.name)
        self.have.append(dist)
        self.captured.append(sw)
        ui.say(f"  saved {folder}")
        self._trial_fit()

    def _trial_fit(self) -> None:
        """How well do this run's sweeps pin the lens down so far?"""
        from calibration.fit import CalibrationError, fit_lens

        if len(self.captured) < 2:
            return
        try:
            trial = fit_lens(self.captured, self.size, self.fconf, self.guess, focus_range_dioptres=self.focus_range,
                             distance_limits_m=self._limits())
        except CalibrationError as e:
            self.ui.say(f"  not enough for a fit yet: {str(e).splitlines()[0]}")
            return
        p, e = trial.params, trial.stderr
        rel = max(e["f_m"] / p["f_m"], e["N"] / p["N"], e["p_m"] / p["p_m"])
        self.ui.say(f"  fit so far: f {p['f_m'] * 1e3:.3f} mm, N {p['N']:.3f}, p {p['p_m'] * 1e6:.3f} um "
                    f"(worst uncertainty {100 * rel:.1f} %)")
        if rel > 0.015 and not self.planned:
            self.ui.say(f"  another distance would tighten it: about {self._suggestions()[0]:g} m")

    # ------------------------------------------------------------------ the fit

    def _finish(self) -> int:
        from dataclasses import replace
        from pathlib import Path

        from calibration.fit import CalibrationError, fit_lens
        from calibration.report import plot_fit
        from calibration.session import read_session_info, update_session_info

        args, ui = self.args, self.ui
        if not self.measured:
            raise CalibrationError("nothing was captured: " + self._needed())
        # every stack of the session, measured as `python -m calibration fit` measures them
        sweeps = [self.measured[k] for k in sorted(self.measured)]
        result = fit_lens(sweeps, self.size, self.fconf, self.guess,
                          name=args.name or f"{self.describe.get('camera', args.camera)}-calibrated",
                          focus_range_dioptres=self.focus_range, distance_limits_m=self._limits())
        extra: dict[str, Any] = {}
        info = read_session_info(self.session).get("settle") or (self.settle.to_dict() if self.settle else None)
        if info:
            interval = info.get("frame_interval_s") or 0.0
            # conservative: the settled frame may start up to one frame after the first frame after the command
            extra["settle_frames"] = int(info["settle_frames"])
            extra["settle_time_s"] = float(info["settle_time_s"]) + (float(interval) if math.isfinite(interval) else 0.0)
        lens = replace(result.lens, extra={**result.lens.extra, **extra})
        out_profile = Path(args.profile) if args.profile else self.session / "lens.json"
        lens.save(out_profile)
        picture = plot_fit(result, self.session / "fit.png")
        update_session_info(self.session, fitted_profile=str(out_profile))
        ui.say("")
        ui.say(result.summary())
        if extra:
            ui.say(f"focus settle: {extra['settle_frames']} frames, {extra['settle_time_s'] * 1000:.0f} ms")
        ui.say(f"profile: {out_profile}")
        ui.say(f"picture of the fit: {picture}")
        if args.show:
            import webbrowser

            if not webbrowser.open(picture.resolve().as_uri()):
                ui.say("  (no image viewer found: open the file yourself)")
        if args.range is not None:
            from calibration.plan import format_plan, plot_plan
            from model.sweep_plan import plan_focus_distances

            plan = plan_focus_distances(lens, args.range[0], args.range[1], args.plan_frames)
            ui.say("")
            ui.say(format_plan(plan))
            ui.say(f"plot of the plan: {plot_plan(plan, self.session / 'plan.png')}")
        refit = self.session / "lens-refit.json"
        ui.say(f"session (refit with `python -m calibration fit {self.session} --out {refit}`): {self.session}")
        return 0


if __name__ == "__main__":
    main()
