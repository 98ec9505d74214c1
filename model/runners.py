"""One interface for every runtime: PyTorch here, onnxruntime and TensorRT in :mod:`export.runtime`.

A runner takes a focal stack as NumPy ``(S, H, W, 3)`` float32 in [0, 1] with its focus distances in
metres and returns a :class:`Prediction` with metric depth, the AIF and a per-pixel confidence from the
physics check (:mod:`model.confidence`).

Runtimes are a registry: ``torch`` is built in; other packages add theirs with :func:`register_runtime`
(and may rank ``auto``'s candidates with :func:`register_auto_ranker`). ``model`` never imports them:
:func:`create_runner` loads the plugins declared under the entry-point group
:data:`RUNTIME_ENTRY_POINT_GROUP` (``pyproject.toml``; the ``export`` package declares
``export.runtime_plugin``, which registers ``onnxruntime`` and ``tensorrt``) the first time it needs a
runtime that is not registered, so imports run one way (``model`` <- ``export``).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol, Sequence, runtime_checkable

import numpy as np

from model.lens import LensProfile
from model.optics import check_focus_distances

__all__ = [
    "RunnerWrapper",
    "bind_lens",
    "Prediction",
    "Runner",
    "TorchRunner",
    "create_runner",
    "check_stack_input",
    "RUNTIMES",
    "RUNTIME_ENTRY_POINT_GROUP",
    "RuntimeFactory",
    "register_runtime",
    "register_auto_ranker",
    "registered_runtimes",
    "auto_candidates",
    "working_range_of",
]

log = logging.getLogger(__name__)
RUNTIMES: tuple[str, ...] = ("auto", "torch", "onnxruntime", "tensorrt")
"""The runtime names every command offers (``--runtime``): ``auto`` and the three runtimes of this project."""

RUNTIME_ENTRY_POINT_GROUP = "daif_depth.runtimes"
"""Entry-point group of runtime plugins: each entry names a module (or callable) that, when loaded,
calls :func:`register_runtime` for its runtimes."""


@dataclass
class Prediction:
    """What every runner returns.

    Attributes:
        depth_m: ``(H, W)`` float32 metric depth, metres.
        aif: ``(H, W, 3)`` float32 all-in-focus image in [0, 1].
        confidence: ``(H, W)`` float32 in [0, 1] from the physics check, or ``None``.
        residual: ``(H, W)`` float32 mean absolute re-rendering error, or ``None``.
        rendered: ``(S, H, W, 3)`` re-rendered stack, or ``None``.
    """

    depth_m: np.ndarray
    aif: np.ndarray
    confidence: np.ndarray | None = None
    residual: np.ndarray | None = None
    rendered: np.ndarray | None = None


@runtime_checkable
class Runner(Protocol):
    """The runtime-independent predictor interface used by ``model.predict`` and ``device``."""

    name: str
    lens: LensProfile
    focus_m: list[float]

    def predict(self, images: np.ndarray, focus_m: Sequence[float]) -> Prediction: ...


def check_stack_input(images: np.ndarray, focus_m: Sequence[float], min_size: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Validate a stack for prediction. Returns ``(images float32 (S,H,W,3), focus float32 (S,))``.

    Raises ``ValueError`` for wrong shapes, fewer than 2 frames, a count mismatch, non-finite pixels or
    focus distances that are not positive finite metres.
    """
    arr = np.asarray(images)
    if arr.ndim != 4 or arr.shape[-1] != 3:
        raise ValueError(f"images must be (S, H, W, 3), got {arr.shape}")
    if arr.shape[0] < 2:
        raise ValueError(f"a focal stack needs at least 2 images, got {arr.shape[0]}")
    if min(arr.shape[1:3]) < min_size:
        raise ValueError(f"images of {arr.shape[2]}x{arr.shape[1]} are too small (at least {min_size} pixels)")
    fm = check_focus_distances(list(np.asarray(focus_m, dtype=np.float64).reshape(-1)))
    if len(fm) != arr.shape[0]:
        raise ValueError(f"{len(fm)} focus distances for {arr.shape[0]} images")
    arr = arr.astype(np.float32, copy=False)
    if not np.all(np.isfinite(arr)):
        raise ValueError("images contain NaN or inf")
    return arr, np.asarray(fm, np.float32)


