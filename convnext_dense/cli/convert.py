"""Convert a ConvNeXt checkpoint of any known layout to this package's parameter names, or to another layout.

Backbone mode (default): the layout is detected (torchvision, Hugging Face transformers, open_clip, FCMAE,
timm, mmpretrain, facebook, ours); classifier head and final norm are dropped; the backbone is written as
``{'state_dict': ..., 'meta': ...}``, and with ``--prefix backbone.`` it is ready for mmdet / mmseg
``load_from``. Loading through ``init_cfg`` converts on the fly, so this is only needed to ship a file.
``--to LAYOUT`` writes the backbone in another layout instead, names and shapes as that publisher's files
hold them. SRC may be a ``.safetensors`` file, a torch pickle (``.pth``, ``pytorch_model.bin``), a URL or a
Hugging Face Hub name ``hf-hub:ORG/NAME[@REVISION]``; a DST ending in ``.safetensors`` is written in that
format (tensors only, ``meta`` in its header).

Whole-model mode (``--whole-model``): a detector or segmentor checkpoint whose backbone (under
``--backbone-prefix``) has mmpretrain's names (mmdet 3.x / mmseg 1.x) is written with our backbone names,
neck, heads and ``meta`` kept. Loading such a file renames it in memory as well; converting ships a file that
any ConvNeXt of this package loads without a note in the log.

    convnext-dense convert convnext_tiny_1k_224.pth convnext_tiny_ours.pth
    convnext-dense convert timm_tiny.pth tiny_backbone.pth --prefix backbone. --arch tiny
    convnext-dense convert hf-hub:timm/convnext_tiny.dinov3_lvd1689m dinov3_tiny.pth --arch tiny
    convnext-dense convert convnext_tiny_1k_224.pth model.safetensors --to transformers
    convnext-dense convert mask_rcnn_mmpretrain_convnext.pth mask_rcnn_ours.pth --whole-model --arch tiny
"""
import argparse
import os
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import torch

from convnext_dense.checkpoint import (LAYOUTS, WRITABLE_LAYOUTS, check_fit, convert_state_dict, from_ours,
                                       guess_arch, is_hub_name, model_state_dict, read_checkpoint,
                                       rename_whole_model, summarize_keys)
from convnext_dense.checkpoint.formats import SAFETENSORS_SUFFIX, write_safetensors, write_torch
from convnext_dense.cli.weights import add_weights_mirror_argument, weights_of
from convnext_dense.errors import CheckpointFormatError, CliError
from convnext_dense.models import ConvNeXt

EXAMPLE_RENAMES = 5


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog='convnext-dense convert', description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('src', help='checkpoint to convert (path, URL, or a model name: its released file)')
    parser.add_argument('dst', help='output file (written through a temporary file, then renamed)')
    parser.add_argument('--prefix', default='',
                        help="backbone mode: prepended to every key, e.g. 'backbone.' for an mmdet/mmseg model "
                             '(default: none)')
    parser.add_argument('--whole-model', action='store_true',
                        help='convert a whole detector / segmentor: rename its backbone, keep neck, heads and meta')
    parser.add_argument('--backbone-prefix', default='backbone.',
                        help="whole-model mode: where the backbone's keys are (default: 'backbone.')")
    parser.add_argument('--arch', help='check that the backbone fits ConvNeXt(arch=ARCH) before writing')
    parser.add_argument('--ema', action='store_true', help='take the EMA weights when the file has both')
    parser.add_argument('--to', default='convnext_dense', choices=WRITABLE_LAYOUTS, metavar='LAYOUT',
                        help='backbone mode: the layout to write, one of %(choices)s (default: %(default)s)')
    add_weights_mirror_argument(parser)
    return parser.parse_args(argv)


def check_arch(checkpoint: Mapping[str, Any], our_keys: Iterable[str], args: argparse.Namespace,
               prefix: Optional[str] = None) -> None:
    """Refuses a checkpoint whose backbone does not fit ``ConvNeXt(arch=args.arch)`` (see ``check_fit``).

    Args:
        checkpoint: The file as read.
        our_keys: Its backbone's keys under our names, to tell V1 from V2 and layer scale from none.
        args: The command line (``src``, ``arch``, ``ema``).
        prefix: Where the backbone is in the file (None: detected).
    """
    our_keys = list(our_keys)
    layer_scale = any(k.endswith('.gamma') and '.grn.' not in k for k in our_keys)
    with torch.device('meta'):  # shapes only: no memory, no init
        model = ConvNeXt(arch=args.arch, use_grn=any('.grn.' in k for k in our_keys),
                         layer_scale_init_value=1.0 if layer_scale else 0.0)
    check_fit(checkpoint, model, source=args.src, purpose='SRC', target=f'--arch {args.arch}', prefix=prefix,
              ema=args.ema)


def save(state_dict: Dict[str, Any], meta: Dict[str, Any], dst: str, layout: str = 'convnext_dense') -> None:
    """Writes tensors as files of ``layout`` hold them, atomically: a ``.safetensors`` DST bare with ``meta`` in
    its header; otherwise ours and mmpretrain's under ``state_dict`` beside ``meta``, the official files' under
    ``model``, and the other publishers' bare."""
    if dst.endswith(SAFETENSORS_SUFFIX):
        write_safetensors(state_dict, dst, metadata=meta)
    elif layout in ('convnext_dense', 'mmpretrain'):
        write_torch({'state_dict': state_dict, 'meta': meta}, dst)
    elif layout == 'facebook':
        write_torch({'model': state_dict}, dst)
    else:
        write_torch(state_dict, dst)


