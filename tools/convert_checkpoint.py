"""Convert a ConvNeXt checkpoint (facebook, timm, mmpretrain or ours) to this package's parameter names.

The layout is detected; classifier head and final norm are dropped. The result is written atomically as
``{'state_dict': ..., 'meta': ...}``; with ``--prefix backbone.`` it is ready for mmdet / mmseg
``load_from``. Loading through ``init_cfg`` converts on the fly, so this is only needed to ship a file.

    python tools/convert_checkpoint.py convnext_tiny_1k_224.pth convnext_tiny_ours.pth
    python tools/convert_checkpoint.py timm_tiny.pth tiny_backbone.pth --prefix backbone. --arch tiny
"""
import argparse
import os
import sys
import tempfile
from typing import Dict, Optional, Sequence

import torch

from convnext_dense.io import safe_torch_load
from convnext_dense.models.checkpoint import (Conversion, compare_with_model, convert_state_dict,
                                              guess_arch, summarize_keys)

EXAMPLE_RENAMES = 5


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('src', help='checkpoint to convert')
    parser.add_argument('dst', help='output file (written through a temporary file, then renamed)')
    parser.add_argument('--prefix', default='',
                        help="prepended to every key, e.g. 'backbone.' for an mmdet/mmseg model (default: none)")
    parser.add_argument('--arch', help='check that the checkpoint fits ConvNeXt(arch=ARCH) before writing')
    parser.add_argument('--ema', action='store_true', help='take the EMA weights when the file has both')
    return parser.parse_args(argv)


def check_arch(conversion: Conversion, arch: str) -> Optional[str]:
    """Returns why ``conversion`` does not fit ``ConvNeXt(arch)``, or None when it fits."""
    from convnext_dense.models import ConvNeXt

    with torch.device('meta'):  # shapes only: no memory, no init
        model = ConvNeXt(arch=arch, use_grn=any('.grn.' in k for k in conversion.state_dict),
                         layer_scale_init_value=1.0 if any(k.endswith('.gamma') for k in conversion.state_dict)
                         else 0.0)
    report = compare_with_model(conversion, {k: tuple(v.shape) for k, v in model.state_dict().items()})
    if not (report.missing or report.mismatched):
        return None
    first = [f'{k} {list(s)} vs {list(m)}' for k, s, m in report.mismatched[:3]] + report.missing[:3]
    return (f'checkpoint does not fit --arch {arch}: it seems to be arch {guess_arch(conversion.state_dict)}; '
            f'{len(report.mismatched)} shape mismatches, {len(report.missing)} missing, first: {", ".join(first)}')


def save_atomically(obj: Dict, dst: str) -> None:
    """``torch.save`` to a temporary file beside ``dst``, then ``os.replace``: no half-written ``dst``."""
    directory = os.path.dirname(os.path.abspath(dst))
    os.makedirs(directory, exist_ok=True)
    handle, tmp_path = tempfile.mkstemp(dir=directory, prefix='.' + os.path.basename(dst), suffix='.tmp')
    try:
        with os.fdopen(handle, 'wb') as tmp_file:
            torch.save(obj, tmp_file)
        os.replace(tmp_path, dst)
    except BaseException:
        if os.path.exists(tmp_path):
            os.remove(tmp_path)
        raise


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    if not os.path.isfile(args.src):
        print(f'error: source checkpoint not found: {args.src}', file=sys.stderr)
        return 2
    if os.path.exists(args.dst) and os.path.samefile(args.src, args.dst):
        print(f'error: DST {args.dst} is the source file; choose another output path.', file=sys.stderr)
        return 2
    try:
        conversion = convert_state_dict(safe_torch_load(args.src), ema=args.ema)
    except (RuntimeError, ValueError, KeyError) as error:
        print(f'error: cannot convert {args.src}: {error}', file=sys.stderr)
        return 1
    if args.arch:
        problem = check_arch(conversion, args.arch)
        if problem:
            print(f'error: {problem}; nothing written.', file=sys.stderr)
            return 1

    prefix = args.prefix if not args.prefix or args.prefix.endswith('.') else args.prefix + '.'
    state_dict = {prefix + k: v for k, v in conversion.state_dict.items()}
    meta = dict(converted_from=conversion.layout, source=os.path.basename(args.src),
                arch=guess_arch(conversion.state_dict))
    save_atomically({'state_dict': state_dict, 'meta': meta}, args.dst)

    print(f'{args.src}: {conversion.layout} layout, arch {meta["arch"]}')
    print(f'wrote {len(state_dict)} tensors to {args.dst}' + (f' with prefix {prefix!r}' if prefix else ''))
    print(f'renamed {len(conversion.renamed)} keys' + (', e.g.' if conversion.renamed else ''))
    # Renames beyond dropping a prefix say the most about the conversion: show those first.
    examples = sorted(conversion.renamed, key=lambda pair: pair[0].endswith(pair[1]))[:EXAMPLE_RENAMES]
    for src_key, dst_key in examples:
        print(f'  {src_key} -> {prefix}{dst_key}')
    print(f'ignored (classifier head / final norm / not backbone): {summarize_keys(conversion.ignored)}')
    print(f'leftover (unrecognised, not written): {summarize_keys(conversion.leftover)}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
