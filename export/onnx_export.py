"""Checkpoint -> ONNX: :func:`torch_to_onnx` (trace and write), :func:`check_onnx` (onnxruntime against
PyTorch on a real stack) and :func:`export_onnx` (both, driven by one validated :class:`OnnxExportConfig`).

The check stack is either a ``focal-stack/1`` folder given by the user or the Middlebury 2014 Motorcycle
scene (scikit-image: a real photograph with measured depth) rendered through the model's lens at its
focus distances with the layered disc-PSF renderer (``model.synth.layered``). Pass criteria: metric depth
within 1 mm and AIF within 1e-3 everywhere; for the physics graph also the residual (1e-4) and the
confidence (1e-3) against :func:`model.confidence.physics_check`. A graph with the sweep (``--sweep``) is
compared with :class:`model.defocus_sweep.SweepLayer` run in PyTorch and may differ beyond 1 mm at a few pixels
(:data:`SWEEP_TIE_FRACTION`). The result is printed by the CLI and stored
in the JSON file beside the export.
"""

from __future__ import annotations

import io
import logging
import math
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from export.metadata import INPUT_NAMES, NET_OUTPUTS, PHYSICS_OUTPUTS, onnx_props, sha256_file, write_sidecar
from export.targets import GRAPHS, ONNX_TARGET_CHOICES, ORT_DOMAIN, check_choice, flavour_paths, to_tensorrt_flavour

__all__ = [
    "MIN_OPSET",
    "MAX_IR_VERSION",
    "TOLERANCES",
    "OnnxExportConfig",
    "ExportCheckError",
    "ExportResult",
    "torch_to_onnx",
    "reference_stack",
    "focus_for_stack",
    "check_onnx",
    "export_onnx",
    "format_check",
]

log = logging.getLogger(__name__)

MIN_OPSET = 17
MAX_OPSET = 21
MAX_IR_VERSION = 13
"""onnxruntime-extensions refuses models with a newer IR version (onnx 1.23 writes 14 by default)."""
TOLERANCES: Mapping[str, float] = {"depth_m": 1e-3, "aif": 1e-3, "residual": 1e-4, "confidence": 1e-3}
SWEEP_TIE_FRACTION = 1e-3
"""A graph with the sweep passes the depth check when at most this share of pixels is beyond the depth tolerance
and those stay within the sweep's band: the sweep picks one of discrete hypotheses, and where two are almost
equally cheap (or one sits at the band's edge) last-bit differences between the runtimes' network depths can
pick the neighbour. The residual and confidence are then compared only where the depth agrees."""


class ExportCheckError(RuntimeError):
    """onnxruntime disagreed with PyTorch beyond the tolerances (the files were written; the report says where)."""