class TorchRunner:
    """PyTorch eager runner.

    Args:
        checkpoint: a checkpoint path, or ``None`` for the shipped default model.
        device: ``"cpu"``, ``"cuda"`` or ``None`` (CUDA when available).
        with_confidence: also run the physics check (re-render, residual, confidence).
        max_psf_radius: cap on the physics check's PSF window, pixels.
    """

    name = "torch"

    def __init__(
        self,
        checkpoint: str | os.PathLike[str] | None = None,
        device: str | None = None,
        with_confidence: bool = True,
        max_psf_radius: int | None = 32,
    ) -> None:
        import torch

        from model.checkpoint import load_checkpoint

        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        if self.device.type == "cuda" and not torch.cuda.is_available():  # else torch.load fails as "unreadable checkpoint"
            raise ValueError(f"--device {device}: CUDA is not available here (PyTorch {torch.__version__}, "
                             f"{'built without CUDA' if torch.version.cuda is None else 'no CUDA GPU found'}); use --device cpu")
        self.model = load_checkpoint(checkpoint, map_location=self.device)
        self.lens = self.model.lens
        self.model.net.set_lens(self.lens)  # lens-aware models: until bind_lens gives the stack's lens
        self.focus_m = list(self.model.focus_m)
        self.with_confidence = with_confidence
        self.max_psf_radius = max_psf_radius

    def predict(self, images: np.ndarray, focus_m: Sequence[float]) -> Prediction:
        """Predict depth, AIF and confidence for one stack ``(S, H, W, 3)`` taken at ``focus_m`` metres."""
        import torch

        from model.confidence import physics_check

        arr, fm = check_stack_input(images, focus_m)
        x = torch.from_numpy(arr).permute(0, 3, 1, 2).unsqueeze(0).to(self.device)
        f = torch.from_numpy(fm).unsqueeze(0).to(self.device)
        with torch.inference_mode():
            out = self.model.net(x, f)
            conf = res = rendered = None
            if self.with_confidence:
                chk = physics_check(x, f, out.aif, out.depth_m, self.lens, max_radius=self.max_psf_radius)
                conf = chk.confidence[0, 0].float().cpu().numpy()
                res = chk.residual[0, 0].float().cpu().numpy()
                rendered = chk.rendered[0].permute(0, 2, 3, 1).float().cpu().numpy()
        return Prediction(
            depth_m=out.depth_m[0, 0].float().cpu().numpy(),
            aif=out.aif[0].permute(1, 2, 0).float().cpu().numpy(),
            confidence=conf,
            residual=res,
            rendered=rendered,
        )


class RunnerWrapper:
    """Base of runners that post-process another runner's predictions (``model.refine``,
    ``model.defocus_sweep``): they keep its lens, focus distances, depth range and model, so
    :func:`bind_lens` and :func:`working_range_of` see through them. Subclasses define ``predict``."""

    def __init__(self, runner: Runner, suffix: str) -> None:
        self.inner = runner
        self.name = f"{runner.name}+{suffix}"
        self.lens = runner.lens
        self.focus_m = list(runner.focus_m)
        self.working_range_m = working_range_of(runner)
        self.model = getattr(runner, "model", None)


def bind_lens(runner: object, lens: LensProfile, focus_m: Sequence[float], source: str, ignore_lens: bool = False) -> None:
    """Prepare ``runner`` for stacks taken with ``lens`` (at the stack's resolution) at ``focus_m`` metres.

    A lens-aware PyTorch model (blur coding, :mod:`model.network`) takes the lens: its depth, working range
    and physics check use it; a lens outside the model's blur range raises
    :class:`model.lens_range.LensOutOfRangeError` naming ``source``, the value and the fix. Any other
    runner (a lens-specific model, an exported model with its lens baked in) must match ``lens``
    (:func:`model.checkpoint.check_lens_matches`), unless ``ignore_lens``. Pass the outermost runner: a
    wrapper (:class:`RunnerWrapper`) and every runner inside it are bound.
    """
    chain = [runner]  # the runner, then each wrapper's inner runner (refine, sweep) down to the model's
    while getattr(chain[-1], "inner", None) is not None and len(chain) < 16:
        chain.append(chain[-1].inner)
    base = chain[-1]
    net = getattr(getattr(base, "model", None), "net", None)
    if net is not None and getattr(net, "lens_aware", False):
        from model.lens_range import check_lens_supported

        check_lens_supported(net.config, lens, focus_m, source)
        net.set_lens(lens)
        for r in chain:  # every wrapper (RunnerWrapper) keeps the lens and its depth range
            r.lens = lens  # type: ignore[attr-defined]
            if r is not base and hasattr(r, "working_range_m"):
                r.working_range_m = net.working_range_m()  # type: ignore[attr-defined]
        return
    if not ignore_lens:
        from model.checkpoint import check_lens_matches

        check_lens_matches(runner.lens, lens, source)  # type: ignore[attr-defined]


