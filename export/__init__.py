"""Export DAIF-Net for deployment: ONNX (onnxruntime, TensorRT), TensorRT engines, and their runners.

Command line: ``python -m export onnx|engine|selftest|info`` (see ``docs/export.md``, the Jetson guide).

Modules (imported on demand; ``import export`` itself is cheap):

* :mod:`export.targets` - the validated table of targets (``onnxruntime``, ``tensorrt``, ``engine``) and
  the conversion between the two ONNX flavours of the physics graph.
* :mod:`export.onnx_export` - ``torch_to_onnx``, ``check_onnx``, ``export_onnx``.
* :mod:`export.physics_graph` - the traced module: DAIF-Net, thin-lens blur, ``GaussPSF``, confidence.
* :mod:`export.engine` - ``onnx_to_engine`` (TensorRT builder, INT8 calibration, timing cache), ``trtexec_command``.
* :mod:`export.runtime` - ``OnnxRunner``, ``TensorRTRunner`` (the ``model.runners.Runner`` interface).
* :mod:`export.cuda_backend` - device/pinned memory and streams through cuda-python or pycuda.
* :mod:`export.ort_ops` - ``GaussPSF`` as an onnxruntime-extensions Python op.
* :mod:`export.metadata` - ONNX ``metadata_props`` and the JSON file beside every export.
* :mod:`export.psf_ext` - build/load the GaussPSF CUDA kernel, TensorRT plugin and CPU library.
* :mod:`export.selftest` - ``python -m export selftest``.
"""

__all__: list[str] = []