@dataclass
class OnnxExportConfig:
    """Options of ``python -m export onnx``.

    Attributes:
        out: the ONNX file (``.onnx``). With ``target="both"`` the TensorRT flavour goes beside it as ``.trt.onnx``.
        checkpoint: a checkpoint, or ``None`` for the shipped default model.
        graph: ``"physics"`` (network + re-rendering + confidence) or ``"net"`` (network alone).
        target: ``"onnxruntime"``, ``"tensorrt"`` or ``"both"`` (physics graph flavours).
        image_size: ``(W, H)`` to export (and check) at; ``None``: the lens profile's size, else 320x240.
        dynamic_size: leave H and W free in the graph.
        stack_size: frames per stack; ``None``: as many as the model's focus distances.
        dynamic_stack: leave S free in the graph.
        opset: ONNX opset of the default domain (17-21).
        psf_radius: GaussPSF window radius, pixels; ``None``: ``ceil(3 sigma)`` of the largest blur in the
            working range, capped at ``max_psf_radius``.
        max_psf_radius: the cap above.
        check: run the onnxruntime-against-PyTorch check.
        check_stack: a ``focal-stack/1`` folder to check on (default: the rendered Motorcycle scene).
        psf_backend: GaussPSF op backend for the check (``auto``, ``torch``, ``host``).
        threads: onnxruntime intra-op threads for the check (``None``: its default).
        sweep: append the relative-blur sweep (:mod:`model.defocus_sweep`, default settings) to the graph, so
            ``depth_m`` is the swept depth (and the physics graph checks it). Needs a fixed stack size.
    """

    out: Path
    checkpoint: Path | None = None
    graph: str = "physics"
    target: str = "both"
    image_size: tuple[int, int] | None = None
    dynamic_size: bool = False
    stack_size: int | None = None
    dynamic_stack: bool = False
    opset: int = MIN_OPSET
    psf_radius: int | None = None
    max_psf_radius: int = 32
    check: bool = True
    check_stack: Path | None = None
    psf_backend: str = "auto"
    threads: int | None = None
    sweep: bool = False

    def validate(self) -> None:
        """Raise ``ValueError`` for options that cannot work, before any work is done."""
        from export.ort_ops import BACKENDS
        from export.psf_ext import MAX_RADIUS as MAX_RADIUS_PX  # model.render's bound, without importing torch

        check_choice("graph", self.graph, GRAPHS)
        check_choice("ONNX target", self.target, ONNX_TARGET_CHOICES)
        check_choice("GaussPSF backend", self.psf_backend, BACKENDS)
        flavour_paths(self.out, self.target, self.graph)
        if not MIN_OPSET <= int(self.opset) <= MAX_OPSET:
            raise ValueError(f"opset {self.opset} is not supported: use {MIN_OPSET}..{MAX_OPSET} "
                             "(17 suits TensorRT 8.5 on JetPack 5 and TensorRT 10 on JetPack 6)")
        if self.image_size is not None:
            w, h = self.image_size
            if not (isinstance(w, int) and isinstance(h, int)) or w < 8 or h < 8:
                raise ValueError(f"image size must be at least 8x8 pixels, got {self.image_size}")
        if self.stack_size is not None and (not isinstance(self.stack_size, int) or self.stack_size < 2):
            raise ValueError(f"a focal stack needs at least 2 frames, got stack size {self.stack_size}")
        if self.psf_radius is not None and not 0 <= int(self.psf_radius) <= MAX_RADIUS_PX:
            raise ValueError(f"psf radius must be in [0, {MAX_RADIUS_PX}] pixels, got {self.psf_radius}")
        if not 0 <= int(self.max_psf_radius) <= MAX_RADIUS_PX:
            raise ValueError(f"max psf radius must be in [0, {MAX_RADIUS_PX}] pixels, got {self.max_psf_radius}")
        if self.graph == "net" and self.psf_radius is not None:
            raise ValueError("--psf-radius only applies to the physics graph (--graph physics)")
        if self.check_stack is not None and not Path(self.check_stack).is_dir():
            raise FileNotFoundError(f"{self.check_stack}: check stack folder not found")
        if self.checkpoint is not None and not Path(self.checkpoint).is_file():
            raise FileNotFoundError(f"{self.checkpoint}: checkpoint not found")
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"threads must be >= 1, got {self.threads}")
        if self.sweep and self.dynamic_stack:
            raise ValueError("--sweep needs a fixed stack size (the sweep's frame pairs are unrolled in the graph): "
                             "drop --dynamic-stack, or export one file per frame count with --stack N")
        if self.sweep and self.dynamic_size and self.image_size is not None:
            low = sweep_min_image_side()
            if min(self.image_size) < low:
                raise ValueError(f"--sweep with --dynamic-size is traced at --size {self.image_size[0]}x"
                                 f"{self.image_size[1]}, but needs both sides of at least {low} pixels there "
                                 f"(the sweep's widest border); trace at a larger --size or drop --dynamic-size")


