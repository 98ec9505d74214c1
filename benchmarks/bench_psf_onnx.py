"""GaussPSF in onnxruntime: the native C++ op against the same computation written in plain ONNX operators.

Usage:
    python benchmarks/bench_psf_onnx.py [--size 5x240x320] [--radius 32] [--threads 1] [--repeats 3]

The plain-ONNX form is the factorised gather of ``model.render`` (one exp table of ``R + 1`` planes, then
``(R+1)^2`` groups of elementwise Mul/Add/Slice, one per offset magnitude ``(|dy|, |dx|)``), traced from PyTorch
into one ONNX graph of about ``7 (R+1)^2`` nodes. Both run in onnxruntime on the same inputs: the blur map and
AIF of the shipped model on the Motorcycle stack (``--random`` for uniform random blur in ``[0, R/3]`` px
instead). Printed: session creation time, median run time, the ratio, and both results' largest difference
from ``model.render.gauss_psf``. This is the measurement behind using the C++ op rather than plain operators.

Memory: at radius 32 the plain graph has about 27,000 nodes (tracing takes about a minute). With onnxruntime's
default memory arena, 5 x 240 x 320 exhausted 23 GB and was killed; the arena and memory pattern are off for
the plain graph here, and 2 x 240 x 320 ran within a 10 GB address-space limit. Measured (2 x 240 x 320, R 32,
one thread, shared 2-core x86-64 machine): native 62 ms, plain ONNX 2113 ms (34x), both within 4.1e-6 of
``model.render``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

_ROOT = Path(__file__).resolve().parents[1]
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))


def _plain_module(radius: int) -> Any:
    import torch
    import torch.nn.functional as F
    from torch import nn

    from model.render import MIN_SIGMA_PX

    class PlainGaussPsf(nn.Module):
        """``(image (N,C,H,W), sigma (N,1,H,W)) -> (N,C,H,W)`` with plain tensor operations only."""

        def forward(self, image: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
            r = radius
            c, h, w = image.shape[1], image.shape[2], image.shape[3]
            b = 1.0 / (sigma * sigma + MIN_SIGMA_PX * MIN_SIGMA_PX)
            u = F.pad(torch.cat([image * b, b], dim=1), (r, r, r, r))
            k2 = (torch.arange(r + 1, dtype=image.dtype) ** 2 * -0.5).view(1, -1, 1, 1)
            g = torch.exp(F.pad(b, (r, r, r, r)) * k2)  # (N, R+1, H+2R, W+2R); padding multiplies u = 0
            acc = torch.zeros_like(u[:, :, :h, :w])
            for ky in range(r + 1):
                ap = u[:, :, r + ky:r + ky + h] * g[:, ky:ky + 1, r + ky:r + ky + h]
                am = u[:, :, r - ky:r - ky + h] * g[:, ky:ky + 1, r - ky:r - ky + h]
                for kx in range(r + 1):
                    q = ap * g[:, kx:kx + 1, r + ky:r + ky + h]
                    if ky:
                        q = q + am * g[:, kx:kx + 1, r - ky:r - ky + h]
                    acc = acc + q[..., r + kx:r + kx + w]
                    if kx:
                        acc = acc + q[..., r - kx:r - kx + w]
            return acc[:, :c] / acc[:, c:]

    return PlainGaussPsf()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", default="5x240x320", help="SxHxW: frames and image size (default 5x240x320)")
    p.add_argument("--radius", type=int, default=32, help="PSF window radius, px (default 32)")
    p.add_argument("--threads", type=int, default=1, help="onnxruntime intra-op threads (default 1)")
    p.add_argument("--repeats", type=int, default=3, help="timed runs (default 3)")
    p.add_argument("--random", action="store_true", help="random blur instead of the model's on the Motorcycle stack")
    args = p.parse_args(argv)
    try:
        s, h, w = (int(v) for v in args.size.lower().split("x"))
    except ValueError:
        p.error(f"--size is SxHxW, got {args.size!r}")
    if not 0 <= args.radius <= 64 or args.threads < 1 or args.repeats < 1:
        p.error("--radius must be in [0, 64], --threads and --repeats >= 1")

    import numpy as np
    import onnxruntime as ort
    import torch

    from export import ort_ops
    from export.targets import ORT_DOMAIN, PSF_OP_TYPE
    from model.render import gauss_psf

    torch.set_num_threads(args.threads)
    if args.random:
        rng = np.random.default_rng(0)
        image = rng.random((s, 3, h, w), dtype=np.float32)
        sigma = (rng.random((s, 1, h, w)) * args.radius / 3).astype(np.float32)
        what = f"random blur in [0, {args.radius / 3:.1f}] px"
    else:
        import export.onnx_export as onnx_export
        import export.selftest as selftest
        from model.optics import defocus_sigma_map

        # public names (being renamed from the private ones at the time of writing): either works
        focus_for = getattr(onnx_export, "focus_for_stack", None) or getattr(onnx_export, "_focus_for")
        load_model = getattr(selftest, "load_or_untrained", None) or getattr(selftest, "_load_or_untrained")
        loaded, _ = load_model(None)
        net = loaded.net.eval()
        focus = focus_for(loaded.focus_m, s)
        images, focus_arr, _ = onnx_export.reference_stack(loaded.lens, focus, (w, h),
                                                           (net.config.near_m, net.config.far_m))
        x = torch.from_numpy(images).permute(0, 3, 1, 2).unsqueeze(0)
        f = torch.from_numpy(focus_arr).unsqueeze(0)
        with torch.inference_mode():
            out = net(x, f)
            sig = defocus_sigma_map(out.depth_m, f, loaded.lens)
        image = np.ascontiguousarray(out.aif.numpy().repeat(s, axis=0))
        sigma = np.ascontiguousarray(sig.numpy().reshape(s, 1, h, w))
        what = f"the shipped model's AIF and blur on the Motorcycle stack (blur up to {float(sigma.max()):.1f} px)"
    print(f"GaussPSF {s}x3x{h}x{w}, radius {args.radius}, {what}; onnxruntime {ort.__version__}, "
          f"threads {args.threads}, median of {args.repeats}")
    with torch.inference_mode():
        ref = gauss_psf(torch.from_numpy(image), torch.from_numpy(sigma), args.radius).numpy()
    feeds = {"image": image, "sigma": sigma}
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-psf-onnx-") as tmp:
        import onnx
        from onnx import TensorProto, helper

        native_path = Path(tmp) / "native.onnx"
        node = helper.make_node(PSF_OP_TYPE, ["image", "sigma"], ["out"], domain=ORT_DOMAIN, radius=args.radius)
        graph = helper.make_graph([node], "psf", [helper.make_tensor_value_info("image", TensorProto.FLOAT, [s, 3, h, w]),
                                                  helper.make_tensor_value_info("sigma", TensorProto.FLOAT, [s, 1, h, w])],
                                  [helper.make_tensor_value_info("out", TensorProto.FLOAT, None)])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(ORT_DOMAIN, 1)])
        model.ir_version = 8
        onnx.save(model, str(native_path))

        plain_path = Path(tmp) / "plain.onnx"
        t0 = time.perf_counter()
        torch.onnx.export(_plain_module(args.radius), (torch.from_numpy(image), torch.from_numpy(sigma)),
                          str(plain_path), input_names=["image", "sigma"], output_names=["out"], opset_version=17,
                          dynamo=False)
        n_nodes = len(onnx.load(str(plain_path)).graph.node)
        print(f"plain-ONNX graph: {n_nodes} nodes (traced in {time.perf_counter() - t0:.1f} s)")

        for label, path, custom in (("native C++ op", native_path, True), ("plain ONNX operators", plain_path, False)):
            t0 = time.perf_counter()
            so = ort_ops.session_options(args.threads, custom_ops=custom, backend="native" if custom else None)
            if not custom:  # thousands of intermediates: no arena, no memory pattern (the arena kept them all)
                so.enable_cpu_mem_arena = False
                so.enable_mem_pattern = False
            sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
            t_init = time.perf_counter() - t0
            (got,) = sess.run(None, feeds)
            times = []
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                sess.run(None, feeds)
                times.append(time.perf_counter() - t0)
            ms = 1e3 * statistics.median(times)
            diff = float(np.abs(got - ref).max())
            rows.append(ms)
            print(f"{label:<22} session {t_init:6.1f} s   run {ms:9.1f} ms   max |diff| vs model.render {diff:.1e}",
                  flush=True)
    print(f"plain ONNX / native: {rows[1] / rows[0]:.1f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
