"""Synthetic content for training and evaluation.

- :mod:`model.synth.textures`: texture bank (procedural + scikit-image photos, train / held-out split).
- :mod:`model.synth.scenes`: ``random_scene(rng, h, w, near_m, far_m)`` -> ``(aif, depth)``.
- :mod:`model.synth.layered`: the evaluation renderer (layered, occlusion-aware, uniform-disc PSF).
- :mod:`model.synth.noise`: sensor noise (shot + read, optional quantisation).
- :mod:`model.synth.rgbd`: reading RGB-D folders (``NAME_rgb.png`` + ``NAME_depth.{npy,png}``).

Submodules are imported on demand (``from model.synth.scenes import random_scene``).
"""
