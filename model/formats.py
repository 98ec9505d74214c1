"""Reader and writer for ``focal-stack/1`` folders (``docs/FORMATS.md``).

A stack folder holds ``stack.json``, one RGB PNG per frame (8 or 16 bit, all the same size) and
optionally ``depth.npy`` (float32 H x W metres; 0, NaN or inf mark unknown) and ``aif.png``.
Frames may be listed in any order; :func:`read_stack` sorts them by focus distance, nearest first.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from model.atomic import atomic_dir, atomic_save_npy, atomic_write_bytes
from model.errors import FormatError
from model.jsonfile import read_json_object
from model.lens import LensProfile, positive_number

__all__ = [
    "STACK_FORMAT",
    "FocalStack",
    "FormatError",
    "read_stack",
    "write_stack",
    "find_stacks",
    "read_image",
    "write_image",
    "encode_png",
]

STACK_FORMAT = "focal-stack/1"


@dataclass
class FocalStack:
    """A focal stack in memory.

    Attributes:
        images: ``(S, H, W, 3)`` float32 RGB in ``[0, 1]``, sorted by focus distance (nearest first)
            when focus distances are known.
        focus_m: ``(S,)`` focus distances in metres, or ``None`` for an uncalibrated capture.
        lens: the lens the stack was taken with.
        depth: ``(H, W)`` float32 metres with NaN for unknown pixels, or ``None``.
        aif: ``(H, W, 3)`` float32 all-in-focus image, or ``None``.
        focus_control: ``(S,)`` raw focus control values, or ``None``.
        target: the calibration target block (``{"distance_m": .., "chart": ..}``), or ``None``.
        capture: capture metadata written by the device recorder, or ``None``.
        path: the folder it was read from, or ``None``.
        extra: other top-level keys of ``stack.json``, kept so they round-trip.
    """

    images: np.ndarray
    focus_m: np.ndarray | None
    lens: LensProfile
    depth: np.ndarray | None = None
    aif: np.ndarray | None = None
    focus_control: np.ndarray | None = None
    target: dict[str, Any] | None = None
    capture: dict[str, Any] | None = None
    path: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        imgs = np.asarray(self.images)
        if imgs.ndim != 4 or imgs.shape[-1] != 3 or imgs.shape[0] < 1:
            raise ValueError(f"images must be (S, H, W, 3), got {imgs.shape}")
        self.images = imgs.astype(np.float32, copy=False)
        s = imgs.shape[0]
        if self.focus_m is not None:
            fm = np.asarray(self.focus_m, dtype=np.float64).reshape(-1)
            if fm.shape[0] != s:
                raise ValueError(f"{fm.shape[0]} focus distances for {s} frames")
            if not np.all(np.isfinite(fm)) or np.any(fm <= 0):
                raise ValueError(f"focus distances must be positive finite metres, got {fm.tolist()}")
            self.focus_m = fm
        if self.focus_control is not None:
            fc = np.asarray(self.focus_control, dtype=np.float64).reshape(-1)
            if fc.shape[0] != s:
                raise ValueError(f"{fc.shape[0]} focus control values for {s} frames")
            self.focus_control = fc
        if self.depth is not None:
            d = np.asarray(self.depth, dtype=np.float32)
            if d.shape != imgs.shape[1:3]:
                raise ValueError(f"depth is {d.shape}, frames are {imgs.shape[1:3]}")
            self.depth = d
        if self.aif is not None:
            a = np.asarray(self.aif, dtype=np.float32)
            if a.shape != imgs.shape[1:]:
                raise ValueError(f"aif is {a.shape}, frames are {imgs.shape[1:]}")
            self.aif = a

    @property
    def size(self) -> tuple[int, int]:
        """``(width, height)`` in pixels."""
        return int(self.images.shape[2]), int(self.images.shape[1])

    def __len__(self) -> int:
        return int(self.images.shape[0])


# ----------------------------------------------------------------------------- images


def read_image(path: str | os.PathLike[str], key: str = "file") -> np.ndarray:
    """Read an 8- or 16-bit RGB(A)/grey PNG (or anything OpenCV reads) as float32 ``(H, W, 3)`` in [0, 1]."""
    import cv2

    path = Path(path)
    if not path.is_file():
        raise FormatError(path, key, "file not found")
    data = np.fromfile(str(path), dtype=np.uint8)
    img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if img is None:
        raise FormatError(path, key, "unreadable image")
    if img.dtype == np.uint8:
        scale = 255.0
    elif img.dtype == np.uint16:
        scale = 65535.0
    else:
        raise FormatError(path, key, f"unsupported pixel type {img.dtype} (expected 8 or 16 bit)")
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    elif img.shape[2] == 4:
        img = cv2.cvtColor(img, cv2.COLOR_BGRA2RGB)
    elif img.shape[2] == 3:
        img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    else:
        raise FormatError(path, key, f"unsupported channel count {img.shape[2]}")
    return img.astype(np.float32) / scale


def encode_png(image: np.ndarray, bit_depth: int = 8) -> bytes:
    """Encode a float ``(H, W, 3)`` RGB image in [0, 1] (or uint8/uint16) as PNG bytes."""
    import cv2

    img = np.asarray(image)
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) image, got {img.shape}")
    if bit_depth not in (8, 16):
        raise ValueError(f"bit_depth must be 8 or 16, got {bit_depth}")
    if img.dtype.kind == "f":
        top = 255 if bit_depth == 8 else 65535
        img = np.clip(np.nan_to_num(img), 0.0, 1.0) * top + 0.5
        img = img.astype(np.uint8 if bit_depth == 8 else np.uint16)
    ok, buf = cv2.imencode(".png", cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    if not ok:
        raise ValueError("PNG encoding failed")
    return buf.tobytes()


def write_image(path: str | os.PathLike[str], image: np.ndarray, bit_depth: int = 8) -> Path:
    """Write an RGB image as PNG atomically."""
    return atomic_write_bytes(path, encode_png(image, bit_depth))


# ----------------------------------------------------------------------------- stacks


def _resolve_lens(block: Any, stack_json: Path) -> LensProfile:
    if not isinstance(block, Mapping):
        raise FormatError(stack_json, "lens", "expected an object")
    if "profile" in block:
        ref = block["profile"]
        if not isinstance(ref, str) or not ref:
            raise FormatError(stack_json, "lens.profile", "expected a relative path to a lens/1 file")
        return LensProfile.load(stack_json.parent / ref)
    try:
        return LensProfile.from_dict(block, source=stack_json, require_format=False)
    except FormatError as e:
        raise FormatError(stack_json, f"lens.{e.key}" if e.key else "lens", e.problem) from None


def read_stack(folder: str | os.PathLike[str], require_focus: bool = True, load_images: bool = True) -> FocalStack:
    """Read a ``focal-stack/1`` folder.

    Args:
        folder: the stack folder (holding ``stack.json``).
        require_focus: demand ``focus_distance_m`` on every frame (calibration captures may carry only
            ``focus_control``; pass ``False`` for those).
        load_images: read the frames (``False`` reads only the metadata and gives zero-size images).

    Raises:
        FormatError: naming the file and the key, for anything the reader cannot use.
    """
    folder = Path(folder)
    sj = folder / "stack.json"
    if not sj.is_file():
        raise FormatError(sj, None, "missing (not a focal-stack/1 folder)")
    meta = read_json_object(sj)
    if meta.get("format") != STACK_FORMAT:
        raise FormatError(sj, "format", f"expected {STACK_FORMAT!r}, got {meta.get('format')!r}")
    if "lens" not in meta:
        raise FormatError(sj, "lens", "missing")
    lens = _resolve_lens(meta["lens"], sj)
    frames = meta.get("frames")
    if not isinstance(frames, list) or not frames:
        raise FormatError(sj, "frames", "expected a non-empty list")

    files: list[str] = []
    focus: list[float | None] = []
    controls: list[float | None] = []
    for i, fr in enumerate(frames):
        key = f"frames[{i}]"
        if not isinstance(fr, Mapping):
            raise FormatError(sj, key, "expected an object")
        name = fr.get("file")
        if not isinstance(name, str) or not name:
            raise FormatError(sj, f"{key}.file", "missing or not a string")
        files.append(name)
        fd = fr.get("focus_distance_m")
        if fd is None:
            if require_focus:
                raise FormatError(sj, f"{key}.focus_distance_m", "missing")
            focus.append(None)
        else:
            focus.append(positive_number(fd, sj, f"{key}.focus_distance_m"))
        fc = fr.get("focus_control")
        if fc is not None:
            if isinstance(fc, bool) or not isinstance(fc, (int, float)) or not math.isfinite(float(fc)):
                raise FormatError(sj, f"{key}.focus_control", f"expected a finite number, got {fc!r}")
            controls.append(float(fc))
        else:
            controls.append(None)
        if fd is None and fc is None:
            raise FormatError(sj, key, "needs focus_distance_m or focus_control")

    have_focus = all(f is not None for f in focus)
    have_control = all(c is not None for c in controls)
    order = list(range(len(files)))
    if have_focus:
        order.sort(key=lambda i: focus[i])  # type: ignore[arg-type,return-value]
    elif have_control:
        order.sort(key=lambda i: controls[i])  # type: ignore[arg-type,return-value]

    images: list[np.ndarray] = []
    if load_images:
        shape = None
        for i in order:
            img = read_image(folder / files[i], key=f"frames[{i}].file")
            if shape is None:
                shape = img.shape
            elif img.shape != shape:
                raise FormatError(
                    folder / files[i], f"frames[{i}].file", f"size {img.shape[1]}x{img.shape[0]} differs from "
                    f"the first frame's {shape[1]}x{shape[0]}"
                )
            images.append(img)
        arr = np.stack(images)
    else:
        arr = np.zeros((len(files), 0, 0, 3), np.float32)

    depth = None
    if meta.get("depth") and load_images:
        dp = folder / str(meta["depth"])
        try:
            depth = np.load(dp, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise FormatError(dp, "depth", f"unreadable depth map: {e}") from None
        if depth.ndim != 2 or depth.shape != arr.shape[1:3]:
            raise FormatError(dp, "depth", f"shape {depth.shape} does not match the frames {arr.shape[1:3]}")
        depth = depth.astype(np.float32)
        depth[~np.isfinite(depth) | (depth <= 0)] = np.nan
    aif = None
    if meta.get("aif") and load_images:
        aif = read_image(folder / str(meta["aif"]), key="aif")
        if aif.shape != arr.shape[1:]:
            raise FormatError(folder / str(meta["aif"]), "aif", "size does not match the frames")
    target = meta.get("target")
    if target is not None and not isinstance(target, Mapping):
        raise FormatError(sj, "target", "expected an object")
    if isinstance(target, Mapping) and "distance_m" in target:
        positive_number(target["distance_m"], sj, "target.distance_m")
    known = {"format", "frames", "lens", "depth", "aif", "target", "capture"}
    try:
        return FocalStack(
            images=arr,
            focus_m=np.array([focus[i] for i in order], np.float64) if have_focus else None,
            lens=lens,
            depth=depth,
            aif=aif,
            focus_control=np.array([controls[i] for i in order], np.float64) if have_control else None,
            target=dict(target) if isinstance(target, Mapping) else None,
            capture=meta.get("capture") if isinstance(meta.get("capture"), dict) else None,
            path=folder,
            extra={k: v for k, v in meta.items() if k not in known},
        )
    except ValueError as e:
        raise FormatError(sj, None, str(e)) from None


def write_stack(
    folder: str | os.PathLike[str],
    stack: FocalStack,
    bit_depth: int = 8,
    overwrite: bool = False,
    lens_profile_ref: str | None = None,
) -> Path:
    """Write ``stack`` as a ``focal-stack/1`` folder, atomically (temporary sibling folder + rename).

    Args:
        folder: destination folder; must not exist unless ``overwrite``.
        stack: what to write.
        bit_depth: 8 or 16 bit PNG frames.
        overwrite: replace an existing folder.
        lens_profile_ref: write ``"lens": {"profile": ref}`` instead of the inline numbers.

    Raises:
        FileExistsError: ``folder`` exists and ``overwrite`` is false.
        OSError: on a full disk (nothing is left at ``folder``).
    """
    folder = Path(folder)
    n = len(stack)
    with atomic_dir(folder, overwrite=overwrite) as tmp:
        frames: list[dict[str, Any]] = []
        width = max(2, len(str(n - 1)))
        for i in range(n):
            name = f"frame_{i:0{width}d}.png"
            atomic_write_bytes(tmp / name, encode_png(stack.images[i], bit_depth))
            fr: dict[str, Any] = {"file": name}
            if stack.focus_m is not None:
                fr["focus_distance_m"] = float(stack.focus_m[i])
            if stack.focus_control is not None:
                fr["focus_control"] = float(stack.focus_control[i])
            frames.append(fr)
        meta: dict[str, Any] = {"format": STACK_FORMAT, "frames": frames}
        meta["lens"] = {"profile": lens_profile_ref} if lens_profile_ref else stack.lens.thin_lens_dict()
        if stack.depth is not None:
            d = np.nan_to_num(stack.depth.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)
            atomic_save_npy(tmp / "depth.npy", d)
            meta["depth"] = "depth.npy"
        if stack.aif is not None:
            atomic_write_bytes(tmp / "aif.png", encode_png(stack.aif, bit_depth))
            meta["aif"] = "aif.png"
        if stack.target is not None:
            meta["target"] = stack.target
        if stack.capture is not None:
            meta["capture"] = stack.capture
        for k, v in stack.extra.items():
            meta.setdefault(k, v)
        atomic_write_bytes(tmp / "stack.json", (json.dumps(meta, indent=2) + "\n").encode())
    return folder


def find_stacks(root: str | os.PathLike[str]) -> list[Path]:
    """All ``focal-stack/1`` folders under ``root`` (``root`` itself included), sorted by path.

    Hidden folders (temporary folders of interrupted writes) are skipped.

    Raises:
        FileNotFoundError: ``root`` does not exist.
    """
    root = Path(root)
    if not root.exists():
        raise FileNotFoundError(f"{root}: no such folder")
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        if "stack.json" in filenames:
            found.append(Path(dirpath))
    return sorted(found)