@dataclass
class ExportResult:
    """What :func:`export_onnx` wrote and found.

    Attributes:
        files: ``{flavour: path}`` (``any``, ``onnxruntime``, ``tensorrt``).
        metadata_files: the JSON file beside each.
        psf_radius: the exported GaussPSF radius (physics graph), else ``None``.
        check: the check report (see :func:`check_onnx`), or ``None`` when skipped.
    """

    files: dict[str, Path]
    metadata_files: dict[str, Path]
    psf_radius: int | None
    check: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------------------------------
# Export


def sweep_min_image_side(config: Any = None) -> int:
    """Smallest image side (pixels) a dynamic-size sweep graph runs at: one more than the sweep's widest border
    (:meth:`model.defocus_sweep.SweepConfig.max_pad_px`; ONNX reflect padding cannot exceed the image)."""
    from model.defocus_sweep import SweepConfig

    return (config or SweepConfig()).max_pad_px() + 1


def sweep_record(config: Any, working_range_m: tuple[float, float], dynamic_size: bool) -> dict[str, Any]:
    """The ``sweep`` metadata entry of an export with the sweep in its graph."""
    return {"config": asdict(config), "working_range_m": [float(working_range_m[0]), float(working_range_m[1])],
            "min_image_side_px": sweep_min_image_side(config) if dynamic_size else 0,
            "module": "model.defocus_sweep.SweepLayer"}


def _check_size(model: Any, size: tuple[int, int]) -> None:
    multiple = model.net.multiple
    if min(size) < multiple:
        raise ValueError(f"image size {size[0]}x{size[1]} is smaller than the network's minimum {multiple}x{multiple}")


def _fix_ir_version(model: Any) -> None:
    import onnx

    if model.ir_version > MAX_IR_VERSION:
        needed = onnx.helper.find_min_ir_version_for(list(model.opset_import), ignore_unknown=True)
        model.ir_version = max(int(needed), 8) if needed <= MAX_IR_VERSION else model.ir_version
    if model.ir_version > MAX_IR_VERSION:
        raise ValueError(f"the exported model needs ONNX IR version {model.ir_version}, which onnxruntime-extensions "
                         f"refuses (max {MAX_IR_VERSION}); use a lower --opset")


