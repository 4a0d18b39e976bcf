"""``convnext-dense env``: the software stack, the first thing a bug report needs.

Python, the platform, torch and its device, mmcv and which ops it runs (its compiled ``_ext``, or
convnext_dense's on torchvision over mmcv-lite), mmengine, mmdet, mmseg and the test references. With
``--check`` it exits 1 when a required part is missing or mmcv's ops do not run.
"""
import argparse
import importlib
import platform
import sys
from typing import Dict, List, Optional, Sequence, Tuple

REQUIRED = ('torch', 'torchvision', 'mmcv', 'mmengine', 'mmdet', 'mmseg')
OPTIONAL = ('timm', 'mmpretrain', 'pycocotools', 'numpy', 'cv2')
OPS_ROW = 'mmcv ops'
BROKEN = ('not importable', 'FAIL')


def _version(name: str) -> str:
    try:
        module = importlib.import_module(name)
    except Exception as error:  # any import failure is what the report must show
        return f'not importable ({type(error).__name__}: {error})'
    return str(getattr(module, '__version__', 'unknown version'))


def _torch_device() -> str:
    import torch
    if not torch.version.cuda:
        return 'CPU-only build'
    visible = f': {torch.cuda.get_device_name(0)}' if torch.cuda.is_available() else ', none visible'
    return f'CUDA {torch.version.cuda}, {torch.cuda.device_count()} device(s){visible}'


def mmcv_ops() -> str:
    """Which ``mmcv._ext`` is in use, checked by running RoIAlign and NMS through ``mmcv.ops``."""
    try:
        import torch
        from mmcv.ops import nms, roi_align

        from convnext_dense.mmcv_ops import OURS, ext_provider
        kind, file = ext_provider()
        _, keep = nms(torch.tensor([[0.0, 0.0, 10.0, 10.0], [1.0, 1.0, 10.0, 10.0]]), torch.tensor([0.9, 0.8]),
                      iou_threshold=0.5)
        pooled = roi_align(torch.ones(1, 1, 8, 8), torch.tensor([[0.0, 1.0, 1.0, 5.0, 5.0]]), (2, 2))
    except Exception as error:
        return f'FAIL ({type(error).__name__}: {error})'
    run = f'nms kept {keep.tolist()}, RoIAlign of ones {pooled.mean().item():g}'
    if kind == OURS:
        return (f'convnext_dense RoIAlign, NMS, soft-NMS on torchvision ({run}); other mmcv ops need the '
                f'compiled mmcv: MMCV=full make setup')
    return f'compiled, {file} ({run})'


def collect() -> List[Tuple[str, str]]:
    """Returns ``(name, description)`` rows for Python, the platform, the stack, mmcv's ops and the device."""
    rows = [('python', sys.version.split()[0]), ('platform', platform.platform())]
    versions: Dict[str, str] = {name: _version(name) for name in REQUIRED + OPTIONAL}
    if not versions['torch'].startswith(BROKEN[0]):
        versions['torch'] += f' ({_torch_device()})'
    for name in REQUIRED:
        rows.append((name, versions[name]))
        if name == 'mmcv' and not versions['mmcv'].startswith(BROKEN[0]):
            rows.append((OPS_ROW, mmcv_ops()))
    rows += [(name, versions[name]) for name in OPTIONAL]
    from convnext_dense.version import __version__
    rows.append(('convnext_dense', __version__))
    return rows


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Prints the report; returns 1 under ``--check`` when a required part is broken, else 0."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--check', action='store_true', help='exit 1 if a required part is broken')
    args = parser.parse_args(argv)
    rows = collect()
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f'{name:<{width}}  {value}')
    broken = [name for name, value in rows
              if name in REQUIRED + (OPS_ROW,) and value.startswith(BROKEN)]
    if args.check and broken:
        print(f'broken: {", ".join(broken)}', file=sys.stderr)
        return 1
    return 0
