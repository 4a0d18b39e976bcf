"""Synthetic data for the built-in demo and the tests (numpy and PIL only; no mmdet or mmseg)."""
from convnext_dense.datasets.shapes import (SEG_CLASSES, SEG_PALETTE, SHAPES_CLASSES, SHAPES_PALETTE,
                                            make_shapes)

__all__ = ['SEG_CLASSES', 'SEG_PALETTE', 'SHAPES_CLASSES', 'SHAPES_PALETTE', 'make_shapes']