def _stem(path: Path) -> Path:
    name = path.name
    for suffix in (".trt.onnx", ".onnx", ".engine", ".plan", ".pt", ".pth"):
        if name.lower().endswith(suffix):
            return path.with_name(name[: -len(suffix)])
    return path


def auto_candidates(model: str | os.PathLike[str] | None) -> list[tuple[str, Path]]:
    """The ``auto`` order for ``model``: TensorRT engine, then ONNX (onnxruntime), then the checkpoint.

    For ``model = X.pt`` (or ``None``: the shipped checkpoint) the engine ``X.engine`` and ONNX file
    ``X.onnx`` exported beside it are tried first when they exist; a file named explicitly comes first.
    """
    from model.checkpoint import default_checkpoint_path

    path = Path(model) if model is not None else default_checkpoint_path()
    stem = _stem(path)
    kind_of = {".engine": "tensorrt", ".plan": "tensorrt", ".onnx": "onnxruntime"}
    named = kind_of.get(path.suffix.lower(), "torch")
    out: list[tuple[str, Path]] = []
    if model is not None:
        out.append((named, path))
    for kind, cand in (("tensorrt", stem.with_name(stem.name + ".engine")),
                       ("onnxruntime", stem.with_name(stem.name + ".onnx")),
                       ("torch", stem.with_name(stem.name + ".pt"))):
        if cand.is_file() and (kind, cand) not in out:
            out.append((kind, cand))
    if model is None and ("torch", path) not in out:
        out.append(("torch", path))
    return out


RuntimeFactory = Callable[["Path | None", "str | None", bool], "Runner"]
"""``factory(model_path | None, device | None, with_confidence) -> Runner`` (``None``: the default model)."""

_FACTORIES: dict[str, RuntimeFactory] = {}
_FALLBACK_ERRORS: list[type[BaseException]] = [ImportError, RuntimeError, OSError]
_RANKERS: list[Callable[[list[tuple[str, Path]], "str | None"], dict[tuple[str, Path], str]]] = []
_plugins_loaded = False


def register_runtime(name: str, factory: RuntimeFactory,
                     fallback_errors: Sequence[type[BaseException]] = ()) -> None:
    """Make runtime ``name`` available to :func:`create_runner` (a plugin calls this when it is imported).

    Args:
        name: one of :data:`RUNTIMES` other than ``auto`` (the names the commands offer).
        factory: builds the runner, see :data:`RuntimeFactory`.
        fallback_errors: exception types after which ``auto`` tries the next candidate (e.g. an engine built
            for another GPU), besides ``ImportError``, ``RuntimeError`` and ``OSError``.

    Raises:
        ValueError: an unknown name, or ``auto``.
    """
    if name == "auto" or name not in RUNTIMES:
        raise ValueError(f"cannot register runtime {name!r}: the names are {', '.join(r for r in RUNTIMES if r != 'auto')}")
    _FACTORIES[name] = factory
    for e in fallback_errors:
        if e not in _FALLBACK_ERRORS:
            _FALLBACK_ERRORS.append(e)


def register_auto_ranker(ranker: Callable[[list[tuple[str, Path]], "str | None"], dict[tuple[str, Path], str]]) -> None:
    """Let a plugin reorder ``auto``'s candidates fastest first: ``ranker(candidates, torch_device)`` sorts the
    list in place and returns a reason per candidate (logged). Rankers run in the order registered."""
    if ranker not in _RANKERS:
        _RANKERS.append(ranker)


def _load_plugins() -> None:
    """Import the runtime plugins declared under :data:`RUNTIME_ENTRY_POINT_GROUP` (once)."""
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    from importlib.metadata import distributions

    # every installed distribution's entries (``entry_points(group=...)`` keeps only the first metadata
    # folder of a name, which a stale ``*.egg-info`` in the working directory can shadow)
    seen: set[str] = set()
    eps = []
    for dist in distributions():
        for ep in dist.entry_points:
            if ep.group == RUNTIME_ENTRY_POINT_GROUP and ep.value not in seen:
                seen.add(ep.value)
                eps.append(ep)
    for ep in eps:
        try:
            obj = ep.load()
        except ImportError as e:  # the plugin's own dependencies are missing: its runtimes stay unregistered
            log.debug("runtime plugin %s not loaded: %s", ep.value, e)
            continue
        if callable(obj):
            obj()


def registered_runtimes() -> tuple[str, ...]:
    """The runtimes :func:`create_runner` can build here (after loading the plugins)."""
    _load_plugins()
    return tuple(r for r in RUNTIMES if r in _FACTORIES)


