"""tools/test.py with a whole-model checkpoint trained with mmpretrain's ConvNeXt: renamed as it loads, the
same predictions as mmpretrain's backbone gives through the same tool; a backbone-only file is refused with
what it is and what to do."""
import pickle

import pycocotools.mask as mask_utils
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope
from mmengine.runner.checkpoint import save_checkpoint, weights_to_cpu
from shapes_run import TEST, make_data, run_tool, write_config

# The same model with mmpretrain's backbone: its default gap_before_final_norm=True pools the outputs.
MMPRETRAIN_OPTIONS = ['model.backbone.type=mmpretrain.ConvNeXt', 'model.backbone.gap_before_final_norm=False',
                      'custom_imports.imports=[convnext_dense,mmpretrain.models]']
# Random heads score every class about equally: keep every detection.
KEEP_ALL = ['model.test_cfg.rcnn.score_thr=0.0']


@pytest.fixture(scope='module')
def setup(tmp_path_factory):
    pytest.importorskip('mmpretrain.models', reason='mmpretrain is the reference here')
    import mmdet.models  # noqa: F401
    from mmdet.registry import MODELS
    root = tmp_path_factory.mktemp('whole_model')
    config = write_config(root / 'shapes.py', make_data(root / 'shapes'))
    cfg = Config.fromfile(str(config))
    cfg.model.backbone.update(type='mmpretrain.ConvNeXt', gap_before_final_norm=False)
    torch.manual_seed(0)
    with DefaultScope.overwrite_default_scope('mmdet'):
        model = MODELS.build(cfg.model)
    model.init_weights()
    with torch.no_grad():  # layer scale and norms away from their init, so a load that skips them shows
        for name, param in model.backbone.named_parameters():
            if param.dim() == 1:
                param.uniform_(0.5, 1.5)
    checkpoint = root / 'mask_rcnn_mmpretrain.pth'
    save_checkpoint({'meta': dict(epoch=1, dataset_meta=dict(classes=cfg.classes)),
                     'state_dict': weights_to_cpu(model.state_dict())}, str(checkpoint))
    return root, config, checkpoint, model


def predictions(path):
    with open(path, 'rb') as handle:
        return pickle.load(handle)


def test_test_py_gives_mmpretrains_predictions_from_an_mmpretrain_checkpoint(setup):
    root, config, checkpoint, _ = setup
    reference = run_tool([TEST, str(config), str(checkpoint), '--work-dir', str(root / 'reference'),
                          '--out', str(root / 'reference.pkl'), '--cfg-options', *MMPRETRAIN_OPTIONS, *KEEP_ALL])
    assert reference.returncode == 0, (reference.stdout + reference.stderr)[-3000:]
    ours = run_tool([TEST, str(config), str(checkpoint), '--work-dir', str(root / 'ours'),
                     '--out', str(root / 'ours.pkl'), '--cfg-options', *KEEP_ALL])
    output = ours.stdout + ours.stderr
    assert ours.returncode == 0, output[-3000:]
    assert 'backbone layout: backbone. mmpretrain' in output and 'missing: none' in output

    expected, got = predictions(root / 'reference.pkl'), predictions(root / 'ours.pkl')
    assert len(expected) == len(got) == 2
    for reference_image, our_image in zip(expected, got):
        reference_pred, our_pred = reference_image['pred_instances'], our_image['pred_instances']
        assert len(reference_pred['scores']) > 0
        torch.testing.assert_close(our_pred['bboxes'], reference_pred['bboxes'], atol=1e-3, rtol=1e-4)
        torch.testing.assert_close(our_pred['scores'], reference_pred['scores'], atol=1e-5, rtol=1e-4)
        assert torch.equal(our_pred['labels'], reference_pred['labels'])
        # Masks as COCO RLE: decoded, a pixel at the 0.5 threshold may round either way.
        our_masks, reference_masks = (mask_utils.decode(list(p['masks'])) for p in (our_pred, reference_pred))
        assert our_masks.shape == reference_masks.shape and (our_masks != reference_masks).mean() < 1e-3


def test_test_py_says_a_backbone_only_file_is_no_whole_model(setup, tmp_path):
    _, config, _, model = setup
    classifier = tmp_path / 'convnext_classifier.pth'
    torch.save({'state_dict': {f'backbone.{k}': v for k, v in model.backbone.state_dict().items()},
                'meta': {}}, classifier)
    result = run_tool([TEST, str(config), str(classifier), '--work-dir', str(tmp_path / 'work')])
    assert result.returncode != 0
    assert 'it holds a ConvNeXt backbone only (mmpretrain layout' in result.stderr
    assert "model.backbone.init_cfg=dict(type='Pretrained', checkpoint=FILE)" in result.stderr
    assert 'Traceback' not in result.stderr
