"""Whole-model checkpoints: mmdet / mmseg models saved with mmpretrain's ConvNeXt load into ours, renamed in
memory, and give the same predictions; the renaming, the report, the messages for files that do not fit, and
the check of ``test`` / ``--resume`` that hands mmengine the file it read."""
import copy
import importlib
import os
from typing import Dict

import pytest
import torch
import torch.nn as nn
from mmengine.config import Config
from mmengine.registry import DefaultScope
from mmengine.runner.checkpoint import load_checkpoint, save_checkpoint, weights_to_cpu

from convnext_dense import runtime  # noqa: F401  (mmengine's local loader takes the file a check read)
from convnext_dense.checkpoint import (backbone_prefixes, match, read_local_checkpoint, rename_backbone,
                                      rename_whole_model)
from convnext_dense.cli.runner import check_checkpoint_fits
from convnext_dense.errors import CheckpointMismatchError
from convnext_dense.models import ConvNeXt

SMALL = dict(depths=[1, 1, 2, 1], channels=[16, 32, 64, 128])
DENSE_CONFIGS = {'mmdet': 'mask-rcnn_convnext-t-p4-w7_fpn_amp-ms-crop-3x_coco.py',
                 'mmseg': 'convnext-tiny_upernet_8xb2-amp-160k_ade20k-512x512.py'}


def dense_config(framework: str) -> Config:
    """A ConvNeXt config shipped in mmdet's or mmseg's wheel, its custom imports left to the test."""
    package = importlib.import_module(framework)
    path = os.path.join(os.path.dirname(package.__file__), '.mim', 'configs', 'convnext', DENSE_CONFIGS[framework])
    return Config.fromfile(path, import_custom_modules=False)


def mmpretrain_names(state_dict: Dict[str, torch.Tensor], prefix: str = 'backbone.') -> Dict[str, torch.Tensor]:
    """Our backbone keys under mmpretrain's names and GRN shape."""
    renamed = {}
    for key, value in state_dict.items():
        if key.startswith(prefix):
            key = (key.replace('.dwconv.', '.depthwise_conv.').replace('.pwconv1.', '.pointwise_conv1.')
                   .replace('.pwconv2.', '.pointwise_conv2.'))
            value = value.flatten() if '.grn.' in key else value
        renamed[key] = value
    return renamed


class Detectorish(nn.Module):
    """A backbone with a neck and a head: what mmdet and mmseg models look like to a state dict."""

    def __init__(self, **backbone) -> None:
        super().__init__()
        self.backbone = ConvNeXt(SMALL, **backbone)
        self.neck = nn.Conv2d(128, 8, 1)
        self.decode_head = nn.Linear(8, 3)


def randomized(module: nn.Module, seed: int = 0) -> nn.Module:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in module.parameters():
            param.copy_(torch.randn(param.shape, generator=generator) * 0.1 + (1.0 if param.dim() == 1 else 0.0))
    return module


# --- the pure renaming ------------------------------------------------------------------------------------

def test_mmpretrain_backbone_is_renamed_the_rest_kept():
    source = mmpretrain_names(randomized(Detectorish(use_grn=True, layer_scale_init_value=0.0)).state_dict())
    renamed, renames = rename_whole_model(source, ['backbone.'])
    expected = Detectorish(use_grn=True, layer_scale_init_value=0.0).state_dict()
    assert list(renamed) != list(source) and set(renamed) == set(expected)
    assert [r.layout for r in renames] == ['mmpretrain']
    assert ('backbone.stages.0.0.depthwise_conv.weight', 'backbone.stages.0.0.dwconv.weight') in renames[0].renamed
    # mmpretrain's GRN is 1-D as ours: nothing to reshape.
    assert renamed['backbone.stages.2.1.grn.gamma'].shape == (256,)
    assert renames[0].reshaped == []
    assert renamed['neck.weight'] is source['neck.weight'] and renamed['decode_head.bias'] is source['decode_head.bias']
    assert len(renames[0].renamed) == sum('.depthwise_conv.' in k or '.pointwise_conv' in k for k in source)


def test_checkpoints_with_the_official_grn_shape_load_strictly():
    """Our earlier files and the authors' V2 whole models store GRN (1, 1, 1, C): flattened as they load."""
    saved = randomized(Detectorish(use_grn=True, layer_scale_init_value=0.0)).state_dict()
    old = {k: v.reshape(1, 1, 1, -1) if '.grn.' in k else v for k, v in saved.items()}
    model = Detectorish(use_grn=True, layer_scale_init_value=0.0)
    model.load_state_dict(old, strict=True)
    assert model.backbone.stages[2][1].grn.gamma.shape == (256,)
    for key, value in model.state_dict().items():
        assert torch.equal(value, saved[key]), key


