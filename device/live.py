"""The live view: an OpenCV window where a display exists, otherwise a page served on 127.0.0.1.

Both show the all-in-focus image, the colour-mapped depth with a scale in metres, the confidence and
the rates, and the depth under the pointer.

The page (``device/web/index.html``, stdlib ``http.server``, bound to 127.0.0.1 only) polls
``/state.json`` and reloads ``/aif.png``, ``/depth.png``, ``/confidence.png`` when a new prediction is
there; ``/scale.png`` is the scale bar; ``/depth_at?x=X&y=Y`` returns the depth (metres) at a pixel of
the latest depth map.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import numpy as np

from device.visual import colorize_confidence, colorize_depth, depth_at, scale_bar
from model.formats import encode_png

__all__ = ["LiveState", "LiveServer", "LiveWindow", "gui_available"]

log = logging.getLogger(__name__)

WEB_DIR = Path(__file__).resolve().parent / "web"


class LiveState:
    """The latest prediction as encoded images, its depth map and the statistics (thread-safe).

    Args:
        near_m, far_m: the depth range of the colour scale, metres.
    """

    def __init__(self, near_m: float, far_m: float, runtime: str = "", camera: str = "") -> None:
        self.near_m, self.far_m = float(near_m), float(far_m)
        self.runtime, self.camera = runtime, camera
        self._lock = threading.Lock()
        self.seq = 0
        self._png: dict[str, bytes] = {}
        self._depth: np.ndarray | None = None
        self._stats: dict[str, Any] = {}
        self._scale = encode_png(scale_bar(240, self.near_m, self.far_m))

    def update(self, depth_m: np.ndarray, aif: np.ndarray, confidence: np.ndarray | None, stats: dict[str, Any],
               focus_m: list[float] | None = None) -> None:
        """Store a new prediction (encodes the PNGs once, here, not per request)."""
        png = {
            "aif": encode_png(np.asarray(aif, np.float32)),
            "depth": encode_png(colorize_depth(depth_m, self.near_m, self.far_m)),
        }
        if confidence is not None:
            png["confidence"] = encode_png(colorize_confidence(confidence))
        with self._lock:
            self._png = png
            self._depth = np.asarray(depth_m, np.float32).copy()
            self._stats = dict(stats)
            if focus_m is not None:
                self._stats["focus_m"] = [float(f) for f in focus_m]
            self.seq += 1

    def set_stats(self, stats: dict[str, Any]) -> None:
        with self._lock:
            self._stats = dict(stats)

    def png(self, name: str) -> bytes | None:
        if name == "scale":
            return self._scale
        with self._lock:
            return self._png.get(name)

    def depth_at(self, x: int, y: int) -> float | None:
        with self._lock:
            return None if self._depth is None else depth_at(self._depth, x, y)

    def state(self) -> dict[str, Any]:
        with self._lock:
            h, w = self._depth.shape if self._depth is not None else (0, 0)
            return {
                "seq": self.seq,
                "width": int(w),
                "height": int(h),
                "near_m": self.near_m,
                "far_m": self.far_m,
                "runtime": self.runtime,
                "camera": self.camera,
                "has_confidence": "confidence" in self._png,
                "stats": _jsonable(self._stats),
            }


def _jsonable(v: Any) -> Any:
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and v != v:
        return None
    return v


class _Handler(BaseHTTPRequestHandler):
    state: LiveState  # set on the subclass made by LiveServer
    server_version = "daif-live/1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        log.debug("http: " + format, *args)

    def _send(self, status: int, body: bytes, ctype: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def _json(self, obj: Any, status: int = HTTPStatus.OK) -> None:
        self._send(status, json.dumps(obj).encode(), "application/json")

    def do_GET(self) -> None:  # noqa: N802 - the base class's name
        url = urlparse(self.path)
        path = url.path
        try:
            if path in ("/", "/index.html"):
                self._send(HTTPStatus.OK, (WEB_DIR / "index.html").read_bytes(), "text/html; charset=utf-8")
            elif path == "/state.json":
                self._json(self.state.state())
            elif path in ("/aif.png", "/depth.png", "/confidence.png", "/scale.png"):
                body = self.state.png(path[1:-4])
                if body is None:
                    self._send(HTTPStatus.SERVICE_UNAVAILABLE, b"no prediction yet", "text/plain")
                else:
                    self._send(HTTPStatus.OK, body, "image/png")
            elif path == "/depth_at":
                q = parse_qs(url.query)
                try:
                    x, y = int(q["x"][0]), int(q["y"][0])
                except (KeyError, ValueError, IndexError):
                    self._json({"error": "need integer x and y"}, HTTPStatus.BAD_REQUEST)
                    return
                self._json({"x": x, "y": y, "depth_m": self.state.depth_at(x, y), "seq": self.state.seq})
            else:
                self._send(HTTPStatus.NOT_FOUND, b"not found", "text/plain")
        except (BrokenPipeError, ConnectionResetError):
            pass


class LiveServer:
    """Serves the live page on ``127.0.0.1:port`` (``port=0`` picks a free one) from a background thread."""

    def __init__(self, state: LiveState, port: int = 8000, host: str = "127.0.0.1") -> None:
        if host not in ("127.0.0.1", "localhost", "::1"):
            raise ValueError(f"the live page is served on the loopback interface only, not {host!r}")
        handler = type("LiveHandler", (_Handler,), {"state": state})
        self.httpd = ThreadingHTTPServer((host, int(port)), handler)
        self.httpd.daemon_threads = True
        self.port = int(self.httpd.server_address[1])
        self.url = f"http://{host}:{self.port}/"
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="live-http", daemon=True)

    def start(self) -> "LiveServer":
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop serving (idempotent)."""
        if self._thread.is_alive():
            self.httpd.shutdown()
            self._thread.join(5)
        self.httpd.server_close()

    def __enter__(self) -> "LiveServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


