"""What an exported model says about itself: ONNX ``metadata_props`` and the JSON file beside every export.

Every ONNX file written by ``python -m export onnx`` carries these ``metadata_props`` (all strings; JSON
where structured):

=====================  ==========================================================================
key                    value
=====================  ==========================================================================
``format``             ``daif-onnx/1``
``graph``              ``net`` or ``physics``
``target``             ``any`` (net graph), ``onnxruntime`` or ``tensorrt`` (physics flavours)
``lens``               the ``lens/1`` profile the model was trained for (JSON)
``focus_distances_m``  focus distances it was trained for, nearest first (JSON list, metres)
``working_range_m``    ``[near, far]`` depth range it predicts in (JSON, metres)
``input_layout``       input names, shapes, order and which sizes are fixed (JSON)
``value_range``        ``{"images": [0, 1]}`` (JSON)
``outputs``            output names with shapes and units (JSON)
``psf``                physics graph only: ``GaussPSF`` domain, ``radius`` and plugin version (JSON)
``confidence``         physics graph only: the confidence scales (JSON)
``sweep``              only when exported with ``--sweep``: the relative-blur sweep in the graph (its
                       settings, working range and smallest image side; JSON); ``depth_m`` is then the
                       swept depth
``network``            the DAIF-Net config (JSON)
``checkpoint``         source checkpoint: path, sha256, training step (JSON)
``package_version``    version of this package that exported it
``exported_at``        UTC time of the export (ISO 8601)
=====================  ==========================================================================

Beside each export ``X`` a file ``X.json`` (:func:`sidecar_path`) holds the same facts plus what was
checked (onnxruntime against PyTorch) or, for engines, the TensorRT version, GPU and precision it was
built for. Readers raise :class:`MetadataError` (a ``FormatError``, so a ``ValueError``) naming the
file, the key and the fix.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping

from model.atomic import sha256_file  # the one file digest; re-exported for the export modules
from model.errors import FormatError
from model.jsonfile import read_json_object
from model.lens import LensProfile

__all__ = [
    "ONNX_FORMAT",
    "ENGINE_FORMAT",
    "INPUT_NAMES",
    "NET_OUTPUTS",
    "PHYSICS_OUTPUTS",
    "OUTPUT_UNITS",
    "MetadataError",
    "package_version",
    "sidecar_path",
    "sha256_file",
    "utc_now",
    "onnx_props",
    "OnnxModelInfo",
    "read_onnx_info",
    "EngineInfo",
    "read_engine_info",
    "write_sidecar",
    "read_sidecar",
]

ONNX_FORMAT = "daif-onnx/1"
ENGINE_FORMAT = "daif-engine/1"
INPUT_NAMES = ("images", "focus_m")
NET_OUTPUTS = ("aif", "depth_m")
PHYSICS_OUTPUTS = ("aif", "depth_m", "confidence", "residual", "rendered")
OUTPUT_UNITS: Mapping[str, Mapping[str, str]] = {
    "aif": {"shape": "(1, 3, H, W)", "dtype": "float32", "units": "all-in-focus RGB in [0, 1]"},
    "depth_m": {"shape": "(1, 1, H, W)", "dtype": "float32", "units": "metric depth, metres"},
    "confidence": {"shape": "(1, 1, H, W)", "dtype": "float32",
                   "units": "physics-check confidence in [0, 1] (model.confidence)"},
    "residual": {"shape": "(1, 1, H, W)", "dtype": "float32",
                 "units": "mean |re-rendered - input| over frames and channels, intensity in [0, 1] units"},
    "rendered": {"shape": "(1, S, 3, H, W)", "dtype": "float32",
                 "units": "input stack re-rendered from the predicted depth and AIF, [0, 1]"},
}
_FIX_EXPORT = "re-export it with `python -m export onnx --checkpoint CHECKPOINT --out FILE.onnx`"


class MetadataError(FormatError):
    """An exported file without (or with unusable) DAIF-Net metadata; the message names the fix."""


def package_version() -> str:
    """Version of this package (installed metadata, else ``model.__version__``)."""
    try:
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version("daif-depth")
        except PackageNotFoundError:
            pass
    except ImportError:  # pragma: no cover - Python < 3.8
        pass
    import model

    return str(getattr(model, "__version__", "unknown"))


def sidecar_path(path: str | os.PathLike[str]) -> Path:
    """The JSON file beside an export: ``X.onnx`` -> ``X.onnx.json``, ``X.engine`` -> ``X.engine.json``."""
    p = Path(path)
    return p.with_name(p.name + ".json")


def utc_now() -> str:
    """Current UTC time, ISO 8601, seconds."""
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()


def write_sidecar(path: str | os.PathLike[str], record: Mapping[str, Any]) -> Path:
    """Write ``record`` atomically as the JSON file beside ``path``; returns the JSON file's path."""
    from model.atomic import atomic_write_json

    return atomic_write_json(sidecar_path(path), json.loads(json.dumps(record, default=str)))


