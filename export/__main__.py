"""Export DAIF-Net for deployment (ONNX for onnxruntime and TensorRT, TensorRT engines) and check it.

commands:
  onnx      checkpoint -> ONNX (physics graph: both the onnxruntime and the TensorRT flavour),
            checked in onnxruntime against PyTorch on a real stack; metadata in X.onnx.json
  engine    ONNX -> TensorRT engine on this device (fp16 by default; int8 with --calib stacks),
            with X.engine.json beside it; prints the equivalent trtexec command first
  selftest  build the GaussPSF plugin, export, compare TensorRT / onnxruntime / PyTorch, print
            latencies; reports each step as ok, failed or skipped (with the reason)
  info      what an exported file was made for (lens, focus distances, sizes, TensorRT, GPU)

examples:
  python -m export onnx --out daifnet.onnx                    # shipped model -> daifnet.onnx + daifnet.trt.onnx
  python -m export onnx --checkpoint runs/x/best.pt --out m.onnx --dynamic-size --graph net
  python -m export onnx --out swept.onnx --sweep             # + the relative-blur sweep in the graph
  python -m export engine --onnx daifnet.trt.onnx             # on the Jetson -> daifnet.engine
  python -m export engine --onnx daifnet.trt.onnx --precision int8 --calib recordings/
  python -m export engine --onnx daifnet.trt.onnx --print-only   # just the trtexec command
  python -m export selftest
  python -m export info daifnet.engine

Run `python -m export COMMAND --help` for the options of each command. See docs/export.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from model.psf_window import DEFAULT_MAX_RADIUS_PX  # light: no torch before the arguments are parsed


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT, e.g. 320x240, got {text!r}") from None
    if w < 8 or h < 8:
        raise argparse.ArgumentTypeError(f"size must be at least 8x8, got {text!r}")
    return w, h


def build_parser() -> argparse.ArgumentParser:
    fmt = argparse.RawDescriptionHelpFormatter
    p = argparse.ArgumentParser(prog="python -m export", description=__doc__, formatter_class=fmt)
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    o = sub.add_parser("onnx", help="checkpoint -> ONNX, checked against PyTorch", formatter_class=fmt,
                       description="Export a checkpoint to ONNX and check it in onnxruntime against PyTorch.")
    o.add_argument("--checkpoint", "--model", dest="checkpoint", type=Path, default=None,
                   help="checkpoint (.pt); default: the shipped model")
    o.add_argument("--out", type=Path, required=True, help="the ONNX file (.onnx)")
    o.add_argument("--graph", choices=["physics", "net"], default="physics",
                   help="physics: network + re-rendering + confidence (default); net: the network alone")
    o.add_argument("--target", choices=["both", "onnxruntime", "tensorrt"], default="both",
                   help="flavour(s) of the physics graph: onnxruntime (X.onnx), tensorrt (X.trt.onnx), both (default)")
    o.add_argument("--size", type=_size, default=None, help="WIDTHxHEIGHT to export at (default: the lens profile's)")
    o.add_argument("--dynamic-size", action="store_true", help="any image size at run time")
    o.add_argument("--stack", type=int, default=None, help="frames per stack (default: the model's focus count)")
    o.add_argument("--dynamic-stack", action="store_true", help="any number of frames at run time")
    o.add_argument("--opset", type=int, default=17, help="ONNX opset, 17..21 (default 17: TensorRT 8.5 and 10)")
    o.add_argument("--psf-radius", type=int, default=None,
                   help="GaussPSF window radius, px (default: 3 sigma of the largest blur, at most --max-psf-radius)")
    o.add_argument("--max-psf-radius", type=int, default=DEFAULT_MAX_RADIUS_PX,
                   help=f"cap on the default radius (default {DEFAULT_MAX_RADIUS_PX})")
    o.add_argument("--check-stack", type=Path, default=None,
                   help="focal-stack/1 folder to check on (default: the Motorcycle scene rendered through the lens)")
    o.add_argument("--no-check", dest="check", action="store_false", help="skip the onnxruntime/PyTorch check")
    o.add_argument("--psf-backend", choices=["auto", "native", "torch", "host"], default="auto",
                   help="GaussPSF op in onnxruntime: the native C++ op (native; auto when it builds), or a Python op "
                        "computed by model.render (torch) or the kernel's CPU code (host)")
    o.add_argument("--threads", type=int, default=None, help="onnxruntime threads for the check")
    o.add_argument("--sweep", action="store_true",
                   help="append the relative-blur sweep (model.defocus_sweep) to the graph: depth_m is the swept "
                        "depth, as model.predict --sweep gives (fixed stack size; see docs/export.md)")

    e = sub.add_parser("engine", help="ONNX -> TensorRT engine on this device", formatter_class=fmt,
                       description="Build a TensorRT engine on the device that will run it (a Jetson).")
    e.add_argument("--onnx", type=Path, required=True, help="ONNX file from `python -m export onnx`")
    e.add_argument("--out", type=Path, default=None, help="engine file (default: beside the ONNX file, .engine)")
    e.add_argument("--precision", choices=["fp16", "fp32", "int8"], default="fp16", help="default fp16")
    e.add_argument("--calib", type=Path, default=None, help="folder of focal-stack/1 stacks for int8 calibration")
    e.add_argument("--calib-cache", type=Path, default=None, help="int8 calibration cache (default: ENGINE.calib)")
    e.add_argument("--calib-stacks", type=int, default=64, help="at most this many calibration stacks (default 64)")
    e.add_argument("--timing-cache", type=Path, default=None, help="timing cache (default: timing.cache beside the engine)")
    e.add_argument("--plugin", type=Path, default=None, help="libgausspsf_trt.so (default: $DAIF_GAUSSPSF_PLUGIN or the build cache)")
    e.add_argument("--workspace-mb", type=int, default=1024, help="builder workspace, MiB (default 1024)")
    for which in ("min", "opt", "max"):
        e.add_argument(f"--{which}-size", type=_size, default=None, help=f"{which} WIDTHxHEIGHT (dynamic-size ONNX)")
    for which in ("min", "opt", "max"):
        e.add_argument(f"--{which}-stack", type=int, default=None, help=f"{which} frames (dynamic-stack ONNX)")
    e.add_argument("--cuda", choices=["auto", "cuda-python", "pycuda"], default="auto", help="CUDA Python binding")
    e.add_argument("--print-only", action="store_true", help="only print the equivalent trtexec command")
    e.add_argument("--verbose", action="store_true", help="show TensorRT's info messages")

    s = sub.add_parser("selftest", help="check the deployment chain here; reports what it skipped",
                       formatter_class=fmt, description="Build, export, compare runtimes and time them.")
    s.add_argument("--checkpoint", type=Path, default=None, help="checkpoint (default: the shipped model)")
    s.add_argument("--workdir", type=Path, default=None, help="where to write the ONNX files and engine (default: temp)")
    s.add_argument("--size", type=_size, default=None, help="WIDTHxHEIGHT (default: the lens profile's)")
    s.add_argument("--precision", choices=["fp16", "fp32"], default="fp16", help="engine precision (default fp16)")
    s.add_argument("--cuda-archs", default=None, help="plugin CUDA architectures (default: this GPU's, else 87)")
    s.add_argument("--no-plugin", dest="build_plugin", action="store_false", help="do not build the plugin")
    s.add_argument("--plugin", type=Path, default=None, help="use this libgausspsf_trt.so instead of building one")
    s.add_argument("--repeats", type=int, default=5, help="timed runs per latency (default 5)")
    s.add_argument("--max-psf-radius", type=int, default=DEFAULT_MAX_RADIUS_PX, help="cap on the physics graph's PSF radius")
    s.add_argument("--threads", type=int, default=None, help="onnxruntime threads")
    s.add_argument("--json", type=Path, default=None, help="also write the report as JSON here")

    i = sub.add_parser("info", help="what an exported file was made for", formatter_class=fmt,
                       description="Show the metadata of an exported .onnx or .engine file.")
    i.add_argument("file", type=Path, help="an .onnx or .engine file")
    i.add_argument("--json", action="store_true", help="print JSON")
    return p


def _cmd_onnx(args: argparse.Namespace) -> int:
    from export.onnx_export import ExportCheckError, OnnxExportConfig, export_onnx, format_check

    cfg = OnnxExportConfig(out=args.out, checkpoint=args.checkpoint, graph=args.graph, target=args.target,
                           image_size=args.size, dynamic_size=args.dynamic_size, stack_size=args.stack,
                           dynamic_stack=args.dynamic_stack, opset=args.opset, psf_radius=args.psf_radius,
                           max_psf_radius=args.max_psf_radius, check=args.check, check_stack=args.check_stack,
                           psf_backend=args.psf_backend, threads=args.threads, sweep=args.sweep)
    try:
        result = export_onnx(cfg)
    except ExportCheckError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    for flavour, path in result.files.items():
        print(f"wrote {path} ({flavour}) and {result.metadata_files[flavour]}")
    if result.psf_radius is not None:
        print(f"GaussPSF radius {result.psf_radius} px")
    if args.sweep:
        print("depth_m is swept in the graph (model.defocus_sweep; run the file without --sweep)")
    for note in result.notes:
        print(f"note: {note}")
    if result.check is not None:
        print(f"check on {result.check.get('stack', '-')}:")
        print(f"  {format_check(result.check)}")
        for extra in result.check.get("dynamic_checks", []):
            print(f"  {format_check(extra)}  [{extra['stack'].split(', ')[-1]}]")
    return 0


def _cmd_engine(args: argparse.Namespace) -> int:
    from export.engine import EngineConfig, engine_shapes, onnx_to_engine, trtexec_command
    from export.errors import EngineBuildError
    from export.metadata import read_onnx_info
    from export.runtime import find_plugin_library

    cfg = EngineConfig(onnx=args.onnx, out=args.out, precision=args.precision, workspace_mb=args.workspace_mb,
                       calib=args.calib, calib_cache=args.calib_cache, calib_stacks=args.calib_stacks,
                       timing_cache=args.timing_cache, plugin=args.plugin, min_size=args.min_size,
                       opt_size=args.opt_size, max_size=args.max_size, min_stack=args.min_stack,
                       opt_stack=args.opt_stack, max_stack=args.max_stack, cuda_backend=args.cuda,
                       verbose=args.verbose)
    if not args.print_only or args.precision != "int8":
        cfg.validate()
    info = read_onnx_info(cfg.onnx)
    shapes = engine_shapes(info, cfg)
    plugin = None
    if info.graph == "physics":
        plugin = find_plugin_library(cfg.plugin) or Path("build/plugins/libgausspsf_trt.so")
    onnx_for_trtexec = cfg.onnx
    if info.graph == "physics" and info.target == "onnxruntime":
        name = Path(cfg.onnx).name
        onnx_for_trtexec = Path(cfg.onnx).with_name(name[: -len(".onnx")] + ".trt.onnx")
        if not onnx_for_trtexec.exists():  # trtexec needs the TensorRT flavour, which `export onnx --target both` writes
            print(f"note: {onnx_for_trtexec} does not exist yet: `python -m export onnx --out {cfg.onnx}` (--target both, "
                  f"the default) writes it beside {name}")
    dynamic = info.image_size is None or info.stack_size is None
    print("equivalent trtexec command (on the Jetson):")
    print("  " + trtexec_command(onnx_for_trtexec, cfg, shapes, dynamic=dynamic, plugin=plugin))
    if args.print_only:
        return 0
    try:
        result = onnx_to_engine(cfg)
    except EngineBuildError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"wrote {result.engine} ({args.precision}, built in {result.build_s:.0f} s) and {result.metadata}")
    print(f"timing cache: {result.timing_cache}")
    if result.calibration:
        print(f"int8 calibration: {json.dumps(result.calibration)}")
    for note in result.notes:
        print(f"note: {note}")
    return 0


def _cmd_selftest(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from export.selftest import SelftestConfig, format_steps, run_selftest

    cfg = SelftestConfig(checkpoint=args.checkpoint, workdir=args.workdir, image_size=args.size,
                         precision=args.precision, cuda_archs=args.cuda_archs, build_plugin=args.build_plugin,
                         plugin=args.plugin,
                         repeats=args.repeats, max_psf_radius=args.max_psf_radius, threads=args.threads)
    steps = run_selftest(cfg, progress=lambda st: print(f"[{st.status}] {st.name}: {st.detail}", flush=True))
    print()
    print(format_steps(steps))
    if args.json is not None:
        from model.atomic import atomic_write_json

        atomic_write_json(args.json, json.loads(json.dumps([asdict(st) for st in steps], default=str)))
    return 1 if any(st.status == "failed" for st in steps) else 0


def _cmd_info(args: argparse.Namespace) -> int:
    from export.metadata import read_engine_info, read_onnx_info, read_sidecar

    path: Path = args.file
    data: dict[str, Any]
    if path.suffix.lower() in (".engine", ".plan"):
        e = read_engine_info(path)
        info = e.onnx
        data = {"file": str(path), "kind": "tensorrt engine", "tensorrt_version": e.tensorrt_version,
                "gpu": f"{e.gpu_name} (compute {e.compute_capability})", "precision": e.precision,
                "plugin": e.plugin_library if e.plugin_needed else None, "built_from": e.onnx_path,
                "shapes": e.shapes}
    else:
        info = read_onnx_info(path)
        side = read_sidecar(path) or {}
        data = {"file": str(path), "kind": f"onnx ({info.target} flavour)", "check": side.get("check")}
    data |= {"graph": info.graph, "lens": info.lens.to_dict(), "focus_distances_m": list(info.focus_m),
             "working_range_m": list(info.working_range_m),
             "stack_size": info.stack_size if info.stack_size is not None else "dynamic",
             "image_size": list(info.image_size) if info.image_size is not None else "dynamic",
             "outputs": list(info.outputs), "psf_radius": info.psf_radius, "sweep": info.sweep,
             "package_version": info.package_version}
    if args.json:
        print(json.dumps(data, indent=2, default=str))
        return 0
    for key, value in data.items():
        if isinstance(value, (dict, list)):
            value = json.dumps(value, default=str)
        print(f"{key:<18} {value}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    from model.cli import setup_logging

    setup_logging(getattr(args, "verbose", False))
    return {"onnx": _cmd_onnx, "engine": _cmd_engine, "selftest": _cmd_selftest, "info": _cmd_info}[args.command](args)


if __name__ == "__main__":
    from model.cli import run_cli

    run_cli(lambda: main(sys.argv[1:]))
