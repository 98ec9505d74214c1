"""Lens calibration: fit a camera module's thin-lens focal length, f-number, pixel pitch and focus
mapping from focus sweeps of a printed chart, and write a ``lens/1`` profile.

Three layers (as ROS camera_calibration / mrcal):

- pure functions with no I/O: :mod:`calibration.chart` (layout), :mod:`calibration.measure`
  (chart scale and blur in one frame), :mod:`calibration.fit` (the joint robust fit);
- the capture loop, camera-agnostic: :mod:`calibration.capture` (settle time, sweeps, checks);
- command-line tools: ``python -m calibration`` (``target``, ``fit``, ``simulate``, ``measure``) and
  ``python -m calibration.wizard``.

The physics and its derivation are in ``calibration/README.md``.
"""