def torch_to_onnx(
    loaded: Any,
    out: str | Path,
    *,
    graph: str = "physics",
    target: str = "both",
    image_size: tuple[int, int] = (320, 240),
    dynamic_size: bool = False,
    stack_size: int | None = None,
    dynamic_stack: bool = False,
    opset: int = MIN_OPSET,
    psf_radius: int | None = None,
    sweep: Any = None,
) -> dict[str, Path]:
    """Trace a loaded checkpoint into ONNX and write it (atomically) with its metadata.

    Args:
        loaded: a :class:`model.checkpoint.LoadedModel`.
        out: the ``.onnx`` file (see :func:`export.targets.flavour_paths` for the TensorRT flavour's name).
        graph: ``"physics"`` or ``"net"``.
        target: ``"onnxruntime"``, ``"tensorrt"`` or ``"both"``.
        image_size: ``(W, H)`` traced (fixed unless ``dynamic_size``).
        dynamic_size: H and W dynamic.
        stack_size: frames (``None``: ``len(loaded.focus_m)``), fixed unless ``dynamic_stack``.
        dynamic_stack: S dynamic.
        opset: default-domain opset.
        psf_radius: GaussPSF radius for the physics graph (required there).
        sweep: a :class:`model.defocus_sweep.SweepConfig` to refine ``depth_m`` in the graph by the sweep
            (over the network's working range); ``None``: the network's depth. Needs a fixed stack size.

    Returns:
        ``{flavour: path}`` of the files written.
    """
    import onnx
    import torch

    from export.physics_graph import ExportModule
    from model.atomic import atomic_write_bytes
    from model.confidence import ConfidenceConfig

    check_choice("graph", graph, GRAPHS)
    paths = flavour_paths(out, target, graph)
    if graph == "physics" and psf_radius is None:
        raise ValueError("the physics graph needs psf_radius")
    _check_size(loaded, image_size)
    s = int(stack_size or len(loaded.focus_m))
    if s < 2:
        raise ValueError(f"a focal stack needs at least 2 frames, got {s}")
    w, h = image_size
    if sweep is not None and dynamic_stack:
        raise ValueError("the sweep needs a fixed stack size (its frame pairs are unrolled in the graph)")
    if sweep is not None and dynamic_size and min(w, h) < sweep_min_image_side(sweep):
        raise ValueError(f"a dynamic-size sweep graph must be traced at sides of at least {sweep_min_image_side(sweep)} "
                         f"pixels, got {w}x{h}")
    confidence = ConfidenceConfig()
    sweep_range = loaded.net.working_range_m()
    module = ExportModule(loaded.net.eval(), loaded.lens, psf_radius if graph == "physics" else None, confidence,
                          sweep=sweep, working_range_m=sweep_range).eval()
    images = torch.rand(1, s, 3, h, w, generator=torch.Generator().manual_seed(0))
    focus = torch.tensor([focus_for_stack(loaded.focus_m, s)], dtype=torch.float32)
    outputs = list(PHYSICS_OUTPUTS if graph == "physics" else NET_OUTPUTS)
    dyn: dict[str, dict[int, str]] = {}
    if dynamic_stack or dynamic_size:
        img_axes = ({1: "stack"} if dynamic_stack else {}) | ({3: "height", 4: "width"} if dynamic_size else {})
        hw = {2: "height", 3: "width"} if dynamic_size else {}
        dyn = {"images": img_axes, "aif": hw, "depth_m": hw}
        if dynamic_stack:
            dyn["focus_m"] = {1: "stack"}
        if graph == "physics":
            dyn |= {"confidence": hw, "residual": hw,
                    "rendered": ({1: "stack"} if dynamic_stack else {}) | ({3: "height", 4: "width"} if dynamic_size else {})}
        dyn = {k: v for k, v in dyn.items() if v}
    buf = io.BytesIO()
    with warnings.catch_warnings():
        # The legacy (TorchScript) exporter is the one that supports a custom-op symbolic without onnxscript;
        # DAIFNet's own padding branch is frozen by the trace, which is why ExportModule pads in the graph.
        warnings.simplefilter("ignore")
        with torch.no_grad():
            torch.onnx.export(module, (images, focus), buf, dynamo=False, opset_version=int(opset),
                              input_names=list(INPUT_NAMES), output_names=outputs, dynamic_axes=dyn or None,
                              custom_opsets={ORT_DOMAIN: 1} if graph == "physics" else None,
                              do_constant_folding=True)
    base = onnx.load_from_string(buf.getvalue())
    _fix_ir_version(base)
    near, far = loaded.net.config.near_m, loaded.net.config.far_m
    checkpoint = {"path": str(loaded.path) if loaded.path else None,
                  "sha256": sha256_file(loaded.path) if loaded.path and Path(loaded.path).is_file() else None,
                  "step": int(getattr(loaded, "step", 0))}
    written: dict[str, Path] = {}
    for flavour, path in paths.items():
        model = to_tensorrt_flavour(base) if flavour == "tensorrt" else base
        psf = None
        if graph == "physics":
            from export.psf_ext import PLUGIN_NAMESPACE, PLUGIN_VERSION
            from model.render import MIN_SIGMA_PX

            psf = {"op_type": "GaussPSF", "domain": "" if flavour == "tensorrt" else ORT_DOMAIN,
                   "radius": int(psf_radius), "min_sigma_px": MIN_SIGMA_PX,
                   "plugin_version": PLUGIN_VERSION, "plugin_namespace": PLUGIN_NAMESPACE}
        props = onnx_props(
            graph=graph, target=flavour, lens=loaded.lens, focus_m=list(loaded.focus_m), working_range_m=(near, far),
            stack_size=None if dynamic_stack else s, image_size=None if dynamic_size else (w, h),
            example_stack_size=s, example_image_size=(w, h), size_multiple=loaded.net.multiple,
            network=asdict(loaded.net.config), checkpoint=checkpoint, opset=int(opset), psf=psf,
            confidence=asdict(confidence) if graph == "physics" else None,
            sweep=sweep_record(sweep, sweep_range, dynamic_size) if sweep is not None else None)
        del model.metadata_props[:]
        onnx.helper.set_model_props(model, props)
        model.producer_name, model.producer_version = "daif-depth export", props["package_version"]
        if flavour != "tensorrt":
            onnx.checker.check_model(model)
        atomic_write_bytes(path, model.SerializeToString())
        written[flavour] = path
        log.info("wrote %s (%s flavour)", path, flavour)
    return written


