"""Voice-coil-motor (VCM) lens drivers at I2C address 0x0c, written with smbus2.

Register layouts of the common drivers on motorised-focus camera modules:

=========  ======  =============================================================================
driver     code    how the code is written
=========  ======  =============================================================================
dw9714     10 bit  two bytes, no register: ``[PD FLAG D9..D4] [D3..D0 S3..S0]`` (PD = power down)
dw9807     10 bit  register 0x02 = 0x00 (active), 0x03 = D9..D8, 0x04 = D7..D0; 0x05 bit 0 = busy
dw9817     10 bit  same as dw9807 (Camera Module 3 / imx708, Arducam 64MP)
ak7375     12 bit  register 0x02 = 0x00 (active, 0x40 standby), 0x00..0x01 = code << 4, big endian
=========  ======  =============================================================================

A larger code drives more current through the coil and moves the lens away from the sensor: focus
comes closer. The mapping from code to dioptres is what calibration measures.
"""

from __future__ import annotations

import abc
from typing import Any, ClassVar

__all__ = ["VcmDriver", "DW9714", "DW9807", "AK7375", "VCM_DRIVERS", "make_driver"]


class VcmDriver(abc.ABC):
    """One VCM driver chip on an I2C bus (``bus`` is an ``smbus2.SMBus``)."""

    name: ClassVar[str]
    bits: ClassVar[int]
    has_busy_flag: ClassVar[bool] = False

    def __init__(self, bus: Any, address: int = 0x0C) -> None:
        self.bus = bus
        self.address = int(address)

    @property
    def max_code(self) -> int:
        return (1 << self.bits) - 1

    def check_code(self, code: int) -> int:
        c = int(round(code))
        if not 0 <= c <= self.max_code:
            raise ValueError(f"{self.name}: code {code} outside 0..{self.max_code}")
        return c

    @abc.abstractmethod
    def power_up(self) -> None:
        """Put the driver in active mode."""

    @abc.abstractmethod
    def write_code(self, code: int) -> None:
        """Move the lens to ``code``."""

    @abc.abstractmethod
    def read_code(self) -> int:
        """The code the driver holds."""

    def busy(self) -> bool:
        """True while the driver is still moving the lens (drivers without a busy flag: False)."""
        return False

    @abc.abstractmethod
    def power_down(self) -> None:
        """Release the lens (standby / power-down)."""


class DW9714(VcmDriver):
    """Dongwoon DW9714 (Arducam IMX219 / OV5647 autofocus modules): a 2-byte write, no registers."""

    name = "dw9714"
    bits = 10

    def power_up(self) -> None:
        self.write_code(0)

    def write_code(self, code: int) -> None:
        c = self.check_code(code)
        # first byte: PD = 0, FLAG = 0, D9..D4; second byte: D3..D0, slew-control bits S = 0 (direct)
        self.bus.write_byte_data(self.address, (c >> 4) & 0x3F, (c << 4) & 0xF0)

    def read_code(self) -> int:
        from smbus2 import i2c_msg

        msg = i2c_msg.read(self.address, 2)
        self.bus.i2c_rdwr(msg)
        hi, lo = list(msg)
        return ((hi & 0x3F) << 4) | (lo >> 4)

    def power_down(self) -> None:
        self.bus.write_byte_data(self.address, 0x80, 0x00)  # PD bit


class DW9807(VcmDriver):
    """Dongwoon DW9807 / DW9817: control register 0x02, code in 0x03 (D9..D8) and 0x04 (D7..D0)."""

    name = "dw9807"
    bits = 10
    has_busy_flag = True
    CTL, MSB, LSB, STATUS = 0x02, 0x03, 0x04, 0x05

    def power_up(self) -> None:
        self.bus.write_byte_data(self.address, self.CTL, 0x00)

    def write_code(self, code: int) -> None:
        c = self.check_code(code)
        self.bus.write_i2c_block_data(self.address, self.MSB, [(c >> 8) & 0x03, c & 0xFF])

    def read_code(self) -> int:
        msb, lsb = self.bus.read_i2c_block_data(self.address, self.MSB, 2)
        return ((msb & 0x03) << 8) | lsb

    def busy(self) -> bool:
        return bool(self.bus.read_byte_data(self.address, self.STATUS) & 0x01)

    def power_down(self) -> None:
        self.bus.write_byte_data(self.address, self.CTL, 0x01)


class DW9817(DW9807):
    """DW9817 (Raspberry Pi Camera Module 3 / imx708): the DW9807 register layout."""

    name = "dw9817"


class AK7375(VcmDriver):
    """AKM AK7375 (imx519 modules): 12-bit code shifted left by 4 into registers 0x00..0x01; 0x02 = mode."""

    name = "ak7375"
    bits = 12
    POSITION, CONT = 0x00, 0x02
    ACTIVE, STANDBY = 0x00, 0x40

    def power_up(self) -> None:
        self.bus.write_byte_data(self.address, self.CONT, self.ACTIVE)

    def write_code(self, code: int) -> None:
        v = self.check_code(code) << 4
        self.bus.write_i2c_block_data(self.address, self.POSITION, [(v >> 8) & 0xFF, v & 0xFF])

    def read_code(self) -> int:
        hi, lo = self.bus.read_i2c_block_data(self.address, self.POSITION, 2)
        return ((hi << 8) | lo) >> 4

    def power_down(self) -> None:
        self.bus.write_byte_data(self.address, self.CONT, self.STANDBY)


VCM_DRIVERS: dict[str, type[VcmDriver]] = {"dw9714": DW9714, "dw9807": DW9807, "dw9817": DW9817, "ak7375": AK7375}


def make_driver(name: str, bus: Any, address: int = 0x0C) -> VcmDriver:
    """The driver called ``name`` (see :data:`VCM_DRIVERS`) on ``bus``; ``ValueError`` for an unknown name."""
    try:
        cls = VCM_DRIVERS[name.lower()]
    except KeyError:
        raise ValueError(f"unknown VCM driver {name!r}; known: {', '.join(VCM_DRIVERS)}") from None
    return cls(bus, address)