def test_our_and_the_authors_layouts_are_left_as_they_are():
    source = Detectorish().state_dict()
    rename = rename_backbone(source, 'backbone.')
    assert rename.layout == 'convnext_dense' and not rename.changes_anything
    assert rename_backbone({'neck.weight': torch.zeros(1)}, 'backbone.') is None
    assert rename_backbone({'backbone.conv1.weight': torch.zeros(1)}, 'backbone.') is None  # a ResNet


def test_report_names_renamed_loaded_ignored_and_missing():
    source = mmpretrain_names(Detectorish().state_dict())
    del source['decode_head.weight']
    model = Detectorish()
    report, renamed = match({'state_dict': source}, model, source='det.pth')
    assert report.missing == ['decode_head.weight'] and not report.fits
    assert len(report.loaded) == len(model.state_dict()) - 1 and 'backbone.stages.0.0.dwconv.weight' in renamed
    summary = report.summary()
    assert summary.startswith('ConvNeXt weights from det.pth (backbone layout: backbone. mmpretrain): renamed ')
    assert 'missing: decode_head.weight' in summary
    assert 'ignored (classifier head / final norm / not backbone): none' in summary


# --- loading through load_state_dict (load_from, --resume, load_checkpoint) ---------------------------------

def test_strict_load_state_dict_renames_in_memory_and_logs_one_report(capfd):
    reference = randomized(Detectorish(use_grn=True, layer_scale_init_value=0.0))
    source = mmpretrain_names(reference.state_dict())
    model = Detectorish(use_grn=True, layer_scale_init_value=0.0)
    model.load_state_dict(source, strict=True)
    for key, value in reference.state_dict().items():
        torch.testing.assert_close(model.state_dict()[key], value, atol=0, rtol=0)
    logged = capfd.readouterr().out
    assert logged.count('backbone layout') == 1 and 'backbone layout: backbone. mmpretrain' in logged
    assert 'renamed 30 keys' in logged and 'reshaped 0' in logged and 'missing: none' in logged
    assert 'backbone.stages.0.0.depthwise_conv.weight' in source  # the caller's dict is untouched


def test_our_own_checkpoints_load_silently(capfd):
    reference = randomized(Detectorish())
    model = Detectorish()
    model.load_state_dict(reference.state_dict(), strict=True)
    assert 'backbone layout' not in capfd.readouterr().out
    assert torch.equal(model.backbone.norm3.weight, reference.backbone.norm3.weight)


def test_backbone_prefixes_find_every_convnext():
    assert backbone_prefixes(Detectorish()) == ['backbone.']
    assert backbone_prefixes(ConvNeXt(SMALL)) == ['']


# --- mmdet's and mmseg's own configs, with mmpretrain's backbone and with ours -------------------------------

def build(framework: str, cfg: Config, backbone_type: str) -> nn.Module:
    cfg = copy.deepcopy(cfg)
    cfg.model.backbone.type = backbone_type
    registry = importlib.import_module(f'{framework}.registry').MODELS
    with DefaultScope.overwrite_default_scope(framework):
        model = registry.build(cfg.model)
    return model.eval()


def small_detector_config() -> Config:
    cfg = dense_config('mmdet')
    cfg.model.backbone.update(arch=SMALL, init_cfg=None)
    cfg.model.neck.in_channels = SMALL['channels']
    # Random heads score every class about equally: keep every detection, few enough to be fast.
    cfg.model.test_cfg.rpn.update(nms_pre=200, max_per_img=50)
    cfg.model.test_cfg.rcnn.update(score_thr=0.0, max_per_img=20)
    return cfg


def small_segmentor_config() -> Config:
    cfg = dense_config('mmseg')
    cfg.model.backbone.update(arch=SMALL, init_cfg=None)
    cfg.model.data_preprocessor.size = (64, 96)
    cfg.model.decode_head.update(in_channels=SMALL['channels'], channels=32, norm_cfg=dict(type='BN'))
    cfg.model.auxiliary_head.update(in_channels=SMALL['channels'][2], channels=16, norm_cfg=dict(type='BN'))
    return cfg


