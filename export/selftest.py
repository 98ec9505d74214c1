"""``python -m export selftest``: check the whole deployment chain on this machine and say what was skipped.

Steps (each reports ``ok``, ``failed`` or ``skipped`` with the reason):

1. ``plugin build``        - CMake + nvcc build of the GaussPSF TensorRT plugin and CPU library (cached).
2. ``plugin host check``   - the kernel's per-pixel code on the CPU (``libgausspsf_host.so``) against
                             ``model.render.gauss_psf``.
3. ``plugin registry``     - TensorRT (full or lean runtime) loads the plugin and lists creator GaussPSF v1.
4. ``onnx export``         - the physics graph exported (both flavours) and checked in onnxruntime against
                             PyTorch on a real stack (depth within 1 mm, AIF within 1e-3, confidence).
5. ``onnxruntime latency`` - median latency of the onnxruntime runner (CPU), which GaussPSF op it used (the
                             native C++ op, or the Python fallback and why), and PyTorch eager on the same
                             stack and threads for comparison.
6. ``engine build``        - the TensorRT engine (needs TensorRT's builder, a GPU and the plugin).
7. ``tensorrt check``      - TensorRT against onnxruntime on the same stack, and the engine's median latency.

On a machine without a GPU or a TensorRT builder, steps 6-7 are skipped with the reason; on the Jetson all
seven run. A missing shipped checkpoint is replaced by an untrained network of the default architecture
(this tests the toolchain, not the weights), and the report says so.
"""

from __future__ import annotations

import logging
import statistics
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

__all__ = ["SelftestConfig", "Step", "run_selftest", "format_steps", "load_or_untrained"]

log = logging.getLogger(__name__)


@dataclass
class SelftestConfig:
    """Options of ``python -m export selftest``.

    Attributes:
        checkpoint: the model (``None``: the shipped default, else an untrained default-architecture net).
        workdir: where the ONNX files and the engine go (``None``: a new temporary folder).
        image_size: ``(W, H)`` (``None``: the lens profile's size).
        precision: engine precision (``fp32``/``fp16``; INT8 needs calibration data, see ``export engine``).
        cuda_archs: plugin CUDA architectures (``None``: this GPU's, else ``87``, Jetson Orin).
        build_plugin: build the plugin (needs cmake, nvcc, TensorRT headers).
        plugin: use this plugin library instead of building one.
        repeats: timed runs for the latency medians.
        max_psf_radius: cap of the physics graph's PSF window.
        threads: onnxruntime intra-op threads.
    """

    checkpoint: Path | None = None
    workdir: Path | None = None
    image_size: tuple[int, int] | None = None
    precision: str = "fp16"
    cuda_archs: str | None = None
    build_plugin: bool = True
    plugin: Path | None = None
    repeats: int = 5
    max_psf_radius: int = 32
    threads: int | None = None

    def validate(self) -> None:
        if self.precision not in ("fp32", "fp16"):
            raise ValueError(f"selftest builds fp32 or fp16 engines, got {self.precision!r} "
                             "(INT8 needs calibration stacks: python -m export engine --precision int8 --calib DIR)")
        if self.repeats < 1:
            raise ValueError(f"repeats must be >= 1, got {self.repeats}")
        if self.plugin is not None and not Path(self.plugin).is_file():
            raise FileNotFoundError(f"{self.plugin}: plugin library not found")
        if self.checkpoint is not None and not Path(self.checkpoint).is_file():
            raise FileNotFoundError(f"{self.checkpoint}: checkpoint not found")


@dataclass
class Step:
    """One selftest step: ``status`` is ``ok``, ``failed`` or ``skipped``; ``detail`` says what or why."""

    name: str
    status: str
    detail: str
    seconds: float = 0.0
    data: dict[str, Any] = field(default_factory=dict)


def median_ms(fn: Callable[[], Any], repeats: int) -> float:
    """Median wall time of ``fn()`` over ``repeats`` calls after one warm-up call, milliseconds."""
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times)