def gui_available() -> bool:
    """True when OpenCV has a GUI backend and a display is reachable (``opencv-python-headless`` has none)."""
    if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return False
    try:
        import cv2

        info = cv2.getBuildInformation()
        gui = [ln for ln in info.splitlines() if ln.strip().startswith("GUI:")]
        if gui and "NONE" in gui[0].upper():
            return False
        cv2.namedWindow("daif-probe", cv2.WINDOW_NORMAL)
        cv2.destroyWindow("daif-probe")
        return True
    except Exception:  # noqa: BLE001 - cv2.error and friends: no GUI
        return False


class LiveWindow:
    """An OpenCV window: AIF | depth with scale | confidence, rates below, depth under the pointer."""

    NAME = "DAIF-Net depth"

    def __init__(self, state: LiveState) -> None:
        import cv2

        self.cv2 = cv2
        self.state = state
        self.pointer: tuple[int, int] | None = None
        self._tile_w = 0
        self._scale = 1
        cv2.namedWindow(self.NAME, cv2.WINDOW_AUTOSIZE)
        cv2.setMouseCallback(self.NAME, self._on_mouse)

    def _on_mouse(self, event: int, x: int, y: int, flags: int, param: Any) -> None:
        if self._tile_w and self._tile_w <= x < 2 * self._tile_w:
            self.pointer = ((x - self._tile_w) // self._scale, y // self._scale)
        else:
            self.pointer = None

    def show(self, depth_m: np.ndarray, aif: np.ndarray, confidence: np.ndarray | None, lines: list[str]) -> bool:
        """Draw one update; returns False when the user closed the window or pressed q / Esc."""
        cv2 = self.cv2
        h, w = depth_m.shape
        k = max(1, 240 // h)
        self._scale, self._tile_w = k, w * k

        def up(img: np.ndarray) -> np.ndarray:
            return np.repeat(np.repeat(img, k, 0), k, 1) if k > 1 else img

        tiles = [up((np.clip(aif, 0, 1) * 255).astype(np.uint8)), up(colorize_depth(depth_m, self.state.near_m, self.state.far_m))]
        tiles.append(up(colorize_confidence(confidence)) if confidence is not None else np.zeros_like(tiles[0]))
        tiles.append(scale_bar(h * k, self.state.near_m, self.state.far_m, dark=True))
        row = np.concatenate(tiles, axis=1)
        if self.pointer is not None:
            v = depth_at(depth_m, *self.pointer)
            lines = lines + [f"depth at ({self.pointer[0]}, {self.pointer[1]}): " + ("unknown" if v is None else f"{v:.2f} m")]
        text = np.zeros((18 * len(lines) + 8, row.shape[1], 3), np.uint8)
        for i, ln in enumerate(lines):
            cv2.putText(text, ln, (6, 18 * (i + 1)), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
        frame = np.concatenate([row, text], axis=0)
        cv2.imshow(self.NAME, frame[:, :, ::-1])
        return self.poll()

    def poll(self, wait_ms: int = 1) -> bool:
        key = self.cv2.waitKey(wait_ms) & 0xFF
        if key in (ord("q"), 27):
            return False
        try:
            return self.cv2.getWindowProperty(self.NAME, self.cv2.WND_PROP_VISIBLE) >= 1
        except Exception:  # noqa: BLE001
            return False

    def close(self) -> None:
        try:
            self.cv2.destroyWindow(self.NAME)
        except Exception:  # noqa: BLE001
            pass
