"""``convnext-dense env``: the software stack, for bug reports (see :mod:`convnext_dense.env`)."""
from convnext_dense.env import main

__all__ = ['main']