def read_sidecar(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The JSON file beside ``path`` as a dict, or ``None`` if there is none.

    Raises :class:`MetadataError` if it exists but is not a JSON object.
    """
    side = sidecar_path(path)
    if not side.is_file():
        return None
    return read_json_object(side, MetadataError)


# --------------------------------------------------------------------------------------------------
# ONNX metadata_props


def onnx_props(
    *,
    graph: str,
    target: str,
    lens: LensProfile,
    focus_m: list[float],
    working_range_m: tuple[float, float],
    stack_size: int | None,
    image_size: tuple[int, int] | None,
    example_stack_size: int,
    example_image_size: tuple[int, int],
    size_multiple: int,
    network: Mapping[str, Any],
    checkpoint: Mapping[str, Any],
    opset: int,
    psf: Mapping[str, Any] | None = None,
    confidence: Mapping[str, Any] | None = None,
    sweep: Mapping[str, Any] | None = None,
) -> dict[str, str]:
    """The ``metadata_props`` of an export (see the module docstring), as ``{key: string}``.

    ``stack_size`` / ``image_size`` ``(W, H)`` are ``None`` when that axis is dynamic; the ``example_*``
    values are the shapes the graph was traced (and checked) with. ``sweep``: the in-graph sweep's record
    (``config``, ``working_range_m``, ``min_image_side_px``), or ``None`` without one.
    """
    ew, eh = example_image_size
    layout = {
        "images": "float32 (1, S, 3, H, W): RGB frames in [0, 1], sorted by focus distance, nearest first",
        "focus_m": "float32 (1, S): focus distance of each frame, metres",
        "order": list(INPUT_NAMES),
        "batch": 1,
        "stack_size": stack_size if stack_size is not None else "dynamic",
        "image_size": list(image_size) if image_size is not None else "dynamic",
        "size_multiple": int(size_multiple),
        "example_shapes": {"images": [1, example_stack_size, 3, eh, ew], "focus_m": [1, example_stack_size]},
    }
    outputs = PHYSICS_OUTPUTS if graph == "physics" else NET_OUTPUTS
    props = {
        "format": ONNX_FORMAT,
        "graph": graph,
        "target": target,
        "lens": json.dumps(lens.to_dict(), sort_keys=True),
        "focus_distances_m": json.dumps([float(f) for f in focus_m]),
        "working_range_m": json.dumps([float(working_range_m[0]), float(working_range_m[1])]),
        "input_layout": json.dumps(layout),
        "value_range": json.dumps({"images": [0.0, 1.0]}),
        "outputs": json.dumps({name: dict(OUTPUT_UNITS[name]) | (
            {"units": OUTPUT_UNITS[name]["units"] + ", after the relative-blur sweep (model.defocus_sweep)"}
            if sweep is not None and name == "depth_m" else {}) for name in outputs}),
        "network": json.dumps(dict(network), sort_keys=True),
        "checkpoint": json.dumps(dict(checkpoint), default=str),
        "package_version": package_version(),
        "exported_at": utc_now(),
        "opset": str(int(opset)),
    }
    if psf is not None:
        props["psf"] = json.dumps(dict(psf))
    if confidence is not None:
        props["confidence"] = json.dumps(dict(confidence))
    if sweep is not None:
        props["sweep"] = json.dumps(dict(sweep))
    return props


@dataclass(frozen=True)
class OnnxModelInfo:
    """The parsed metadata of an exported ONNX file.

    Attributes:
        path: the file (or ``None`` when parsed from a dict).
        graph: ``"net"`` or ``"physics"``.
        target: ``"any"``, ``"onnxruntime"`` or ``"tensorrt"``.
        lens: the lens profile the model was trained for.
        focus_m: focus distances it was trained for, metres, nearest first.
        working_range_m: ``(near, far)`` metres.
        stack_size: fixed number of frames, or ``None`` (dynamic).
        image_size: fixed ``(W, H)``, or ``None`` (dynamic).
        example_stack_size: frames the graph was traced with.
        example_image_size: ``(W, H)`` it was traced with.
        size_multiple: the network pads to a multiple of this; images must be at least this large.
        outputs: output names in order.
        psf_radius: the GaussPSF window radius (physics graph), else ``None``.
        opset: ONNX opset of the default domain.
        package_version: version of the exporting package.
        props: all ``metadata_props``.
        sweep: the relative-blur sweep the graph runs after the network (``config``, ``working_range_m``,
            ``min_image_side_px``), or ``None``: ``depth_m`` is the network's own.
    """

    path: Path | None
    graph: str
    target: str
    lens: LensProfile
    focus_m: tuple[float, ...]
    working_range_m: tuple[float, float]
    stack_size: int | None
    image_size: tuple[int, int] | None
    example_stack_size: int
    example_image_size: tuple[int, int]
    size_multiple: int
    outputs: tuple[str, ...]
    psf_radius: int | None
    opset: int
    package_version: str
    props: Mapping[str, str] = field(default_factory=dict)
    sweep: Mapping[str, Any] | None = None

    @property
    def has_confidence(self) -> bool:
        """Whether the graph itself computes the physics-check confidence."""
        return self.graph == "physics"

    def check_input_shape(self, stack_size: int, height: int, width: int, source: str = "input") -> None:
        """Raise ``ValueError`` (naming the fix) if a ``(S, H, W)`` stack does not fit this graph."""
        where = self.path or "the model"
        if self.stack_size is not None and stack_size != self.stack_size:
            raise ValueError(
                f"{source}: {stack_size} frames, but {where} was exported for exactly {self.stack_size}; "
                f"pass {self.stack_size} frames or re-export with `python -m export onnx --dynamic-stack`")
        if self.image_size is not None and (width, height) != tuple(self.image_size):
            w, h = self.image_size
            raise ValueError(
                f"{source}: frames of {width}x{height}, but {where} was exported for {w}x{h}; resize the "
                f"frames or re-export with `python -m export onnx --size {width}x{height}` (or --dynamic-size)")
        m = self.size_multiple
        if height < m or width < m:
            raise ValueError(f"{source}: frames of {width}x{height} are smaller than the network's "
                             f"minimum of {m}x{m} pixels")
        low = int(self.sweep.get("min_image_side_px", 0)) if self.sweep else 0
        if self.image_size is None and min(height, width) < low:
            raise ValueError(f"{source}: frames of {width}x{height}, but the relative-blur sweep in {where} needs "
                             f"both sides of at least {low} pixels; use larger frames or re-export at their fixed "
                             "size (`python -m export onnx --sweep --size WxH`)")

    @classmethod
    def from_props(cls, props: Mapping[str, str], path: str | os.PathLike[str] | None = None) -> "OnnxModelInfo":
        """Parse ``metadata_props``; raises :class:`MetadataError` naming the key and the fix."""
        src = None if path is None else Path(path)
        if props.get("format") != ONNX_FORMAT:
            got = props.get("format")
            what = "has no DAIF-Net metadata" if got is None else f"has format {got!r}, expected {ONNX_FORMAT!r}"
            raise MetadataError(src, "metadata_props.format",
                                f"{what}: it was not written by `python -m export onnx`, so its lens, focus "
                                f"distances and input layout are unknown. Fix: {_FIX_EXPORT}, or run the "
                                "checkpoint itself with `--runtime torch --model CHECKPOINT.pt`")

        def get(key: str) -> str:
            if key not in props:
                raise MetadataError(src, f"metadata_props.{key}", f"missing; {_FIX_EXPORT}")
            return props[key]

        def js(key: str) -> Any:
            try:
                return json.loads(get(key))
            except ValueError as e:
                raise MetadataError(src, f"metadata_props.{key}", f"not valid JSON ({e}); {_FIX_EXPORT}") from None

        graph = get("graph")
        if graph not in ("net", "physics"):
            raise MetadataError(src, "metadata_props.graph", f"expected 'net' or 'physics', got {graph!r}")
        target = get("target")
        if target not in ("any", "onnxruntime", "tensorrt"):
            raise MetadataError(src, "metadata_props.target", f"expected any/onnxruntime/tensorrt, got {target!r}")
        try:
            lens = LensProfile.from_dict(js("lens"), source=f"{src} [metadata_props.lens]")
        except ValueError as e:
            raise MetadataError(src, "metadata_props.lens", str(e)) from None
        focus = js("focus_distances_m")
        if (not isinstance(focus, list) or len(focus) < 2
                or not all(isinstance(f, (int, float)) and math.isfinite(f) and f > 0 for f in focus)):
            raise MetadataError(src, "metadata_props.focus_distances_m", f"expected 2+ positive metres, got {focus!r}")
        rng = js("working_range_m")
        if not (isinstance(rng, list) and len(rng) == 2 and all(isinstance(v, (int, float)) for v in rng)
                and 0 < rng[0] < rng[1]):
            raise MetadataError(src, "metadata_props.working_range_m", f"expected [near, far] metres, got {rng!r}")
        layout = js("input_layout")
        try:
            s = layout["stack_size"]
            size = layout["image_size"]
            ex = layout["example_shapes"]["images"]
            multiple = int(layout["size_multiple"])
            stack_size = None if s == "dynamic" else int(s)
            image_size = None if size == "dynamic" else (int(size[0]), int(size[1]))
            example_stack, example_size = int(ex[1]), (int(ex[4]), int(ex[3]))
        except (KeyError, TypeError, ValueError, IndexError) as e:
            raise MetadataError(src, "metadata_props.input_layout", f"malformed ({type(e).__name__}: {e})") from None
        outputs = js("outputs")
        if not isinstance(outputs, dict) or not {"aif", "depth_m"} <= set(outputs):
            raise MetadataError(src, "metadata_props.outputs", f"expected at least aif and depth_m, got {outputs!r}")
        psf_radius = None
        if graph == "physics":
            psf = js("psf")
            try:
                psf_radius = int(psf["radius"])
            except (KeyError, TypeError, ValueError):
                raise MetadataError(src, "metadata_props.psf", f"missing an integer radius: {psf!r}") from None
        try:
            opset = int(props.get("opset", "0"))
        except ValueError:
            opset = 0
        sweep = None
        if "sweep" in props:
            sweep = js("sweep")
            if not isinstance(sweep, dict) or not isinstance(sweep.get("config"), dict):
                raise MetadataError(src, "metadata_props.sweep", f"expected an object with the sweep's config, got "
                                    f"{sweep!r}; {_FIX_EXPORT}")
        return cls(path=src, graph=graph, target=target, lens=lens, focus_m=tuple(float(f) for f in focus),
                   working_range_m=(float(rng[0]), float(rng[1])), stack_size=stack_size, image_size=image_size,
                   example_stack_size=example_stack, example_image_size=example_size, size_multiple=multiple,
                   outputs=tuple(outputs), psf_radius=psf_radius, opset=opset,
                   package_version=props.get("package_version", "unknown"), props=dict(props), sweep=sweep)


def read_onnx_info(path: str | os.PathLike[str]) -> OnnxModelInfo:
    """Read and parse the metadata of an ONNX file (weights are not loaded into memory twice).

    Raises ``FileNotFoundError``, :class:`MetadataError` for a file that is not ONNX or lacks our metadata.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: ONNX file not found")
    try:
        import onnx
    except ImportError:
        raise ImportError("reading ONNX metadata needs the onnx package: pip install onnx") from None
    try:
        model = onnx.load(str(p), load_external_data=False)
    except Exception as e:  # noqa: BLE001 - protobuf raises several kinds
        raise MetadataError(p, None, f"not a readable ONNX file ({type(e).__name__}: {e})") from None
    props = {entry.key: entry.value for entry in model.metadata_props}
    return OnnxModelInfo.from_props(props, p)


# --------------------------------------------------------------------------------------------------
# Engine metadata (the JSON file beside X.engine)


@dataclass(frozen=True)
class EngineInfo:
    """What an engine was built for and from (the JSON file beside it).

    Attributes:
        path: the engine file.
        tensorrt_version: ``trt.__version__`` of the builder.
        gpu_name: the GPU's name as the CUDA driver reports it.
        compute_capability: e.g. ``"8.7"`` (Jetson Orin).
        precision: ``fp32``, ``fp16`` or ``int8``.
        plugin_needed: the engine contains the GaussPSF plugin (physics graph).
        plugin_library: path of the plugin library used at build time, or ``None``.
        onnx: the ONNX model's parsed metadata.
        onnx_path: the ONNX file it was built from (the fallback for other machines).
        shapes: ``{input: {"min": [...], "opt": [...], "max": [...]}}``.
        record: the whole JSON record.
    """

    path: Path
    tensorrt_version: str
    gpu_name: str
    compute_capability: str
    precision: str
    plugin_needed: bool
    plugin_library: str | None
    onnx: OnnxModelInfo
    onnx_path: str | None
    shapes: Mapping[str, Mapping[str, list[int]]]
    record: Mapping[str, Any]


def read_engine_info(path: str | os.PathLike[str]) -> EngineInfo:
    """Read the metadata file beside an engine.

    Raises ``FileNotFoundError`` (no engine) or :class:`MetadataError` (no or bad metadata file; the message
    says how to rebuild the engine and which runtime works without it).
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: engine file not found")
    record = read_sidecar(p)
    side = sidecar_path(p)
    if record is None:
        raise MetadataError(side, None,
                            "missing: the engine's metadata file (TensorRT version, GPU, lens, focus distances) is "
                            "not beside it. Rebuild the engine with `python -m export engine --onnx MODEL.onnx "
                            f"--out {p}` (it writes both), or run the ONNX file with --runtime onnxruntime")
    if record.get("format") != ENGINE_FORMAT:
        raise MetadataError(side, "format", f"expected {ENGINE_FORMAT!r}, got {record.get('format')!r}")
    try:
        gpu = record["gpu"]
        onnx_info = OnnxModelInfo.from_props(record["onnx_metadata"], record.get("onnx", {}).get("path"))
        return EngineInfo(
            path=p, tensorrt_version=str(record["tensorrt_version"]), gpu_name=str(gpu["name"]),
            compute_capability=str(gpu["compute_capability"]), precision=str(record["precision"]),
            plugin_needed=bool(record["plugin"]["needed"]), plugin_library=record["plugin"].get("library"),
            onnx=onnx_info, onnx_path=record.get("onnx", {}).get("path"), shapes=record["shapes"], record=record)
    except (KeyError, TypeError) as e:
        raise MetadataError(side, str(e).strip("'"), "missing or malformed; rebuild the engine with "
                            "`python -m export engine`") from None
