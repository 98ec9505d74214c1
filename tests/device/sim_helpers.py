"""Helpers shared by the device tests (a module, not conftest.py: ``from conftest import`` resolves to whichever
test folder's conftest Python imported first, so it broke when tests/export and tests/device ran in one call)."""

from __future__ import annotations

FOCUS = [1.0, 1.5, 2.5, 4.0, 6.0]


def sim_factory(size=(40, 30), **kw):
    """A factory opening fast (virtual-clock, small) simulated cameras."""
    from device.cameras import open_camera

    kw.setdefault("realtime", False)
    kw.setdefault("size", size)

    def make():
        return open_camera("sim", **kw)

    return make
