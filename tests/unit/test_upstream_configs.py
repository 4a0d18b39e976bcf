"""The configs the metafiles list OpenMMLab's trained weights for equal OpenMMLab's own configs key by key.

OpenMMLab's configs are the ones mmdet 3.3.0 and mmseg 1.2.2 ship (``.mim/configs``), beside the weights
they link. Merged with mmengine, both sides must hold the same value under every key, except for what names
the backbone's package (type, its checkpoint copy, mmpretrain's ``gap_before_final_norm=False`` and ``prefix``
that ours does not need), spellings that build the same thing, and what our runtime adds without changing
the recipe. The V2-B Mask R-CNN of mmdet's ``projects/`` (not in the wheel) is compared the same way in
tests/integration/test_det_configs.py.
"""
from pathlib import Path

import pytest
from mmengine.config import Config

from convnext_dense import zoo
from convnext_dense.arch import resolve_arch
from convnext_dense.engine.layer_decay import default_num_layers

mmdet = pytest.importorskip('mmdet')
mmseg = pytest.importorskip('mmseg')
SHIPPED = {'det': Path(mmdet.__file__).parent / '.mim', 'seg': Path(mmseg.__file__).parent / '.mim'}

# Keys (or key prefixes) that only one side has, none read by a component of the recipe.
OURS_ONLY = (
    'custom_hooks',  # FiniteLossHook: stops a run on a non-finite loss
    'tta_model', 'tta_pipeline', 'img_ratios',  # --tta
    'multi_scales',  # the base's list of training scales, inlined in the pipeline
    'norm_cfg',  # a base variable; the heads carry the same norm_cfg
    'auto_scale_lr',  # disabled, as without it
    'optim_wrapper.loss_scale',  # 'dynamic', AmpOptimWrapper's default
)
THEIRS_ONLY = (
    'optimizer',  # their schedule base's SGD, unused once optim_wrapper is replaced (_delete_)
    'model.pretrained',  # None: nothing
)
# Top-level variables of the bases on both sides that no component reads (the model has its own copy).
UNREAD = ('data_preprocessor', 'checkpoint_file')


def flatten(tree, prefix=''):
    """``{'a.b.0': leaf}``, tuples and lists alike (mmengine and the models treat them alike)."""
    if isinstance(tree, dict) and tree:
        return {k: v for key, sub in tree.items() for k, v in flatten(sub, f'{prefix}{key}.').items()}
    if isinstance(tree, (list, tuple)) and tree:
        return {k: v for i, sub in enumerate(tree) for k, v in flatten(sub, f'{prefix}{i}.').items()}
    return {prefix.rstrip('.'): tree}


def pairs():
    for task in zoo.TASKS:
        for stem, record in zoo.models(task).items():
            for weights in record['weights']:
                if weights.released_by == 'OpenMMLab' and weights.upstream_config.startswith('configs/'):
                    yield pytest.param(task, record, weights.upstream_config, id=stem)


def matches(key, prefixes):
    return any(key == p or key.startswith(p + '.') for p in prefixes)


def without(flat, prefixes):
    return {k: v for k, v in flat.items() if not matches(k, prefixes)}


def assert_same_multi_scale_flip_test(ours, theirs, test_scale):
    """Ours scales mmseg 0.x's way, the one the published ms+flip mIoU was measured with (MultiScaleFlipAug:
    ratios of the 2048x512 or 2560x640 test scale); mmseg 1.2's config applies the same ratios to the
    original image."""
    our_resizes, our_rest = ours[1]['transforms'][0], ours[1]['transforms'][1:]
    their_resizes, their_rest = theirs[1]['transforms'][0], theirs[1]['transforms'][1:]
    ratios = [resize['scale_factor'] for resize in their_resizes]
    assert ratios == [0.5, 0.75, 1.0, 1.25, 1.5, 1.75]
    assert [list(resize['scale']) for resize in our_resizes] == [[int(test_scale[0] * r), int(test_scale[1] * r)]
                                                          for r in ratios]
    assert flatten(our_rest[0]) == flatten(their_rest[0])  # no flip, then a horizontal flip
    assert [t['type'] for t in our_rest[1] + our_rest[2]] == [t['type'] for t in their_rest[1] + their_rest[2]]


