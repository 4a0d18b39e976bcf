"""Prints the software stack, the first thing a bug report needs: ``python -m convnext_dense.env``.

With ``--check`` it exits non-zero when a required part is missing or mmcv's compiled ops do not load.
"""
import argparse
import importlib
import platform
import sys
from typing import Dict, List, Tuple

REQUIRED = ('torch', 'torchvision', 'mmcv', 'mmengine', 'mmdet', 'mmseg')
OPTIONAL = ('timm', 'mmpretrain', 'pycocotools', 'numpy', 'cv2')


def _version(name: str) -> str:
    try:
        module = importlib.import_module(name)
    except Exception as error:  # any import failure is what the report must show
        return f'not importable ({type(error).__name__}: {error})'
    return str(getattr(module, '__version__', 'unknown version'))


def _mmcv_ops() -> str:
    try:
        import torch
        from mmcv.ops import nms
        boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [1.0, 1.0, 10.0, 10.0]])
        _, keep = nms(boxes, torch.tensor([0.9, 0.8]), iou_threshold=0.5)
        return f'compiled ops load (nms kept {keep.tolist()})'
    except Exception as error:
        return f'compiled ops FAIL ({type(error).__name__}: {error})'


def collect() -> List[Tuple[str, str]]:
    """Returns ``(name, description)`` rows for Python, the platform, the stack and the device."""
    rows = [('python', sys.version.split()[0]), ('platform', platform.platform())]
    versions: Dict[str, str] = {name: _version(name) for name in REQUIRED + OPTIONAL}
    try:
        import torch
        cuda = (f'CUDA {torch.version.cuda}, {torch.cuda.device_count()} device(s)'
                f'{": " + torch.cuda.get_device_name(0) if torch.cuda.is_available() else ", none visible"}'
                if torch.version.cuda else 'CPU-only build')
        versions['torch'] += f' ({cuda})'
    except ImportError:
        pass
    if not versions['mmcv'].startswith('not importable'):
        versions['mmcv'] += f' ({_mmcv_ops()})'
    from convnext_dense.version import __version__
    rows += [(name, versions[name]) for name in REQUIRED + OPTIONAL]
    rows.append(('convnext_dense', __version__))
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument('--check', action='store_true', help='exit 1 if a required part is broken')
    args = parser.parse_args(argv)
    rows = collect()
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f'{name:<{width}}  {value}')
    broken = [name for name, value in rows
              if name in REQUIRED and ('not importable' in value or 'FAIL' in value)]
    if args.check and broken:
        print(f'broken: {", ".join(broken)}', file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