def focus_for_stack(focus_m: list[float] | tuple[float, ...], s: int) -> list[float]:
    """``s`` focus distances: the model's own when ``s`` matches, else spread evenly in dioptres over its span."""
    fm = sorted(float(f) for f in focus_m)
    if s == len(fm):
        return fm
    inv = np.linspace(1.0 / fm[0], 1.0 / fm[-1], s)
    return [float(1.0 / v) for v in inv]


_focus_for = focus_for_stack  # the former private name, for callers not moved yet


# --------------------------------------------------------------------------------------------------
# Check stack


def reference_stack(lens: Any, focus_m: list[float], size: tuple[int, int], working_range_m: tuple[float, float],
                    folder: str | Path | None = None) -> tuple[np.ndarray, np.ndarray, str]:
    """A real focal stack to check an export on: ``(images (S, H, W, 3) float32, focus_m (S,), description)``.

    ``folder``: a ``focal-stack/1`` folder; the frames nearest to ``focus_m`` are used, resized to ``size``.
    Otherwise the Middlebury 2014 Motorcycle photograph with its measured depth (scikit-image) is cropped to
    ``size = (W, H)`` and rendered through ``lens`` at ``focus_m`` (layered disc PSF).
    """
    import cv2

    from model.synth.rgbd import crop_resize

    s = len(focus_m)
    if folder is not None:
        from model.formats import read_stack

        stack = read_stack(folder)
        have = np.asarray(stack.focus_m, dtype=np.float64)
        if len(have) < s:
            raise ValueError(f"{folder}: {len(have)} frames, the export needs {s}")
        picked: list[int] = []
        for f in focus_m:
            order = np.argsort(np.abs(1.0 / have - 1.0 / f))
            picked.append(int(next(i for i in order if i not in picked)))
        picked.sort(key=lambda i: have[i])
        images = np.stack([crop_resize(stack.images[i], None, size, align="floor", interpolation=cv2.INTER_AREA)[0]
                           for i in picked])
        desc = f"focal-stack/1 folder {folder} (frames at {', '.join(f'{have[i]:g}' for i in picked)} m)"
        return np.clip(images, 0.0, 1.0), have[picked].astype(np.float32), desc
    from model.synth.layered import fill_unknown_depth, render_stack_layered
    from model.synth.rgbd import motorcycle_rgbd

    rgb, depth = motorcycle_rgbd()
    aif, d = crop_resize(rgb, depth, size, align="floor", interpolation=cv2.INTER_AREA)
    d = fill_unknown_depth(d)
    near, far = working_range_m
    d = np.clip(d, max(near, 1.5 * lens.focal_length_m) * 1.05, far * 0.95).astype(np.float32)
    images = render_stack_layered(aif, d, list(focus_m), lens)
    desc = (f"Middlebury 2014 Motorcycle (scikit-image, measured depth {d.min():.2f}-{d.max():.2f} m) rendered "
            f"at {', '.join(f'{f:g}' for f in focus_m)} m through lens {lens.name!r}")
    return images.astype(np.float32), np.asarray(focus_m, np.float32), desc


