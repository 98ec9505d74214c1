"""Checkpoints: network weights plus everything needed to use them.

A checkpoint carries the lens profile (``lens/1``), the focus distances the model was trained for, the
network config and the training config, so ``predict``, ``export`` and ``device`` need nothing else.
Saves are atomic. The shipped default model lives in ``model/default/`` with its lens profile beside it.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch

from model.atomic import atomic_torch_save
from model.errors import CheckpointError
from model.lens import LensProfile
from model.network import DAIFNet, NetConfig

__all__ = [
    "CHECKPOINT_FORMAT",
    "DEFAULT_DIR",
    "default_checkpoint_path",
    "LoadedModel",
    "save_checkpoint",
    "load_checkpoint",
    "read_checkpoint",
    "check_lens_matches",
    "default_lens_path",
]

CHECKPOINT_FORMAT = "daifnet-checkpoint/1"
DEFAULT_DIR = Path(__file__).resolve().parent / "default"


def default_checkpoint_path() -> Path:
    """The shipped default model, ``model/default/daifnet.pt``."""
    return DEFAULT_DIR / "daifnet.pt"


def default_lens_path() -> Path:
    """The shipped default model's lens profile, ``model/default/lens.json`` (``lens/1``)."""
    return DEFAULT_DIR / "lens.json"


@dataclass
class LoadedModel:
    """A network ready to run (eval mode) and what it was trained for.

    Attributes:
        net: the network, in eval mode.
        lens: lens profile it was trained for.
        focus_m: focus distances (metres) it was trained for, nearest first.
        config: the training config (a plain dict).
        path: the file it came from.
        step: training step of the weights.
        metrics: what training recorded (free-form).
    """

    net: DAIFNet
    lens: LensProfile
    focus_m: list[float]
    config: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None
    step: int = 0
    metrics: dict[str, Any] = field(default_factory=dict)


def save_checkpoint(
    path: str | os.PathLike[str],
    net: DAIFNet,
    lens: LensProfile,
    focus_m: list[float],
    config: Mapping[str, Any] | None = None,
    step: int = 0,
    optimizer: Mapping[str, Any] | None = None,
    scheduler: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Save a checkpoint atomically.

    Args:
        path: destination ``.pt`` file.
        net: the network (its ``config`` is stored).
        lens: the lens profile it is trained for.
        focus_m: the focus distances it is trained for, metres.
        config: training config as a plain dict.
        step: training step.
        optimizer: ``optimizer.state_dict()`` to resume from, or ``None`` for a slim (shipping) file.
        scheduler: ``scheduler.state_dict()``, or ``None``.
        extra: more plain data to store (e.g. ``metrics``, RNG state).
    """
    model = net.module if hasattr(net, "module") else net
    obj: dict[str, Any] = {
        "format": CHECKPOINT_FORMAT,
        "net_config": asdict(model.config),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "lens": lens.to_dict(),
        "focus_m": [float(f) for f in focus_m],
        "config": dict(config or {}),
        "step": int(step),
    }
    if optimizer is not None:
        obj["optimizer"] = optimizer
    if scheduler is not None:
        obj["scheduler"] = scheduler
    if extra:
        obj.update(dict(extra))
    return atomic_torch_save(obj, path)


def read_checkpoint(path: str | os.PathLike[str] | None = None, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read the raw checkpoint dict (validated). ``None`` reads the shipped default.

    Raises:
        CheckpointError: missing, unreadable or not a DAIF-Net checkpoint (the message names the file).
    """
    p = Path(path) if path is not None else default_checkpoint_path()
    if not p.is_file():
        hint = " (the shipped default model is missing: reinstall the package)" if path is None else ""
        raise CheckpointError(f"{p}: checkpoint not found{hint}")
    try:
        obj = torch.load(p, map_location=map_location, weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch raises many kinds here
        raise CheckpointError(f"{p}: not a readable PyTorch checkpoint ({type(e).__name__}: {e})") from None
    if not isinstance(obj, dict) or obj.get("format") != CHECKPOINT_FORMAT:
        got = obj.get("format") if isinstance(obj, dict) else type(obj).__name__
        raise CheckpointError(f"{p}: format: expected {CHECKPOINT_FORMAT!r}, got {got!r}")
    for key in ("net_config", "state_dict", "lens", "focus_m"):
        if key not in obj:
            raise CheckpointError(f"{p}: {key}: missing")
    obj["_path"] = p
    return obj


def load_checkpoint(path: str | os.PathLike[str] | None = None, map_location: str | torch.device = "cpu") -> LoadedModel:
    """Load a checkpoint into a ready-to-run :class:`LoadedModel` (eval mode).

    ``path=None`` loads the shipped default model.

    Raises:
        CheckpointError: unreadable, wrong format or weights that do not fit the stored architecture.
    """
    obj = read_checkpoint(path, map_location)
    p: Path = obj["_path"]
    try:
        net = DAIFNet(NetConfig(**obj["net_config"]))
        net.load_state_dict(obj["state_dict"])
    except (TypeError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"{p}: net_config/state_dict: {e}") from None
    net.eval()
    try:
        lens = LensProfile.from_dict(obj["lens"], source=f"{p} [lens]")
    except ValueError as e:
        raise CheckpointError(str(e)) from None
    net.set_lens(lens)  # the lens-aware (blur-coded) network's default lens; ignored by the inverse-depth coding
    focus = [float(f) for f in obj["focus_m"]]
    if len(focus) < 2 or not all(math.isfinite(f) and f > 0 for f in focus):
        raise CheckpointError(f"{p}: focus_m: expected 2 or more positive distances, got {focus}")
    return LoadedModel(
        net=net.to(map_location),
        lens=lens,
        focus_m=sorted(focus),
        config=dict(obj.get("config") or {}),
        path=p,
        step=int(obj.get("step", 0)),
        metrics=dict(obj.get("metrics") or {}),
    )


def check_lens_matches(model_lens: LensProfile, data_lens: LensProfile, source: str, rel_tol: float = 0.05) -> None:
    """Refuse data taken with a different lens than the model was trained for.

    Focal length, f-number and pixel pitch must agree within ``rel_tol``; the pitch is compared as
    stored (a stack at another resolution must be resized to the model's pitch first). Raises :class:`CheckpointError` naming ``source`` and the differing numbers.
    """
    diffs = []
    for key in ("focal_length_m", "f_number", "pixel_pitch_m"):
        a, b = getattr(model_lens, key), getattr(data_lens, key)
        if abs(a - b) > rel_tol * max(abs(a), abs(b)):
            diffs.append(f"{key} {b:g} (model: {a:g})")
    if diffs:
        raise CheckpointError(
            f"{source}: the stack's lens differs from the model's lens {model_lens.name!r}: "
            + ", ".join(diffs)
            + ". Use a checkpoint trained for this lens (fine-tune with `python -m model.train --init ...`)"
            " or pass --ignore-lens to run anyway."
        )