def _fallback_errors() -> tuple[type[BaseException], ...]:
    """Errors after which ``auto`` tries the next runtime: not installed, no GPU, and what the plugins
    registered (an engine for another GPU or without its metadata file)."""
    _load_plugins()
    return tuple(_FALLBACK_ERRORS)


def create_runner(
    runtime: str = "auto",
    model: str | os.PathLike[str] | None = None,
    device: str | None = None,
    with_confidence: bool = True,
) -> Runner:
    """Make a runner.

    Args:
        runtime: ``"torch"``, ``"onnxruntime"``, ``"tensorrt"`` or ``"auto"``. ``auto`` tries the named file
            and the ``X.engine`` / ``X.onnx`` / ``X.pt`` files beside it (:func:`auto_candidates`), fastest
            first where a plugin ranks them (:func:`register_auto_ranker`; the export package's
            ``export.runtime.rank_auto_candidates``, logged with the reason); a runtime that is not installed
            (or an engine this GPU cannot run) is skipped with a warning.
        model: a checkpoint (``.pt``), ONNX file or TensorRT engine; ``None`` for the shipped default.
        device: for the torch runner (``cpu``/``cuda``).
        with_confidence: run the physics check.

    Raises:
        ValueError: unknown runtime, or a model file that does not suit the runtime.
        ImportError: the runtime is not installed (the message names the package and the fallback).
    """
    if runtime not in RUNTIMES:
        raise ValueError(f"unknown runtime {runtime!r}; choose one of {', '.join(RUNTIMES)}")
    if runtime == "auto":
        errors: list[str] = []
        candidates = auto_candidates(model)
        reasons = _rank_fastest(candidates, device)
        for i, (kind, path) in enumerate(candidates):
            try:
                runner = _make_runner(kind, path, device, with_confidence)
            except _fallback_errors() as e:
                if i == len(candidates) - 1:
                    raise
                errors.append(f"{kind} ({path.name}): {e}")
                log.warning("runtime %s is not usable for %s (%s); trying the next", kind, path, e)
                continue
            log.info("runtime: %s (%s)%s", kind, path, f": {reasons[(kind, path)]}" if (kind, path) in reasons else "")
            return runner
        raise ValueError("no usable runtime: " + "; ".join(errors))
    return _make_runner(runtime, Path(model) if model is not None else None, device, with_confidence)


def _rank_fastest(candidates: list[tuple[str, Path]], device: str | None) -> dict[tuple[str, Path], str]:
    """Reorder ``auto``'s candidates fastest first with the registered rankers (in place) and return the
    reason for each; without a ranker the order stays."""
    _load_plugins()
    reasons: dict[tuple[str, Path], str] = {}
    for ranker in _RANKERS:
        try:
            reasons.update(ranker(candidates, device))
        except ImportError as e:  # the ranking plugin's dependencies are missing: keep the order
            log.debug("runtime ranking skipped: %s", e)
    return reasons


def _torch_factory(model: Path | None, device: str | None, with_confidence: bool) -> Runner:
    suffix = model.suffix.lower() if model is not None else ""
    if suffix in (".onnx", ".engine", ".plan"):
        raise ValueError(f"{model}: the torch runtime needs a checkpoint (.pt), not a {suffix} file")
    return TorchRunner(model, device=device, with_confidence=with_confidence)


_FACTORIES["torch"] = _torch_factory


def _make_runner(runtime: str, model: Path | None, device: str | None, with_confidence: bool) -> Runner:
    factory = _FACTORIES.get(runtime)
    if factory is None:
        _load_plugins()
        factory = _FACTORIES.get(runtime)
    if factory is None:
        raise ImportError(
            f"runtime {runtime!r} is not installed: no plugin registered it (entry-point group "
            f"{RUNTIME_ENTRY_POINT_GROUP}); install the export extras (pip install -e '.[export]') or use --runtime torch"
        )
    return factory(model, device, with_confidence)


def working_range_of(runner: object) -> tuple[float, float]:
    """The depth range ``(near_m, far_m)`` a runner predicts in, metres.

    The network's own range when the runner holds a PyTorch model (``runner.model.net``), else the runner's
    ``working_range_m`` attribute (exported models record it in their metadata; ``model.refine`` copies its
    inner runner's), else :func:`model.optics.working_range_m` of its focus distances and lens.
    """
    net = getattr(getattr(runner, "model", None), "net", None)
    if net is not None:
        return net.working_range_m()
    rng = getattr(runner, "working_range_m", None)
    if rng:
        return float(rng[0]), float(rng[1])
    from model.optics import working_range_m

    return working_range_m(runner.focus_m, runner.lens)  # type: ignore[attr-defined]