def save_like_the_runner(model: nn.Module, path) -> None:
    """As mmengine's runner saves: ``meta`` and ``state_dict`` (weights on the CPU) through save_checkpoint."""
    save_checkpoint({'meta': dict(epoch=36, iter=1000, mmengine_version='0.10.7'),
                     'state_dict': weights_to_cpu(model.state_dict())}, str(path))


@pytest.fixture(scope='module')
def mmpretrain_registered():
    pytest.importorskip('mmpretrain.models', reason='mmpretrain is the reference here')
    importlib.import_module('mmdet.models')
    importlib.import_module('mmseg.models')


def images(seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (2, 3, 64, 96), generator=torch.Generator().manual_seed(seed)).float()


def reference_and_ours(framework: str, cfg: Config, path):
    """The model of ``cfg`` with mmpretrain's backbone and random weights, saved to ``path``, and ours built
    from the same config with the backbone type switched, loaded from that file as ``load_from`` does
    (strictly, so nothing may be missing)."""
    torch.manual_seed(0)
    reference = build(framework, cfg, 'mmpretrain.ConvNeXt')
    randomized(reference.backbone)
    save_like_the_runner(reference, path)
    ours = build(framework, cfg, 'convnext_dense.ConvNeXt')
    load_checkpoint(ours, str(path), map_location='cpu', strict=True)
    return reference, ours


def test_detector_of_mmdets_config_gives_the_same_predictions_from_an_mmpretrain_file(tmp_path,
                                                                                        mmpretrain_registered):
    from mmdet.structures import DetDataSample
    reference, ours = reference_and_ours('mmdet', small_detector_config(), tmp_path / 'mask_rcnn_mmpretrain.pth')

    def predict(model):
        samples = [DetDataSample(metainfo=dict(img_shape=(64, 96), ori_shape=(64, 96), scale_factor=(1.0, 1.0)))
                   for _ in range(2)]
        with torch.no_grad():
            return model.test_step(dict(inputs=list(images()), data_samples=samples))

    for expected, got in zip(predict(reference), predict(ours)):
        expected, got = expected.pred_instances, got.pred_instances
        assert len(expected) == len(got) == 20
        torch.testing.assert_close(got.bboxes, expected.bboxes, atol=1e-3, rtol=1e-4)
        torch.testing.assert_close(got.scores, expected.scores, atol=1e-5, rtol=1e-4)
        assert torch.equal(got.labels, expected.labels)
        assert got.masks.shape == expected.masks.shape == (20, 64, 96)
        assert (got.masks != expected.masks).float().mean() < 1e-3  # a pixel at 0.5 may round either way


