"""Params and FLOPs in the paper's conventions: detectors (:mod:`.det_flops`) and segmentors (:mod:`.seg_flops`)."""
