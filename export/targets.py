"""The table of export targets, graphs and precisions that every export command is validated against.

One row per thing ``python -m export`` can produce. A request (graph, target, precision) is checked
against this table before any work starts, and the error names the fix.

======================  ==========  ============================================================
target                  file        what it is for
======================  ==========  ============================================================
``onnxruntime``         ``.onnx``   onnxruntime on any host. The physics graph's ``GaussPSF`` node is
                                    in domain ``ai.onnx.contrib`` and runs as an
                                    onnxruntime-extensions Python op (:mod:`export.ort_ops`).
``tensorrt``            ``.trt.onnx``  input to the TensorRT builder / ``trtexec``. ``GaussPSF`` is in
                                    the default domain with ``plugin_version="1"`` and
                                    ``plugin_namespace=""`` so the ONNX parser maps it to the plugin
                                    of ``export/plugins/gaussPsf``. onnxruntime cannot run it.
``engine``              ``.engine`` a serialized TensorRT engine: one GPU model, one TensorRT version.
======================  ==========  ============================================================

The two ONNX flavours differ only in that one node (domain and two attributes); :func:`to_tensorrt_flavour`
and :func:`to_onnxruntime_flavour` convert one into the other. The plain network graph (``graph="net"``)
has no custom node and serves both.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Mapping

if TYPE_CHECKING:  # onnx is imported lazily (the runtime on a Jetson may not need it)
    import onnx

__all__ = [
    "PSF_OP_TYPE",
    "ORT_DOMAIN",
    "TRT_DOMAIN",
    "PLUGIN_ATTRIBUTES",
    "GRAPHS",
    "PRECISIONS",
    "Target",
    "TARGETS",
    "check_choice",
    "flavour_paths",
    "psf_nodes",
    "graph_flavour",
    "to_tensorrt_flavour",
    "to_onnxruntime_flavour",
]

PSF_OP_TYPE = "GaussPSF"
ORT_DOMAIN = "ai.onnx.contrib"
TRT_DOMAIN = ""
PLUGIN_ATTRIBUTES: Mapping[str, str] = {"plugin_version": "1", "plugin_namespace": ""}

GRAPHS: Mapping[str, str] = {
    "net": "DAIF-Net only: outputs aif, depth_m (no custom op; runs anywhere)",
    "physics": "DAIF-Net + thin-lens blur + GaussPSF re-rendering: adds confidence, residual, rendered",
}
PRECISIONS = ("fp32", "fp16", "int8")


@dataclass(frozen=True)
class Target:
    """One export target.

    Attributes:
        name: the ``--target`` value.
        suffix: file name ending of what it writes.
        psf_domain: domain of the ``GaussPSF`` node in the physics graph (``None``: not an ONNX file).
        psf_attributes: extra string attributes of that node.
        precisions: precisions it can be built in.
        modules: Python modules it needs where it runs.
        install_hint: how to get those modules.
        description: one line for ``--help`` and errors.
    """

    name: str
    suffix: str
    psf_domain: str | None
    psf_attributes: Mapping[str, str] = field(default_factory=dict)
    precisions: tuple[str, ...] = ("fp32",)
    modules: tuple[str, ...] = ()
    install_hint: str = ""
    description: str = ""


TARGETS: Mapping[str, Target] = {
    "onnxruntime": Target(
        name="onnxruntime", suffix=".onnx", psf_domain=ORT_DOMAIN, precisions=("fp32",),
        modules=("onnxruntime", "onnxruntime_extensions"),
        install_hint="pip install onnxruntime onnxruntime-extensions (or pip install 'daif-depth[export]')",
        description="ONNX for onnxruntime (GaussPSF as an onnxruntime-extensions Python op)"),
    "tensorrt": Target(
        name="tensorrt", suffix=".trt.onnx", psf_domain=TRT_DOMAIN, psf_attributes=PLUGIN_ATTRIBUTES,
        precisions=("fp32",), modules=("tensorrt",),
        install_hint="TensorRT comes with JetPack (python3-libnvinfer); on a PC: pip install tensorrt",
        description="ONNX for the TensorRT builder / trtexec (GaussPSF resolves to the TensorRT plugin)"),
    "engine": Target(
        name="engine", suffix=".engine", psf_domain=None, precisions=PRECISIONS, modules=("tensorrt",),
        install_hint="TensorRT comes with JetPack (python3-libnvinfer); on a PC: pip install tensorrt",
        description="serialized TensorRT engine for this GPU and this TensorRT version"),
}

ONNX_TARGET_CHOICES = ("onnxruntime", "tensorrt", "both")


def check_choice(kind: str, value: str, choices: Mapping[str, object] | tuple[str, ...]) -> str:
    """Return ``value`` if it is one of ``choices``; else raise ``ValueError`` listing them."""
    names = tuple(choices)
    if value not in names:
        raise ValueError(f"unknown {kind} {value!r}; choose one of: {', '.join(names)}")
    return value


def flavour_paths(out: str | Path, target: str, graph: str) -> dict[str, Path]:
    """Which files an ONNX export writes: ``{flavour: path}``.

    ``out`` is the onnxruntime file (``X.onnx``); the TensorRT flavour goes beside it as ``X.trt.onnx``.
    With ``target="tensorrt"`` only, ``out`` itself holds the TensorRT flavour. The network-only graph
    has a single flavour (``"any"``) written to ``out``.
    """
    check_choice("ONNX target", target, ONNX_TARGET_CHOICES)
    check_choice("graph", graph, GRAPHS)
    out = Path(out)
    if out.suffix.lower() != ".onnx":
        raise ValueError(f"{out}: the ONNX file name must end in .onnx")
    if graph == "net":
        return {"any": out}
    if target == "onnxruntime":
        return {"onnxruntime": out}
    if target == "tensorrt":
        return {"tensorrt": out}
    stem = out.name[: -len(".onnx")]
    return {"onnxruntime": out, "tensorrt": out.with_name(stem + TARGETS["tensorrt"].suffix)}


# --------------------------------------------------------------------------------------------------
# The two flavours of the physics graph


def psf_nodes(model: "onnx.ModelProto") -> list["onnx.NodeProto"]:
    """The ``GaussPSF`` nodes of ``model`` (any domain)."""
    return [n for n in model.graph.node if n.op_type == PSF_OP_TYPE]


def graph_flavour(model: "onnx.ModelProto") -> str:
    """``"any"`` (no GaussPSF node), ``"onnxruntime"`` or ``"tensorrt"``, from the nodes themselves."""
    nodes = psf_nodes(model)
    if not nodes:
        return "any"
    domains = {n.domain for n in nodes}
    if domains == {ORT_DOMAIN}:
        return "onnxruntime"
    if domains <= {TRT_DOMAIN, "ai.onnx"}:
        return "tensorrt"
    raise ValueError(f"GaussPSF nodes in unexpected domains {sorted(domains)}")


def _set_metadata(model: "onnx.ModelProto", key: str, value: str) -> None:
    for prop in model.metadata_props:
        if prop.key == key:
            prop.value = value
            return
    entry = model.metadata_props.add()
    entry.key, entry.value = key, value


def _opset_imports(model: "onnx.ModelProto", drop: str | None, add: tuple[str, int] | None) -> None:
    keep = [(o.domain, o.version) for o in model.opset_import if o.domain != drop]
    if add is not None and add[0] not in {d for d, _ in keep}:
        keep.append(add)
    del model.opset_import[:]
    for domain, version in keep:
        entry = model.opset_import.add()
        entry.domain, entry.version = domain, version


def to_tensorrt_flavour(model: "onnx.ModelProto") -> "onnx.ModelProto":
    """Copy of ``model`` whose GaussPSF nodes are in the default domain with the plugin attributes.

    The TensorRT ONNX parser finds no importer for ``GaussPSF`` and looks the op type up in the plugin
    registry (creator ``GaussPSF``, version ``plugin_version``, namespace ``plugin_namespace``); only the
    creator's fields (``radius``) are passed on. A model without GaussPSF nodes is returned unchanged
    (as a copy). The ``target`` metadata entry is set to ``tensorrt``.
    """
    import onnx

    out = onnx.ModelProto()
    out.CopyFrom(model)
    nodes = psf_nodes(out)
    if not nodes:
        return out
    for node in nodes:
        node.domain = TRT_DOMAIN
        present = {a.name for a in node.attribute}
        for name, value in PLUGIN_ATTRIBUTES.items():
            if name not in present:
                node.attribute.append(onnx.helper.make_attribute(name, value))
    _opset_imports(out, drop=ORT_DOMAIN, add=None)
    _set_metadata(out, "target", "tensorrt")
    return out


def to_onnxruntime_flavour(model: "onnx.ModelProto") -> "onnx.ModelProto":
    """Copy of ``model`` whose GaussPSF nodes are in ``ai.onnx.contrib`` without the plugin attributes
    (onnxruntime-extensions refuses attributes its op does not declare). Inverse of
    :func:`to_tensorrt_flavour`."""
    import onnx

    out = onnx.ModelProto()
    out.CopyFrom(model)
    nodes = psf_nodes(out)
    if not nodes:
        return out
    for node in nodes:
        node.domain = ORT_DOMAIN
        keep = [a for a in node.attribute if a.name not in PLUGIN_ATTRIBUTES]
        del node.attribute[:]
        node.attribute.extend(keep)
    _opset_imports(out, drop=None, add=(ORT_DOMAIN, 1))
    _set_metadata(out, "target", "onnxruntime")
    return out