def test_segmentor_of_mmsegs_config_gives_the_same_logits_from_an_mmpretrain_file(tmp_path,
                                                                                   mmpretrain_registered):
    reference, ours = reference_and_ours('mmseg', small_segmentor_config(), tmp_path / 'upernet_mmpretrain.pth')

    def logits(model):
        data = model.data_preprocessor(dict(inputs=list(images(1)), data_samples=None), False)
        with torch.no_grad():
            return model(data['inputs'], None, mode='tensor')

    expected = logits(reference)
    assert expected.shape[:2] == (2, 150)
    torch.testing.assert_close(logits(ours), expected, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize('framework', ['mmdet', 'mmseg'])
def test_config_backbone_with_only_the_type_switched_loads_an_mmpretrain_file(tmp_path, framework,
                                                                               mmpretrain_registered):
    """The configs' backbone dict (init_cfg Pretrained with prefix='backbone.') as shipped, type switched."""
    from mmpretrain.models.backbones import ConvNeXt as MMPretrainConvNeXt
    backbone_cfg = dict(dense_config(framework).model.backbone)
    assert backbone_cfg['init_cfg']['prefix'] == 'backbone.'
    reference = MMPretrainConvNeXt(arch='tiny', out_indices=(0, 1, 2, 3), gap_before_final_norm=False)
    randomized(reference)
    path = tmp_path / 'classifier.pth'
    torch.save({'state_dict': {'backbone.' + k: v for k, v in reference.state_dict().items()},
                'meta': {}}, path)
    backbone_cfg.update(type='convnext_dense.ConvNeXt', init_cfg=dict(backbone_cfg['init_cfg'], checkpoint=str(path)))
    from convnext_dense.registry import MODELS
    model = MODELS.build(backbone_cfg)
    model.init_weights()
    torch.testing.assert_close(model.stages[2][5].pwconv1.weight, reference.stages[2][5].pointwise_conv1.weight,
                               atol=0, rtol=0)
    torch.testing.assert_close(model.norm1.bias, reference.norm1.bias, atol=0, rtol=0)


# --- tools/test.py's check: rename first, then refuse what still does not fit --------------------------------

def test_checkpoint_check_accepts_an_mmpretrain_named_whole_model(tmp_path):
    path = tmp_path / 'whole.pth'
    save_like_the_runner_dict(mmpretrain_names(Detectorish().state_dict()), path)
    check_checkpoint_fits(Detectorish(), str(path), 'CHECKPOINT')


def test_checked_checkpoint_is_read_once_and_handed_over_renamed(tmp_path, monkeypatch):
    """test / --resume check the file, then mmengine loads it: the second load gets what the check read,
    with the backbone already under our names, once; a changed file is read again."""
    path = tmp_path / 'whole.pth'
    reference = randomized(Detectorish())
    save_like_the_runner_dict(mmpretrain_names(reference.state_dict()), path)
    reads = []
    real_load = torch.load
    monkeypatch.setattr(torch, 'load', lambda *a, **k: reads.append(a[0]) or real_load(*a, **k))
    check_checkpoint_fits(Detectorish(), str(path), 'CHECKPOINT')
    model = Detectorish()
    loaded = load_checkpoint(model, str(path), map_location='cpu', strict=True)  # mmengine's own loader
    assert reads == [str(path)]
    assert loaded['meta'] == dict(epoch=1) and 'backbone.stages.0.0.dwconv.weight' in loaded['state_dict']
    for key, value in reference.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key
    read_local_checkpoint(str(path))  # handed over once: this one reads the file again
    assert reads == [str(path)] * 2
    check_checkpoint_fits(Detectorish(), str(path), 'CHECKPOINT')
    save_like_the_runner_dict(Detectorish().state_dict(), path)  # the file changes before mmengine reads it
    assert 'backbone.stages.0.0.depthwise_conv.weight' not in read_local_checkpoint(str(path))['state_dict']
    assert len(reads) == 4


def save_like_the_runner_dict(state_dict, path) -> None:
    save_checkpoint({'meta': dict(epoch=1), 'state_dict': state_dict}, str(path))


def test_checkpoint_check_says_a_backbone_file_is_no_whole_model(tmp_path):
    path = tmp_path / 'convnext_tiny_1k_224.pth'
    state_dict = {k[len('backbone.'):]: v for k, v in Detectorish().state_dict().items() if k.startswith('backbone.')}
    state_dict.update({'norm.weight': torch.ones(128), 'norm.bias': torch.zeros(128),
                       'head.weight': torch.zeros(10, 128), 'head.bias': torch.zeros(10)})
    torch.save({'model': state_dict}, path)
    with pytest.raises(CheckpointMismatchError) as info:
        check_checkpoint_fits(Detectorish(), str(path), 'CHECKPOINT')
    message = str(info.value)
    assert 'it holds a ConvNeXt backbone only (facebook layout, arch dict(depths=(1, 1, 2, 1)' in message
    assert "model.backbone.init_cfg=dict(type='Pretrained', checkpoint=FILE)" in message
    assert 'another arch' not in message and '\n' not in message


def test_checkpoint_check_names_the_rename_and_the_arch_of_a_foreign_whole_model(tmp_path):
    path = tmp_path / 'whole_v2.pth'
    save_like_the_runner_dict(mmpretrain_names(Detectorish(use_grn=True, layer_scale_init_value=0.0).state_dict()),
                              path)
    with pytest.raises(CheckpointMismatchError) as info:
        check_checkpoint_fits(Detectorish(), str(path), 'CHECKPOINT')
    message = str(info.value)
    assert 'its backbone.* keys were renamed from mmpretrain names' in message
    assert 'seems to be arch dict(depths=(1, 1, 2, 1), channels=(16, 32, 64, 128)) (V2, GRN)' in message
    assert 'use_grn=True and layer_scale_init_value=0' in message


def test_checkpoint_check_keeps_refusing_another_model(tmp_path):
    path = tmp_path / 'resnet.pth'
    save_like_the_runner_dict({'backbone.conv1.weight': torch.zeros(8, 3, 7, 7),
                               'neck.weight': torch.zeros(8, 128, 1, 1)}, path)
    with pytest.raises(CheckpointMismatchError, match='it was trained with another arch or config'):
        check_checkpoint_fits(Detectorish(), str(path), 'CHECKPOINT')
