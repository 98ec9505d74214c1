"""The ``lens/1`` lens profile: thin-lens focal length, aperture, pixel pitch and focus control.

See ``shared/FORMATS.md``. ``pixel_pitch_m`` is the pitch of a pixel of the images at ``image_size``
(after binning or resizing); :meth:`LensProfile.scaled_to` rescales it for another image size.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping

from model.atomic import atomic_write_json
from model.errors import FormatError
from model.jsonfile import read_json_object

__all__ = ["FocusControl", "LensProfile", "LENS_FORMAT", "positive_number"]

LENS_FORMAT = "lens/1"


def positive_number(value: Any, path: str | os.PathLike[str] | None, key: str) -> float:
    """Return ``value`` as a float if it is a positive finite number, else raise :class:`FormatError`."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise FormatError(path, key, f"expected a positive number, got {value!r}")
    v = float(value)
    if not math.isfinite(v) or v <= 0:
        raise FormatError(path, key, f"expected a positive finite number, got {value!r}")
    return v


def _finite_number(value: Any, path: str | os.PathLike[str] | None, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(float(value)):
        raise FormatError(path, key, f"expected a finite number, got {value!r}")
    return float(value)


# Plausible ranges of a real camera's thin-lens numbers (a file outside them almost always has a unit slip)
_PLAUSIBLE = {
    "focal_length_m": (0.5e-3, 2.0, "metres (e.g. 0.05 for a 50 mm lens)"),
    "f_number": (0.5, 64.0, "the f-number N (e.g. 1.8 for f/1.8)"),
    "pixel_pitch_m": (0.2e-6, 200e-6, "metres per pixel at image_size (e.g. 1.12e-06 for 1.12 um)"),
}


def _check_plausible(f: float, n: float, p: float, source: str | os.PathLike[str] | None) -> None:
    for key, v in (("focal_length_m", f), ("f_number", n), ("pixel_pitch_m", p)):
        lo, hi, unit = _PLAUSIBLE[key]
        if not lo <= v <= hi:
            raise FormatError(source, key, f"{v:g} is not a plausible value ({lo:g} to {hi:g}); it is in {unit}")


@dataclass(frozen=True)
class FocusControl:
    """Maps the camera's raw focus control value ``v`` to focus distance: ``1/d = a*v + b`` (dioptres).

    For picamera2's ``LensPosition`` (already dioptres) ``a = 1, b = 0``.
    """

    model: str = "dioptre-linear"
    control: str = "LensPosition"
    a: float = 1.0
    b: float = 0.0

    def dioptres(self, value: float) -> float:
        """Focus in dioptres (1/m) for control value ``value``."""
        return self.a * float(value) + self.b

    def distance_m(self, value: float) -> float:
        """Focus distance in metres for control value ``value`` (``inf`` at 0 dioptres or beyond)."""
        dpt = self.dioptres(value)
        return math.inf if dpt <= 0 else 1.0 / dpt

    def control_value(self, distance_m: float) -> float:
        """Control value that focuses at ``distance_m`` metres (``inf`` means 0 dioptres)."""
        if self.a == 0:
            raise ValueError("focus_control.a is 0: the mapping cannot be inverted")
        dpt = 0.0 if math.isinf(distance_m) else 1.0 / float(distance_m)
        return (dpt - self.b) / self.a

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "control": self.control, "a": self.a, "b": self.b}

    @classmethod
    def from_dict(cls, d: Any, source: str | os.PathLike[str] | None = None) -> "FocusControl":
        if not isinstance(d, Mapping):
            raise FormatError(source, "focus_control", f"expected an object, got {type(d).__name__}")
        unknown = sorted(set(d) - {"model", "control", "a", "b"})
        if unknown:
            raise FormatError(source, f"focus_control.{unknown[0]}", "unknown key (known: model, control, a, b); check the spelling")
        model = d.get("model", "dioptre-linear")
        if model != "dioptre-linear":
            raise FormatError(source, "focus_control.model", f"unknown model {model!r} (known: 'dioptre-linear')")
        a = _finite_number(d.get("a", 1.0), source, "focus_control.a")
        if a == 0:
            raise FormatError(source, "focus_control.a", "is 0: every control value would give the same focus; "
                              "re-run the calibration fit (python -m calibration fit)")
        return cls(
            model=model,
            control=str(d.get("control", "LensPosition")),
            a=a,
            b=_finite_number(d.get("b", 0.0), source, "focus_control.b"),
        )


