"""ONNX export and the ONNX Runtime predictor; onnx / onnxruntime are imported only when used (``pip install
convnext_dense[deploy]``).

- :mod:`~convnext_dense.deploy.export`: writing ``.onnx`` files (backbone, segmentor, detector) and their metadata.
- :mod:`~convnext_dense.deploy.from_config`: ``convnext-dense export CONFIG CHECKPOINT`` (model, test ``Resize``,
  default input shape).
- :mod:`~convnext_dense.deploy.preprocess`: the graphs' input step (normalize, pad as mmdet / mmseg pad a batch)
  and modules rewritten for the exporter.
- :mod:`~convnext_dense.deploy.seg_graph`, :mod:`~convnext_dense.deploy.det_graph`: the exported computations.
- :mod:`~convnext_dense.deploy.predictor`: :class:`~convnext_dense.deploy.predictor.OnnxPredictor`.
"""
