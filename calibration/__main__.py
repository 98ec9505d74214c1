"""Lens calibration tools: python -m calibration {target,fit,simulate,measure,plan} ...

  target    write the printable chart: chart.png (the page at 300 dpi), chart.pdf (vector, at its
            physical size) and chart.json (its description); print at 100 % and check the bar length
  fit       fit a saved calibration session (one focal-stack/1 folder per chart distance) and write
            the lens/1 profile and a picture of the fit
  simulate  render a synthetic session through a known lens (to try the fit, or test it)
  measure   print what the chart measurement sees in every frame of a session (scale, blur)
  plan      propose the focus distances of a sweep for a lens and a working range, and show the
            expected depth uncertainty against distance (and where the lens cannot tell depth apart)

The step-by-step capture with a camera is `python -m calibration.wizard`.

Examples:
  python -m calibration target --out chart/
  python -m calibration fit my-session --out lens.json
  python -m calibration simulate /tmp/s --distances 0.3 0.5 0.9 && python -m calibration fit /tmp/s --out /tmp/lens.json
  python -m calibration plan --lens lens.json --range 0.3 2 --frames 5 --plot plan.png

Exit codes: 0 success, 1 failure, 2 bad input or a session that cannot give a fit (the message says
what to capture next).
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from calibration.cli_args import image_size_arg

__all__ = ["main", "build_parser"]


def build_parser() -> argparse.ArgumentParser:
    doc = __doc__ or ""
    ap = argparse.ArgumentParser(prog="python -m calibration", description=doc.split("\n\n")[0],
                                 epilog="\n\n".join(doc.split("\n\n")[1:]), formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--verbose", action="store_true", help="debug logging")
    sub = ap.add_subparsers(dest="command", metavar="{target,fit,simulate,measure,plan}")
    sub.required = True

    t = sub.add_parser("target", help="write the printable chart (PNG, PDF, chart.json)")
    t.add_argument("--out", required=True, help="folder to write chart.png, chart.pdf, chart.json into")
    t.add_argument("--paper", choices=("A4", "letter", "A3"), default="A4", help="paper size (landscape; default A4)")
    t.add_argument("--dpi", type=float, default=300.0, help="resolution of chart.png (default 300)")

    f = sub.add_parser("fit", help="fit a saved session and write the lens/1 profile")
    f.add_argument("session", help="session folder (focal-stack/1 calibration captures)")
    f.add_argument("--out", required=True, help="lens/1 profile to write")
    f.add_argument("--plot", default=None, help="picture of the fit (default: beside --out, <name>.fit.png)")
    f.add_argument("--name", default=None, help="name written into the profile")
    f.add_argument("--preset", default=None, help="warn when the fit is far from this module's nominal numbers")
    f.add_argument("--gamma", choices=("auto", "srgb", "linear"), default="auto",
                   help="frame encoding (auto: what session.json says, else sRGB)")
    f.add_argument("--blur", choices=("moment", "gauss"), default="moment",
                   help="blur measure: moment-matched sigma (default) or best-fitting Gaussian")
    f.add_argument("--no-distance-offset", action="store_true", help="do not fit an offset of the measured distances")

    s = sub.add_parser("simulate", help="render a synthetic session through a known lens")
    s.add_argument("out", help="session folder to create")
    s.add_argument("--distances", type=float, nargs="+", default=[0.3, 0.5, 0.9], help="chart distances, metres")
    s.add_argument("--lens", default=None, help="the true lens (lens/1 with focus_control and image_size); default: a Camera-Module-3-like module")
    s.add_argument("--size", type=image_size_arg, default=None, help="frame size WxH (default: the lens's, or 640x360)")
    s.add_argument("--frames", type=int, default=15, help="focus values per sweep")
    s.add_argument("--control-range", type=float, nargs=2, default=[0.0, 10.0], metavar=("LO", "HI"), help="raw focus values swept")
    s.add_argument("--psf", choices=("gauss", "disc"), default="gauss", help="defocus PSF shape")
    s.add_argument("--intrinsic-blur", type=float, default=0.5, help="lens blur at best focus, px")
    s.add_argument("--seed", type=int, default=0, help="noise seed")
    s.add_argument("--overwrite", action="store_true", help="replace an existing folder")

    m = sub.add_parser("measure", help="print the chart measurements of every frame of a session")
    m.add_argument("session", help="session folder")
    m.add_argument("--gamma", choices=("auto", "srgb", "linear"), default="auto")
    m.add_argument("--json", action="store_true", help="print JSON instead of a table")

    pl = sub.add_parser("plan", help="propose focus distances for a working range from a lens profile")
    pl.add_argument("--lens", required=True, help="lens/1 profile (its focus_control gives the raw control values)")
    pl.add_argument("--range", type=float, nargs=2, required=True, metavar=("NEAR", "FAR"), help="working range, metres")
    pl.add_argument("--frames", type=int, default=5, help="frames per stack (default 5)")
    pl.add_argument("--noise-px", type=float, default=None,
                    help="blur measurement noise per frame, pixels (default 0.1; see model/sweep_plan.py)")
    pl.add_argument("--size", type=image_size_arg, default=None,
                    help="plan for images of this size WxH (rescales the profile's pixel pitch)")
    pl.add_argument("--plot", default=None, help="save a PNG of the depth uncertainty against distance")
    pl.add_argument("--json", action="store_true", help="print the plan as JSON")
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from model.cli import run_cli

    run_cli(lambda: _dispatch(args))
    return 0  # not reached


def _dispatch(args: argparse.Namespace) -> int:
    from model.cli import setup_logging

    setup_logging(args.verbose)
    return {"target": _target, "fit": _fit, "simulate": _simulate, "measure": _measure, "plan": _plan}[args.command](args)


def _target(args: argparse.Namespace) -> int:
    from calibration.chart import default_chart, write_target

    spec = default_chart(args.paper)
    paths = write_target(args.out, spec, dpi=args.dpi)
    w, h = spec.chart_size_m
    print(f"chart {spec.name}: {spec.columns}x{spec.rows} squares of {spec.square_m * 1000:.0f} mm, "
          f"chart area {w * 1000:.0f} x {h * 1000:.0f} mm on {spec.paper} (landscape)")
    for k in ("pdf", "png", "json"):
        print(f"  {paths[k]}")
    print(f"print the PDF at 100 % (actual size, no 'fit to page'), then check the bar is {spec.ruler_m * 1000:.0f} mm long")
    return 0


def _gamma(args: argparse.Namespace, session: str) -> str:
    if args.gamma != "auto":
        return str(args.gamma)
    from calibration.session import read_session_info

    g = read_session_info(session).get("gamma")
    return g if g in ("srgb", "linear") else "srgb"


def _fit(args: argparse.Namespace) -> int:
    from dataclasses import replace
    from pathlib import Path

    from calibration.fit import FitConfig, fit_lens
    from calibration.measure import MeasureConfig
    from calibration.presets import get_preset
    from calibration.report import plot_fit
    from calibration.session import measure_session
    from model.cli import UsageError

    session = Path(args.session)
    if not session.is_dir():
        raise UsageError(f"{session}: no such session folder")
    preset = get_preset(args.preset) if args.preset else None
    sd = measure_session(session, MeasureConfig(gamma=_gamma(args, args.session), blur=args.blur), progress=True)
    guess = preset.guess(sd.image_size) if preset else sd.guess
    info = sd.info
    control = None
    cam = info.get("camera") if isinstance(info.get("camera"), dict) else {}
    if info.get("sweep_axis") == "dioptres":
        control = "dioptres"
    elif cam.get("control"):
        control = str(cam["control"])
    config = FitConfig(fit_distance_offset=not args.no_distance_offset, control_name=control or "LensPosition")
    fr = info.get("focus_range_dioptres")
    limits = _limits(sd)
    result = fit_lens(sd.sweeps, sd.image_size, config, guess, name=args.name or f"{session.name}-calibrated",
                      focus_range_dioptres=tuple(fr) if isinstance(fr, list) and len(fr) == 2 else None,
                      distance_limits_m=limits)
    lens = result.lens
    settle = info.get("settle")
    if isinstance(settle, dict) and "settle_frames" in settle:
        interval = settle.get("frame_interval_s") or 0.0
        lens = replace(lens, extra={**lens.extra, "settle_frames": int(settle["settle_frames"]),
                                    "settle_time_s": float(settle.get("settle_time_s", 0.0)) + float(interval)})
    out = Path(args.out)
    lens.save(out)
    plot = Path(args.plot) if args.plot else out.with_name(out.stem + ".fit.png")
    plot_fit(result, plot)
    print(result.summary())
    if "settle_frames" in lens.extra:
        print(f"focus settle: {lens.extra['settle_frames']} frames, {lens.extra['settle_time_s'] * 1000:.0f} ms")
    print(f"profile: {out}")
    print(f"picture of the fit: {plot}")
    return 0


def _limits(sd: "object") -> "tuple[float, float] | None":
    """Where the chart is usable with this camera, from the measured image scale (s/p = m D)."""
    import numpy as np

    vals = [sw.scale_px_per_m[sw.valid_scale] * sw.distance_m for sw in sd.sweeps]  # type: ignore[attr-defined]
    vals = [v for v in vals if v.size]
    if not vals:
        return None
    return sd.chart.distance_limits_m(sd.image_size, float(np.median(np.concatenate(vals))))  # type: ignore[attr-defined]


def _simulate(args: argparse.Namespace) -> int:
    import shutil
    from dataclasses import replace
    from pathlib import Path

    import numpy as np

    from calibration.simulate import SimOptions, default_sim_lens, make_synthetic_session
    from model.cli import UsageError
    from model.lens import LensProfile

    out = Path(args.out)
    if out.exists() and any(out.iterdir()):
        if not args.overwrite:
            raise UsageError(f"{out}: exists and is not empty (use --overwrite)")
        shutil.rmtree(out)
    lens = LensProfile.load(args.lens) if args.lens else default_sim_lens(args.size or (640, 360))
    if lens.focus_control is None:
        raise UsageError(f"{args.lens}: the true lens needs focus_control (the true mapping of the raw focus value)")
    size = args.size or lens.image_size or (640, 360)
    if lens.image_size is None:
        lens = replace(lens, image_size=size)
    elif tuple(lens.image_size) != tuple(size):
        lens = lens.scaled_to(size)
    if args.frames < 6:
        raise UsageError("--frames must be at least 6")
    if any(not 0.05 < d < 20 for d in args.distances):
        raise UsageError(f"--distances must be metres between 0.05 and 20, got {args.distances}")
    controls = np.linspace(args.control_range[0], args.control_range[1], args.frames)
    opts = SimOptions(psf=args.psf, intrinsic_blur_px=args.intrinsic_blur)
    make_synthetic_session(out, lens, args.distances, controls, options=opts, seed=args.seed, progress=True)
    print(f"synthetic session: {out} ({len(args.distances)} distances x {args.frames} frames, {size[0]}x{size[1]})")
    print(f"true lens: f {lens.focal_length_m * 1e3:.4g} mm, N {lens.f_number:.4g}, p {lens.pixel_pitch_m * 1e6:.4g} um, "
          f"1/d = {lens.focus_control.a:g} v + {lens.focus_control.b:g}")
    return 0


def _measure(args: argparse.Namespace) -> int:
    import json

    from calibration.measure import MeasureConfig
    from calibration.session import measure_session

    sd = measure_session(args.session, MeasureConfig(gamma=_gamma(args, args.session)), progress=True)
    if args.json:
        out = [
            {"stack": str(path), "distance_m": sw.distance_m,
             "frames": [{"focus_control": float(v), **m.summary()} for v, m in zip(sw.control, meas)]}
            for path, sw, meas in zip(sd.stacks, sd.sweeps, sd.measurements)
        ]
        print(json.dumps(out, indent=2))
        return 0
    for path, sw, meas in zip(sd.stacks, sd.sweeps, sd.measurements):
        print(f"{path}  (chart at {sw.distance_m:g} m)")
        print(f"  {'control':>9} {'scale px/m':>11} {'blur px':>8} {'+/-':>6}  note")
        for v, m in zip(sw.control, meas):
            if m.found:
                print(f"  {v:9.4g} {m.scale_px_per_m:11.2f} {m.sigma_px:8.3f} {m.sigma_err_px:6.3f}  {m.problem}")
            else:
                print(f"  {v:9.4g} {'-':>11} {'-':>8} {'':>6}  {m.problem}")
    return 0


def _plan(args: argparse.Namespace) -> int:
    import json

    from calibration.plan import format_plan, plot_plan
    from model.cli import UsageError
    from model.lens import LensProfile
    from model.sweep_plan import plan_focus_distances

    lens = LensProfile.load(args.lens)
    if args.size is not None:
        try:
            lens = lens.scaled_to(args.size)
        except ValueError as e:
            raise UsageError(f"--size: {e}") from None
    near, far = args.range
    try:
        plan = plan_focus_distances(lens, near, far, args.frames, noise_px=args.noise_px)
    except ValueError as e:
        raise UsageError(f"{args.lens}: {e}") from None
    if args.json:
        print(json.dumps(plan.to_dict(), indent=2))
    else:
        print(format_plan(plan))
    if args.plot:
        print(f"plot: {plot_plan(plan, args.plot)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