def load_or_untrained(checkpoint: Path | None) -> tuple[Any, str | None]:
    """The checkpoint (``None``: the shipped one), or an untrained DAIF-Net of the default architecture with the
    shipped lens when the shipped checkpoint is missing. Returns ``(LoadedModel, note or None)``."""
    from model.checkpoint import LoadedModel, default_checkpoint_path, load_checkpoint

    if checkpoint is not None or default_checkpoint_path().is_file():
        return load_checkpoint(checkpoint), None
    from model.checkpoint import default_lens_path
    from model.lens import LensProfile
    from model.network import DAIFNet, NetConfig

    lens = LensProfile.load(default_lens_path())
    net = DAIFNet(NetConfig()).eval()
    note = (f"the shipped checkpoint {default_checkpoint_path()} is missing: using an untrained DAIF-Net of the "
            "default architecture (checks the toolchain, not the weights)")
    return LoadedModel(net=net, lens=lens, focus_m=[1.0, 1.5, 2.5, 4.0, 6.0], path=None), note


_load_or_untrained = load_or_untrained  # the former private name, for callers not moved yet


def _installed_trt_major(trt: Any) -> int:
    """Major version of the given or installed full ``tensorrt`` (0 when there is none)."""
    if trt is None:
        try:
            import tensorrt as trt  # type: ignore[import-not-found, no-redef]
        except ImportError:
            return 0
    try:
        return int(str(trt.__version__).split(".")[0])
    except (AttributeError, ValueError):
        return 0