# --------------------------------------------------------------------------------------------------
# Check


def _max_abs(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))


def check_onnx(path: str | Path, loaded: Any, images: np.ndarray, focus_m: np.ndarray, *,
               description: str = "", threads: int | None = None, psf_backend: str = "auto") -> dict[str, Any]:
    """Run an exported file in onnxruntime and the checkpoint in PyTorch on one stack; compare.

    ``images (S, H, W, 3)`` float32 in [0, 1], ``focus_m (S,)`` metres. For the physics graph the PyTorch side
    is :func:`model.confidence.physics_check` with the graph's window radius (when the data would call for a
    smaller window than the exported one, the same renderer with the exported radius is used, and the report
    says so).

    Returns a report: max/mean absolute differences (depth in metres), the tolerances, ``passed`` and the
    run times of that single run.
    """
    import torch

    from export.runtime import OnnxRunner
    from model.confidence import ConfidenceConfig, confidence_from_residual, physics_check
    from model.optics import defocus_sigma_map
    from model.render import psf_window_radius, render_stack

    runner = OnnxRunner(path, with_confidence=False, threads=threads, psf_backend=psf_backend)
    info = runner.info
    t0 = time.perf_counter()
    pred = runner.predict(images, focus_m)
    t_ort = time.perf_counter() - t0
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).unsqueeze(0)
    f = torch.from_numpy(np.asarray(focus_m, np.float32)).unsqueeze(0)
    t0 = time.perf_counter()
    with torch.inference_mode():
        out = loaded.net(x, f)
        depth_ref = out.depth_m
        if info.sweep is not None:  # the graph's sweep, run as model.predict --sweep runs it (chunked, in place)
            from model.defocus_sweep import SweepConfig, SweepLayer, lens_tensor

            layer = SweepLayer(SweepConfig(**info.sweep["config"]))
            depth_ref = layer(x, f, lens_tensor(loaded.lens), out.depth_m,
                              torch.tensor([info.sweep["working_range_m"]], dtype=torch.float32))
        chk = None
        note = None
        if info.has_confidence:
            r = int(info.psf_radius)
            data_r = psf_window_radius(float(defocus_sigma_map(depth_ref, f, loaded.lens).max()))
            if data_r >= r:
                chk = physics_check(x, f, out.aif, depth_ref, loaded.lens, max_radius=r)
                note = f"model.confidence.physics_check(max_radius={r})"
            else:
                sigma = defocus_sigma_map(depth_ref, f, loaded.lens)
                rendered = render_stack(out.aif, sigma, radius=r)
                res, conf = confidence_from_residual(x, rendered, ConfidenceConfig())
                chk = type("Chk", (), {"residual": res, "confidence": conf})()
                note = (f"physics_check would pick a radius-{data_r} window for this stack; the reference uses its "
                        f"renderer and confidence_from_residual with the exported radius {r}")
    t_torch = time.perf_counter() - t0
    depth_t = depth_ref[0, 0].numpy()
    aif_t = out.aif[0].permute(1, 2, 0).numpy()
    report: dict[str, Any] = {
        "file": str(path), "graph": info.graph, "stack": description, "shape": list(images.shape),
        "focus_m": [float(v) for v in focus_m], "tolerances": dict(TOLERANCES),
        "depth_max_abs_m": _max_abs(pred.depth_m, depth_t),
        "depth_mean_abs_m": float(np.mean(np.abs(pred.depth_m.astype(np.float64) - depth_t))),
        "aif_max_abs": _max_abs(pred.aif, aif_t),
        "onnxruntime_s": round(t_ort, 4), "torch_s": round(t_torch, 4),
    }
    agree = np.ones(depth_t.shape, bool)
    depth_ok = report["depth_max_abs_m"] <= TOLERANCES["depth_m"]
    if info.sweep is not None:
        agree = np.abs(pred.depth_m.astype(np.float64) - depth_t) <= TOLERANCES["depth_m"]
        ratio = np.abs(np.log(np.maximum(pred.depth_m, 1e-9) / np.maximum(depth_t, 1e-9)))
        report["depth_beyond_tolerance_fraction"] = float(1.0 - agree.mean())
        report["depth_max_log_ratio"] = float(ratio.max())
        band = 2.0 * math.log(float(info.sweep["config"]["band"]))
        depth_ok = report["depth_beyond_tolerance_fraction"] <= SWEEP_TIE_FRACTION and report["depth_max_log_ratio"] <= band
        if not agree.all() and info.psf_radius is not None:  # a re-rendered pixel sees its neighbours' blur
            import cv2

            reach = 2 * (int(info.psf_radius) + 1) + 1
            agree = cv2.erode(agree.astype(np.uint8), np.ones((reach, reach), np.uint8)).astype(bool)
    ok = depth_ok and report["aif_max_abs"] <= TOLERANCES["aif"]
    if chk is not None:
        report["psf_radius"] = info.psf_radius
        report["psf_backend"] = runner.psf_backend
        report["physics_reference"] = note
        if agree.any():
            report["residual_max_abs"] = _max_abs(pred.residual[agree], chk.residual[0, 0].numpy()[agree])
            report["confidence_max_abs"] = _max_abs(pred.confidence[agree], chk.confidence[0, 0].numpy()[agree])
            ok = ok and report["residual_max_abs"] <= TOLERANCES["residual"] \
                and report["confidence_max_abs"] <= TOLERANCES["confidence"]
        else:  # the ties' reach covers the whole (small) image: depth decides
            report["physics_reference"] += "; not compared: no pixel lies beyond the re-rendering reach of a tie"
    report["passed"] = bool(ok and all(math.isfinite(v) for v in report.values() if isinstance(v, float)))
    return report