@dataclass(frozen=True)
class LensProfile:
    """A thin lens and the sensor it images onto.

    Attributes:
        focal_length_m: focal length ``f`` in metres.
        f_number: ``N``; the aperture diameter is ``A = f / N`` metres.
        pixel_pitch_m: size of one pixel of images at ``image_size``, metres.
        name: a human-readable name.
        image_size: ``(width, height)`` in pixels the pitch refers to, or ``None``.
        focus_control: the control-value to focus-distance mapping, or ``None``.
        fit: what calibration measured (free-form), or ``None``.
        extra: other keys found in the file (kept so they round-trip, e.g. ``settle_time_s``).
    """

    focal_length_m: float
    f_number: float
    pixel_pitch_m: float
    name: str = "unnamed"
    image_size: tuple[int, int] | None = None
    focus_control: FocusControl | None = None
    fit: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for key in ("focal_length_m", "f_number", "pixel_pitch_m"):
            positive_number(getattr(self, key), None, key)

    @property
    def aperture_m(self) -> float:
        """Aperture diameter ``A = f / N`` in metres."""
        return self.focal_length_m / self.f_number

    def scaled_to(self, image_size: tuple[int, int]) -> "LensProfile":
        """The same lens for images resized to ``image_size = (width, height)``: the pitch is rescaled.

        Raises ``ValueError`` if the profile has no ``image_size`` or the aspect ratio changes.
        """
        w, h = int(image_size[0]), int(image_size[1])
        if self.image_size is None:
            raise ValueError(f"lens {self.name!r} has no image_size, cannot rescale its pixel pitch")
        w0, h0 = self.image_size
        if (w0, h0) == (w, h):
            return self
        sx, sy = w0 / w, h0 / h
        if abs(sx - sy) > 0.02 * max(sx, sy):
            raise ValueError(f"lens {self.name!r}: image size {w}x{h} does not keep the aspect of {w0}x{h0}")
        return replace(self, pixel_pitch_m=self.pixel_pitch_m * (sx + sy) / 2, image_size=(w, h))

    def thin_lens_dict(self) -> dict[str, float]:
        """The three thin-lens numbers as used inline in ``focal-stack/1``."""
        return {"focal_length_m": self.focal_length_m, "f_number": self.f_number, "pixel_pitch_m": self.pixel_pitch_m}

    def to_dict(self) -> dict[str, Any]:
        """The ``lens/1`` JSON object."""
        d: dict[str, Any] = {"format": LENS_FORMAT, "name": self.name, **self.thin_lens_dict()}
        if self.image_size is not None:
            d["image_size"] = [int(self.image_size[0]), int(self.image_size[1])]
        if self.focus_control is not None:
            d["focus_control"] = self.focus_control.to_dict()
        if self.fit is not None:
            d["fit"] = dict(self.fit)
        for k, v in self.extra.items():
            d.setdefault(k, v)
        return d

    @classmethod
    def from_dict(
        cls, d: Any, source: str | os.PathLike[str] | None = None, require_format: bool = True
    ) -> "LensProfile":
        """Parse a ``lens/1`` object (``require_format=False`` accepts the three inline numbers alone).

        Raises :class:`FormatError` naming ``source`` and the offending key.
        """
        if not isinstance(d, Mapping):
            raise FormatError(source, None, f"expected a JSON object, got {type(d).__name__}")
        if require_format or "format" in d:
            fmt = d.get("format")
            if fmt != LENS_FORMAT:
                raise FormatError(source, "format", f"expected {LENS_FORMAT!r}, got {fmt!r}")
        for key in ("focal_length_m", "f_number", "pixel_pitch_m"):
            if key not in d:
                raise FormatError(source, key, "missing")
        f = positive_number(d["focal_length_m"], source, "focal_length_m")
        n = positive_number(d["f_number"], source, "f_number")
        p = positive_number(d["pixel_pitch_m"], source, "pixel_pitch_m")
        _check_plausible(f, n, p, source)
        image_size = None
        if d.get("image_size") is not None:
            size = d["image_size"]
            if (
                not isinstance(size, (list, tuple))
                or len(size) != 2
                or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in size)
            ):
                raise FormatError(source, "image_size", f"expected [width, height] in pixels, got {size!r}")
            image_size = (int(size[0]), int(size[1]))
        fc = FocusControl.from_dict(d["focus_control"], source) if d.get("focus_control") is not None else None
        fit = d.get("fit")
        if fit is not None and not isinstance(fit, Mapping):
            raise FormatError(source, "fit", "expected an object")
        known = {"format", "name", "focal_length_m", "f_number", "pixel_pitch_m", "image_size", "focus_control", "fit"}
        extra = {k: v for k, v in d.items() if k not in known}
        return cls(
            focal_length_m=f,
            f_number=n,
            pixel_pitch_m=p,
            name=str(d.get("name", "unnamed")),
            image_size=image_size,
            focus_control=fc,
            fit=dict(fit) if fit is not None else None,
            extra=extra,
        )

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> "LensProfile":
        """Read a ``lens/1`` file; raises :class:`FormatError` naming the file and key."""
        path = Path(path)
        return cls.from_dict(read_json_object(path), source=path)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write this profile as ``lens/1`` JSON, atomically."""
        return atomic_write_json(path, self.to_dict())
