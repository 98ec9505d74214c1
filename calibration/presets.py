"""Nominal numbers of common motorised-focus camera modules: starting points and sanity checks only.

Values are the makers' published nominal figures (focal length, f-number, pixel pitch of the full
sensor). The fit never needs them; the wizard uses them to suggest chart distances before the first
capture and to warn when a fit lands far from what the module should be.
"""

from __future__ import annotations

from dataclasses import dataclass

from calibration.fit import LensGuess

__all__ = ["Preset", "PRESETS", "get_preset", "guess_from_numbers"]


@dataclass(frozen=True)
class Preset:
    """A camera module's nominal optics.

    Attributes:
        key: short name used on the command line.
        description: what it is.
        focal_length_m, f_number: nominal lens.
        pixel_pitch_m: pitch of the full-resolution sensor, metres.
        native_size: ``(width, height)`` of the full-resolution sensor, pixels.
        control: the raw focus control (``LensPosition`` for libcamera / picamera2).
        focus_range_dioptres: nominal focus range.
    """

    key: str
    description: str
    focal_length_m: float
    f_number: float
    pixel_pitch_m: float
    native_size: tuple[int, int]
    control: str = "LensPosition"
    focus_range_dioptres: tuple[float, float] = (0.0, 10.0)

    def guess(self, image_size: tuple[int, int] | None = None) -> LensGuess:
        """The guess for frames of ``image_size`` (the pitch scaled from the native width)."""
        p = self.pixel_pitch_m
        if image_size is not None:
            p = self.pixel_pitch_m * self.native_size[0] / float(image_size[0])
        return LensGuess(focal_length_m=self.focal_length_m, f_number=self.f_number, pixel_pitch_m=p, name=self.description)


PRESETS: dict[str, Preset] = {
    p.key: p
    for p in (
        Preset("camera-module-3", "Raspberry Pi Camera Module 3 (IMX708)", 4.74e-3, 1.8, 1.4e-6, (4608, 2592), "LensPosition", (0.0, 15.0)),
        Preset("camera-module-3-wide", "Raspberry Pi Camera Module 3 Wide (IMX708)", 2.75e-3, 2.2, 1.4e-6, (4608, 2592), "LensPosition", (0.0, 15.0)),
        Preset("imx519", "Arducam 16MP IMX519 autofocus", 4.28e-3, 1.75, 1.22e-6, (4656, 3496), "LensPosition", (0.0, 12.0)),
        Preset("arducam-64mp", "Arducam 64MP Hawkeye autofocus", 5.1e-3, 1.8, 0.8e-6, (9152, 6944), "LensPosition", (0.0, 12.0)),
    )
}


def get_preset(key: str) -> Preset:
    """The preset called ``key``; ``ValueError`` listing the known ones otherwise."""
    try:
        return PRESETS[key]
    except KeyError:
        raise ValueError(f"unknown preset {key!r} (known: {', '.join(PRESETS)})") from None


def guess_from_numbers(
    focal_length_mm: float | None,
    f_number: float | None,
    pixel_um: float | None,
    native_width: int | None,
    image_size: tuple[int, int] | None,
) -> LensGuess | None:
    """A guess from a user's own numbers (any may be missing); ``None`` if none is given."""
    if focal_length_mm is None and f_number is None and pixel_um is None:
        return None
    p = None
    if pixel_um is not None:
        p = pixel_um * 1e-6
        if native_width and image_size:
            p *= native_width / float(image_size[0])
    return LensGuess(
        focal_length_m=None if focal_length_mm is None else focal_length_mm * 1e-3,
        f_number=f_number,
        pixel_pitch_m=p,
        name="your",
    )