def _source_name(src: str) -> str:
    """How ``meta`` names the source: a hub name or URL as it is, a file by its name."""
    return src if is_hub_name(src) or '://' in src else os.path.basename(src)


def _print_renames(renamed: Sequence[Tuple[str, str]], new_prefix: str = '') -> None:
    print(f'renamed {len(renamed)} keys' + (', e.g.' if renamed else ''))
    # Renames beyond dropping a prefix say the most about the conversion: show those first.
    examples = sorted(renamed, key=lambda pair: pair[0].endswith(pair[1]))[:EXAMPLE_RENAMES]
    for src_key, dst_key in examples:
        print(f'  {src_key} -> {new_prefix}{dst_key}')


def convert_backbone(loaded: Mapping[str, Any], args: argparse.Namespace) -> int:
    """Backbone mode: writes the backbone alone, optionally under ``--prefix``."""
    conversion = convert_state_dict(loaded, ema=args.ema)
    if args.arch:
        check_arch(loaded, conversion.state_dict, args)
    prefix = args.prefix if not args.prefix or args.prefix.endswith('.') else args.prefix + '.'
    written = from_ours(conversion.state_dict, args.to)
    # What the layout has no place for (the output norms of layouts without them) does not come back.
    no_place = [k for k in conversion.state_dict if k not in convert_state_dict(written).state_dict]
    state_dict = {prefix + k: v for k, v in written.items()}
    meta = dict(converted_from=conversion.layout, source=_source_name(args.src),
                arch=guess_arch(conversion.state_dict))
    if args.to != 'convnext_dense':
        meta['layout'] = args.to
    save(state_dict, meta, args.dst, args.to)

    print(f'{args.src}: {conversion.layout} layout, arch {meta["arch"]}')
    print(f'wrote {len(state_dict)} tensors to {args.dst}' + (f' in the {args.to} layout' if 'layout' in meta else '')
          + (f' with prefix {prefix!r}' if prefix else ''))
    _print_renames(conversion.renamed, prefix)
    if no_place:
        print(f'not written ({args.to} has no place for them): {summarize_keys(no_place)}')
    print(f'ignored (classifier head / final norm / not backbone): {summarize_keys(conversion.ignored)}')
    print(f'leftover (unrecognised, not written): {summarize_keys(conversion.leftover)}')
    for note in conversion.notes:
        print(f'note: {note}')
    dropped = [k for k in conversion.ignored if not k.startswith(('head.', 'backbone.'))]
    if dropped:
        print(f'note: {len(dropped)} tensors outside the backbone ({summarize_keys(dropped, limit=4)}) were not '
              f'written; --whole-model keeps neck and heads')
    return 0


def convert_whole_model(loaded: Mapping[str, Any], args: argparse.Namespace) -> int:
    """Whole-model mode: renames the backbone under ``--backbone-prefix``, keeps every other key and meta."""
    backbone_prefix = args.backbone_prefix if args.backbone_prefix.endswith('.') else args.backbone_prefix + '.'
    state_dict = model_state_dict(loaded, ema=args.ema)
    renamed, renames = rename_whole_model(state_dict, [backbone_prefix])
    if not renames:
        roots = sorted({k.split('.')[0] + '.' for k in state_dict})
        raise CheckpointFormatError(
            f'{args.src} has no ConvNeXt backbone under {backbone_prefix!r} (its top-level prefixes are '
            f'{roots[:10]}); pass --backbone-prefix, or drop --whole-model for a backbone or classifier file')
    rename = renames[0]
    backbone = rename.our_keys
    if args.arch:
        check_arch(loaded, backbone, args, prefix=backbone_prefix)
    meta: Dict[str, Any] = dict(loaded.get('meta') or {})
    meta.update(converted_from=rename.layout, source=_source_name(args.src), arch=guess_arch(backbone))
    save(renamed, meta, args.dst)

    others: List[str] = [k for k in renamed if not k.startswith(backbone_prefix)]
    print(f'{args.src}: backbone {backbone_prefix}* in {LAYOUTS[rename.layout].description}, arch {meta["arch"]}')
    print(f'wrote {len(renamed)} tensors to {args.dst}: {len(rename.state_dict)} backbone, {len(others)} others '
          f'kept as they are ({summarize_keys(others, limit=4)})')
    _print_renames(rename.renamed)
    print(f'reshaped: {summarize_keys(rename.reshaped)}')
    print(f'ignored (not written): {summarize_keys(rename.ignored)}')
    for note in rename.notes:
        print(f'note: {note}')
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    if args.whole_model and args.to != 'convnext_dense':
        raise CliError('--to writes a backbone alone; --whole-model keeps our names for the backbone inside a '
                       'whole model: drop one of them.')
    args.src = weights_of(args.src, args.weights_mirror)
    if os.path.exists(args.dst) and os.path.exists(args.src) and os.path.samefile(args.src, args.dst):
        raise CliError(f'DST {args.dst} is the source file; choose another output path.')
    loaded = read_checkpoint(args.src, purpose='SRC')
    return convert_whole_model(loaded, args) if args.whole_model else convert_backbone(loaded, args)