@pytest.mark.parametrize('task, record, upstream', list(pairs()))
def test_config_with_openmmlab_weights_equals_openmmlabs_key_by_key(task, record, upstream):
    ours = Config.fromfile(str(zoo.config_file(record))).to_dict()
    theirs = Config.fromfile(str(SHIPPED[task] / upstream), import_custom_modules=False).to_dict()

    our_backbone, their_backbone = ours['model'].pop('backbone'), theirs['model'].pop('backbone')
    assert (our_backbone.pop('type'), their_backbone.pop('type')) == ('convnext_dense.ConvNeXt', 'mmpretrain.ConvNeXt')
    assert their_backbone.pop('gap_before_final_norm') is False  # per-stage output norms: what ours computes
    our_file, their_init = our_backbone.pop('init_cfg')['checkpoint'], their_backbone.pop('init_cfg')
    assert their_init['prefix'] == 'backbone.'
    # The same ImageNet weights: mmpretrain's copy converted from the official non-EMA file of that arch.
    data = '22k' if 'in21k' in their_init['checkpoint'] else '1k'
    assert our_file == f'https://dl.fbaipublicfiles.com/convnext/convnext_{our_backbone["arch"]}_{data}_224.pth'
    assert f'/convnext-{our_backbone["arch"]}_3rdparty_' in their_init['checkpoint']
    assert data == '22k' or 'noema' in their_init['checkpoint']
    assert flatten(our_backbone) == flatten(their_backbone)
    assert ours.pop('custom_imports')['imports'] == ['convnext_dense', 'convnext_dense.runtime']
    their_imports = theirs.pop('custom_imports')['imports']  # mmseg's base writes a string
    assert flatten(their_imports) in ({'': 'mmpretrain.models'}, {'0': 'mmpretrain.models'}, {'0': 'mmcls.models'})
    constructors = ours['optim_wrapper'].pop('constructor'), theirs['optim_wrapper'].pop('constructor')
    assert constructors == ('convnext_dense.LearningRateDecayOptimizerConstructor',
                            'LearningRateDecayOptimizerConstructor')  # the same rule, ours also GRN-aware
    assert ours['optim_wrapper'].get('loss_scale', 'dynamic') == 'dynamic'
    # Ours derives num_layers from the backbone's depths when the config leaves it out.
    derived = default_num_layers(resolve_arch(our_backbone['arch'])[0])
    assert ours['optim_wrapper']['paramwise_cfg'].setdefault('num_layers', derived) == derived
    if 'tta_pipeline' in theirs:  # mmseg: the same ratios and flips, of another size (see below)
        test_scale = next(t['scale'] for t in ours['test_pipeline'] if t['type'] == 'Resize')
        assert_same_multi_scale_flip_test(ours.pop('tta_pipeline'), theirs.pop('tta_pipeline'), test_scale)
    heads = ours['model'].get('roi_head', {}).get('bbox_head', [])
    for head in heads if isinstance(heads, list) else [heads]:
        if head['type'] == 'Shared4Conv1FCBBoxHead':  # ConvFCBBoxHead with these two arguments, mmdet's alias
            head.update(type='ConvFCBBoxHead', num_shared_convs=4, num_shared_fcs=1)

    got, want = without(flatten(ours), UNREAD), without(flatten(theirs), UNREAD)
    # Our COCO dataset and metric are mmdet's with labels in the order of metainfo.classes: on COCO, the same.
    ours_coco = {k for k, v in got.items() if v in ('convnext_dense.CocoDataset', 'convnext_dense.CocoMetric')}
    assert task == 'seg' or {k for k in ours_coco if k.endswith('dataset.type')} == {
        f'{split}_dataloader.dataset.type' for split in ('train', 'val', 'test')}
    got.update({k: want.get(k) for k in ours_coco if want.get(k) == got[k].split('.')[-1]})
    one_sided = {k for k in got.keys() - want.keys() if matches(k, OURS_ONLY)}
    one_sided |= {k for k in want.keys() - got.keys() if matches(k, THEIRS_ONLY)}
    differing = sorted(k for k in (got.keys() | want.keys()) - one_sided
                       if got.get(k, '<missing>') != want.get(k, '<missing>'))
    assert not differing, '; '.join(f'{k}: ours {got.get(k, "<missing>")!r}, OpenMMLab {want.get(k, "<missing>")!r}'
                                    for k in differing[:10])


def test_every_openmmlab_config_of_the_metafiles_is_compared():
    compared = [param.id for param in pairs()]
    assert len(compared) == 9  # Mask R-CNN T, Cascade T / S, six UperNets