def _load_model(checkpoint: Path | None) -> Any:
    from model.checkpoint import load_checkpoint

    return load_checkpoint(checkpoint)


def export_onnx(config: OnnxExportConfig, loaded: Any = None) -> ExportResult:
    """Validate ``config``, export, check and write the metadata files. ``loaded`` overrides the checkpoint.

    Raises ``ValueError``/``FileNotFoundError`` for bad options (before any work), and
    :class:`ExportCheckError` after writing everything when onnxruntime disagrees with PyTorch.
    """
    config.validate()
    if loaded is None:
        loaded = _load_model(config.checkpoint)
    size = config.image_size or (tuple(loaded.lens.image_size) if loaded.lens.image_size else (320, 240))
    notes: list[str] = []
    if loaded.lens.image_size and tuple(loaded.lens.image_size) != tuple(size):
        notes.append(f"exporting at {size[0]}x{size[1]} but the lens profile's pixel pitch is for "
                     f"{loaded.lens.image_size[0]}x{loaded.lens.image_size[1]}: the physics check uses it unchanged, "
                     "as the PyTorch runner does")
    near, far = loaded.net.config.near_m, loaded.net.config.far_m
    s = int(config.stack_size or len(loaded.focus_m))
    radius = None
    if config.graph == "physics":
        from export.physics_graph import default_psf_radius

        radius = int(config.psf_radius) if config.psf_radius is not None else default_psf_radius(
            loaded.lens, list(loaded.focus_m), near, far, cap=int(config.max_psf_radius))
    sweep = None
    if config.sweep:
        from model.defocus_sweep import SweepConfig

        sweep = SweepConfig()
        if config.dynamic_size and min(size) < sweep_min_image_side(sweep):
            raise ValueError(f"--sweep with --dynamic-size is traced at {size[0]}x{size[1]}, but needs both sides of at "
                             f"least {sweep_min_image_side(sweep)} pixels there; pass a larger --size")
    files = torch_to_onnx(loaded, config.out, graph=config.graph, target=config.target, image_size=tuple(size),
                          dynamic_size=config.dynamic_size, stack_size=s, dynamic_stack=config.dynamic_stack,
                          opset=config.opset, psf_radius=radius, sweep=sweep)
    check: dict[str, Any] | None = None
    if config.check:
        runnable = files.get("onnxruntime") or files.get("any")
        if runnable is None:
            check = {"passed": None, "skipped": "only the TensorRT flavour was written; onnxruntime cannot run it "
                     "(export with --target both to check)"}
        else:
            images, focus, desc = reference_stack(loaded.lens, focus_for_stack(loaded.focus_m, s), tuple(size), (near, far),
                                                  config.check_stack)
            check = check_onnx(runnable, loaded, images, focus, description=desc, threads=config.threads,
                               psf_backend=config.psf_backend)
            extra = []
            m = loaded.net.multiple
            if config.dynamic_size:
                h2, w2 = images.shape[1] - (m // 2 + 1), images.shape[2] - (m // 2 + 3)
                if min(h2, w2) >= m:
                    extra.append(check_onnx(runnable, loaded, np.ascontiguousarray(images[:, :h2, :w2]), focus,
                                            description=desc + f", cropped to {w2}x{h2}", threads=config.threads,
                                            psf_backend=config.psf_backend))
            if config.dynamic_stack and s > 2:
                extra.append(check_onnx(runnable, loaded, images[:-1], focus[:-1], description=desc + ", last frame "
                                        "dropped", threads=config.threads, psf_backend=config.psf_backend))
            if extra:
                check["dynamic_checks"] = extra
                check["passed"] = bool(check["passed"] and all(e["passed"] for e in extra))
    meta_files: dict[str, Path] = {}
    for flavour, path in files.items():
        from export.metadata import read_onnx_info

        info = read_onnx_info(path)
        record = {"format": "daif-onnx-export/1", "file": path.name, "sha256": sha256_file(path),
                  "flavour": flavour, "metadata": dict(info.props),
                  "check": check if flavour != "tensorrt" else
                  {"passed": check.get("passed") if check else None,
                   "note": "checked through the onnxruntime flavour; this file differs only in the GaussPSF "
                           "node's domain and plugin attributes", "onnxruntime_flavour": str(files.get("onnxruntime"))},
                  "other_files": {k: str(v) for k, v in files.items() if k != flavour}, "notes": notes}
        meta_files[flavour] = write_sidecar(path, record)
    result = ExportResult(files=files, metadata_files=meta_files, psf_radius=radius, check=check, notes=notes)
    if check is not None and check.get("passed") is False:
        raise ExportCheckError(
            f"onnxruntime disagrees with PyTorch beyond the tolerances: {format_check(check)}; the files were "
            f"written and the report is in {next(iter(meta_files.values()))}")
    return result


def format_check(check: Mapping[str, Any]) -> str:
    """One line summarising a check report."""
    if check.get("skipped"):
        return f"check skipped: {check['skipped']}"
    parts = [f"depth max |diff| {check['depth_max_abs_m'] * 1e3:.4f} mm (tol {TOLERANCES['depth_m'] * 1e3:g} mm)",
             f"AIF max |diff| {check['aif_max_abs']:.2e} (tol {TOLERANCES['aif']:g})"]
    if "depth_beyond_tolerance_fraction" in check:
        parts.insert(1, f"swept depth beyond it at {check['depth_beyond_tolerance_fraction'] * 100:.3f} % of pixels "
                        f"(allowed {SWEEP_TIE_FRACTION * 100:g} %: argmin near-ties)")
    if "residual_max_abs" in check:
        parts += [f"residual {check['residual_max_abs']:.2e} (tol {TOLERANCES['residual']:g})",
                  f"confidence {check['confidence_max_abs']:.2e} (tol {TOLERANCES['confidence']:g})"]
    verdict = "PASSED" if check.get("passed") else "FAILED"
    return f"{verdict}: " + ", ".join(parts)
