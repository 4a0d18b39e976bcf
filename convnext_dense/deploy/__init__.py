"""ONNX export (:mod:`~convnext_dense.deploy.export`) and the ONNX Runtime predictor
(:mod:`~convnext_dense.deploy.predictor`). Both import onnx / onnxruntime only when used (``pip install
convnext_dense[deploy]``)."""