def run_selftest(config: SelftestConfig, *, trt: Any = None, cuda: Any = None,
                 progress: Callable[[Step], None] | None = None) -> list[Step]:
    """Run the steps of the module docstring; returns them (never raises for a failed step).

    ``trt`` / ``cuda`` override the ``tensorrt`` module and the CUDA backend (tests pass fakes).
    """
    config.validate()
    steps: list[Step] = []
    state: dict[str, Any] = {}
    workdir = Path(config.workdir) if config.workdir else Path(tempfile.mkdtemp(prefix="daif-selftest-"))
    workdir.mkdir(parents=True, exist_ok=True)

    def record(step: Step) -> None:
        steps.append(step)
        if progress is not None:
            progress(step)

    def run(name: str, fn: Callable[[], tuple[str, str] | tuple[str, str, dict[str, Any]]]) -> None:
        t0 = time.perf_counter()
        try:
            out = fn()
        except Exception as e:  # noqa: BLE001 - a selftest reports, it does not stop
            log.debug("selftest step %s failed:\n%s", name, traceback.format_exc())
            record(Step(name, "failed", f"{type(e).__name__}: {e}", time.perf_counter() - t0))
            return
        status, detail = out[0], out[1]
        data = out[2] if len(out) > 2 else {}  # type: ignore[misc]
        record(Step(name, status, detail, time.perf_counter() - t0, data))

    from export import psf_ext

    # ------------------------------------------------------------------ 1. plugin build
    gpu = None
    if cuda is not None:
        gpu = cuda.device_info()
    else:
        try:
            from export.cuda_backend import open_cuda

            probe = open_cuda()
            gpu = probe.device_info()
            probe.close()
        except Exception as e:  # noqa: BLE001 - no GPU is a normal answer here
            state["no_gpu"] = str(e).split(". What works")[0]
    archs = config.cuda_archs or (gpu.compute_capability.replace(".", "") if gpu else "87")

    def plugin_build() -> tuple[str, str]:
        if config.plugin is not None:
            state["plugin"] = Path(config.plugin)
            return "skipped", f"using the given library {config.plugin}"
        if not config.build_plugin:
            return "skipped", "--no-plugin given"
        missing = psf_ext.missing_build_tools(plugin=True)
        if missing:
            return "skipped", "cannot build the plugin here, missing: " + "; ".join(missing)
        if _installed_trt_major(trt) in range(1, 10):  # TensorRT 8 (JetPack 5): the IPluginV2DynamicExt variant
            build_dir = psf_ext.build(psf_ext.BuildConfig(plugin=False, host=True, trt8=True, cuda_archs=archs))
            path = build_dir / psf_ext.PLUGIN_LIBRARY_TRT8
        else:
            path = psf_ext.build_plugin(cuda_archs=archs)
        state["plugin"] = path
        return "ok", f"{path} (CUDA archs {archs})"

    run("plugin build", plugin_build)

    # ------------------------------------------------------------------ 2. host check
    def host_check() -> tuple[str, str]:
        import torch

        from model.render import gauss_psf

        missing = psf_ext.missing_build_tools(plugin=False)
        if missing and "plugin" not in state:
            return "skipped", "cannot build the CPU library here, missing: " + "; ".join(missing)
        beside = state["plugin"].parent / psf_ext.HOST_LIBRARY if "plugin" in state else None
        lib = psf_ext.load_host_library(beside if beside is not None and beside.is_file() else None)
        rng = np.random.default_rng(0)
        image = rng.random((2, 3, 24, 32), dtype=np.float32)
        sigma = (rng.random((2, 1, 24, 32)) * 3.0).astype(np.float32)
        radius = 9
        host = psf_ext.host_gauss_psf(image, sigma, radius, lib=lib)
        ref = gauss_psf(torch.from_numpy(image), torch.from_numpy(sigma), radius).numpy()
        err = float(np.abs(host - ref).max())
        status = "ok" if err < 1e-5 else "failed"
        return status, f"libgausspsf_host vs model.render.gauss_psf: max |diff| {err:.1e} (tol 1e-5)"

    run("plugin host check", host_check)

    # ------------------------------------------------------------------ 3. registry
    def registry() -> tuple[str, str]:
        if "plugin" not in state:
            return "skipped", "no plugin library was built"
        module = trt
        if module is None:
            try:
                import tensorrt as module  # type: ignore[import-not-found, no-redef]
            except ImportError:
                try:
                    import tensorrt_lean as module  # type: ignore[import-not-found, no-redef]
                except ImportError:
                    return "skipped", "neither tensorrt nor tensorrt_lean is installed"
        from export.runtime import load_plugin_library

        creator = load_plugin_library(module, state["plugin"])
        fields = [getattr(f, "name", f) for f in getattr(creator, "field_names", None) or []]
        return "ok", (f"{getattr(module, '__name__', 'tensorrt')} {module.__version__} loaded {state['plugin'].name}: "
                      f"creator GaussPSF v1{' fields ' + ', '.join(str(f) for f in fields) if fields else ''}")

    run("plugin registry", registry)

    # ------------------------------------------------------------------ 4. ONNX export + check
    def onnx_step() -> tuple[str, str, dict[str, Any]]:
        from export.onnx_export import OnnxExportConfig, export_onnx, format_check

        loaded, note = load_or_untrained(config.checkpoint)
        state["loaded"] = loaded
        cfg = OnnxExportConfig(out=workdir / "daifnet.onnx", checkpoint=config.checkpoint, image_size=config.image_size,
                               max_psf_radius=config.max_psf_radius, threads=config.threads)
        result = export_onnx(cfg, loaded=loaded)
        state["onnx"] = result.files
        state["check"] = result.check
        detail = format_check(result.check or {"skipped": "no check"})
        if note:
            detail += f" [{note}]"
        return ("ok" if result.check and result.check.get("passed") else "failed"), detail, {"check": result.check}

    run("onnx export", onnx_step)

    # ------------------------------------------------------------------ 5. onnxruntime latency
    def ort_latency() -> tuple[str, str, dict[str, Any]]:
        if "onnx" not in state:
            return "skipped", "no ONNX file", {}
        from export.onnx_export import reference_stack
        from export.runtime import OnnxRunner

        runner = OnnxRunner(state["onnx"]["onnxruntime"], threads=config.threads)
        info = runner.info
        images, focus, _ = reference_stack(info.lens, list(info.focus_m), info.example_image_size, info.working_range_m)
        state["stack"] = (images, focus)
        ms = median_ms(lambda: runner.predict(images, focus), config.repeats)
        s, h, w = images.shape[:3]
        detail = (f"{ms:.1f} ms median over {config.repeats} runs ({s}x{h}x{w}, CPU, physics graph, GaussPSF "
                  f"{'native op' if runner.psf_backend == 'native' else 'Python op (' + str(runner.psf_backend) + ')'})")
        extra: dict[str, Any] = {"median_ms": ms, "psf_backend": runner.psf_backend}
        if "loaded" in state:
            import torch

            from model.confidence import physics_check

            loaded = state["loaded"]
            x = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2))).unsqueeze(0)
            f = torch.from_numpy(np.asarray(focus, np.float32)).unsqueeze(0)

            def torch_eager() -> None:  # what the PyTorch runner computes, on the CPU, same window
                with torch.inference_mode():
                    out = loaded.net(x, f)
                    physics_check(x, f, out.aif, out.depth_m, loaded.lens, max_radius=info.psf_radius)

            threads_before = torch.get_num_threads()
            if config.threads is not None:
                torch.set_num_threads(int(config.threads))
            try:
                t_ms = median_ms(torch_eager, config.repeats)
            finally:
                torch.set_num_threads(threads_before)
            detail += f"; PyTorch eager {t_ms:.1f} ms, ratio {t_ms / ms:.2f}"
            extra["torch_median_ms"] = t_ms
        return "ok", detail, extra

    run("onnxruntime latency", ort_latency)

    # ------------------------------------------------------------------ 6. engine build
    def engine_step() -> tuple[str, str]:
        from export.engine import EngineConfig, import_tensorrt_builder, onnx_to_engine
        from export.errors import RuntimeUnavailableError

        if "onnx" not in state:
            return "skipped", "no ONNX file"
        module = trt
        if module is None:
            try:
                module = import_tensorrt_builder()
            except RuntimeUnavailableError as e:
                reason = str(e).split(". What works")[0]
                if gpu is None and cuda is None:
                    reason += f"; and no GPU: {state.get('no_gpu', 'CUDA unavailable')}"
                return "skipped", reason
        if cuda is None and gpu is None:
            return "skipped", f"no GPU: {state.get('no_gpu', 'CUDA unavailable')}"
        if "plugin" not in state:
            return "skipped", "the physics engine needs the GaussPSF plugin, which was not built"
        cfg = EngineConfig(onnx=state["onnx"]["tensorrt"], out=workdir / "daifnet.engine", precision=config.precision,
                           plugin=state["plugin"])
        result = onnx_to_engine(cfg, trt=module, cuda=cuda)
        state["engine"] = result.engine
        state["trt"] = module
        return "ok", f"{result.engine} ({config.precision}, {result.build_s:.0f} s); trtexec equivalent: {result.trtexec}"

    run("engine build", engine_step)

    # ------------------------------------------------------------------ 7. TensorRT vs onnxruntime
    def trt_check() -> tuple[str, str, dict[str, Any]]:
        if "engine" not in state:
            return "skipped", "no engine was built", {}
        from export.runtime import OnnxRunner, TensorRTRunner

        images, focus = state["stack"]
        runner = TensorRTRunner(state["engine"], trt=state["trt"], cuda=cuda, plugin=state["plugin"])
        try:
            ref = OnnxRunner(state["onnx"]["onnxruntime"], threads=config.threads).predict(images, focus)
            got = runner.predict(images, focus)
            diff = np.abs(got.depth_m.astype(np.float64) - ref.depth_m)
            rel = diff / np.maximum(ref.depth_m, 1e-6)
            conf = float(np.abs(got.confidence - ref.confidence).max()) if got.confidence is not None else float("nan")
            ms = median_ms(lambda: runner.predict(images, focus), config.repeats)
        finally:
            runner.close()
        if config.precision == "fp32":
            ok = float(diff.max()) <= 1e-3
            crit = "max depth diff <= 1 mm"
        else:
            ok = float(np.median(rel)) <= 0.01
            crit = "median relative depth diff <= 1% (reduced precision)"
        detail = (f"depth max |diff| {diff.max() * 1e3:.2f} mm, median {np.median(diff) * 1e3:.2f} mm, median rel "
                  f"{np.median(rel) * 100:.3f}%; confidence max |diff| {conf:.2e}; criterion: {crit}; "
                  f"latency {ms:.1f} ms median over {config.repeats} runs (GPU, with host<->device copies)")
        return ("ok" if ok else "failed"), detail, {"median_ms": ms, "depth_max_abs_m": float(diff.max())}

    run("tensorrt check", trt_check)
    return steps


def format_steps(steps: list[Step]) -> str:
    """The selftest report as text: one line per step, then a summary."""
    width = max(len(s.name) for s in steps)
    lines = [f"{s.name:<{width}}  {s.status.upper():<7}  {s.detail}  ({s.seconds:.1f} s)" for s in steps]
    counts = {k: sum(1 for s in steps if s.status == k) for k in ("ok", "failed", "skipped")}
    lines.append(f"{counts['ok']} ok, {counts['failed']} failed, {counts['skipped']} skipped")
    if counts["skipped"]:
        lines.append("skipped steps need what their line names; see docs/export.md for what only a Jetson can verify")
    return "\n".join(lines)
