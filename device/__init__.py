"""On-board capture and depth: cameras with motorised focus, focus sweeps, live inference.

- :mod:`device.cameras`: one camera interface (simulated, picamera2, Jetson VCM over I2C, V4L2/UVC);
  ``open_camera(kind, lens=..., **opts)``.
- :mod:`device.sweep`: the sweep scheduler (the model's focus distances, ping-pong order, settle waits,
  sliding-window stacks) and focus-breathing alignment (:mod:`device.align`).
- :mod:`device.pipeline`: concurrent capture and inference with bounded queues, statistics, reconnects.
- :mod:`device.recorder`: writes captured stacks as ``focal-stack/1`` folders and predictions.
- :mod:`device.visual`: colour-mapped depth with a scale bar in metres (pure NumPy + matplotlib).
- :mod:`device.live`: the live view (OpenCV window or a page served on 127.0.0.1).
- ``python -m device.capture``: the command-line tool.
"""
