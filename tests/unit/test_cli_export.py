"""``convnext-dense export`` (convnext_dense/cli/export.py): files written, one-line errors for bad input."""
import json

import pytest
import torch

pytest.importorskip('onnxruntime')
onnx = pytest.importorskip('onnx')

from convnext_dense.cli.export import main  # noqa: E402
from convnext_dense.errors import ConfigError, ConvNeXtDenseError, DeployError  # noqa: E402
from test_deploy_export import SEG_CLASSES, SEG_MODEL, build_segmentor  # noqa: E402

CONFIG = '''
default_scope = 'mmseg'
custom_imports = dict(imports=['convnext_dense'], allow_failed_imports=False)
model = {model!r}
test_pipeline = [dict(type='LoadImageFromFile'), dict(type='Resize', scale=(96, 64), keep_ratio=True),
                 dict(type='PackSegInputs')]
'''


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    """A slim UperNet config and a checkpoint of it (with dataset_meta, as training writes)."""
    root = tmp_path_factory.mktemp('cli_export')
    config = root / 'upernet_tiny.py'
    config.write_text(CONFIG.format(model=SEG_MODEL))
    checkpoint = root / 'model.pth'
    torch.save(dict(state_dict=build_segmentor().state_dict(),
                    meta=dict(dataset_meta=dict(classes=SEG_CLASSES, palette=[[1, 2, 3]] * 4))), checkpoint)
    return config, checkpoint


def metadata(path) -> dict:
    return {p.key: json.loads(p.value) for p in onnx.load(str(path)).metadata_props}


def test_export_model_and_backbone(trained, tmp_path, capsys):
    config, checkpoint = trained
    out = tmp_path / 'seg.onnx'
    assert main([str(config), str(checkpoint), '--out', str(out)]) == 0
    assert f'wrote {out}' in capsys.readouterr().out
    props = metadata(out)
    assert props['task'] == 'seg' and props['classes'] == list(SEG_CLASSES)
    # the test Resize scale (w, h) = (96, 64) keeps the ratio: the default shape takes both orientations
    assert props['input_shape'] == [96, 96] and props['batch_size'] == 1
    assert props['preprocess']['resize'] == dict(scale=[96, 64], keep_ratio=True)

    backbone = tmp_path / 'backbone.onnx'
    assert main([str(config), str(checkpoint), '--out', str(backbone), '--what', 'backbone', '--dynamic-shape',
                 '--opset', '16']) == 0
    model = onnx.load(str(backbone))
    assert model.opset_import[0].version == 16
    assert [o.name for o in model.graph.output] == ['out0', 'out1', 'out2', 'out3']
    assert metadata(backbone)['input_shape'] is None


@pytest.mark.parametrize('args, message', [
    (['--opset', '11'], '--opset 11: RoiAlign with half_pixel coordinates'),
    (['--shape', '16', '64'], '--shape 16 64: give the input size as H W, each at least 32'),
    (['--batch', '0'], '--batch 0: give the number of images per call, at least 1'),
])
def test_bad_options_raise_one_line(trained, tmp_path, args, message):
    """The command raises a DeployError (the command line prints it as one line, exit status by type)."""
    config, checkpoint = trained
    with pytest.raises(DeployError) as caught:
        main([str(config), str(checkpoint), '--out', str(tmp_path / 'x.onnx'), *args])
    assert str(caught.value).startswith(message) and '\n' not in str(caught.value)
    assert not (tmp_path / 'x.onnx').exists()


def test_missing_checkpoint_and_foreign_scope(trained, tmp_path):
    config, _ = trained
    with pytest.raises(ConvNeXtDenseError, match='none.pth'):
        main([str(config), str(tmp_path / 'none.pth'), '--out', str(tmp_path / 'x.onnx')])
    other = tmp_path / 'cls.py'
    other.write_text("default_scope = 'mmpretrain'\nmodel = dict(type='ImageClassifier')\n")
    with pytest.raises(ConfigError, match="default_scope is 'mmpretrain'"):
        main([str(other), str(trained[1]), '--out', str(tmp_path / 'x.onnx')])
    assert not (tmp_path / 'x.onnx').exists()


def test_usage_errors_exit_2_in_one_line_through_the_command_line(trained, tmp_path, capsys):
    """Like every other command: the boundary of ``convnext-dense`` maps the raised error to its status."""
    from convnext_dense.cli.main import main as cli_main
    config, checkpoint = trained
    status = cli_main(['export', str(config), str(checkpoint), '--out', str(tmp_path / 'x.onnx'), '--opset', '11'])
    err = capsys.readouterr().err.strip()
    assert status == 2
    assert err.startswith('error: --opset 11: RoiAlign with half_pixel coordinates') and '\n' not in err
    assert 'Traceback' not in err and not (tmp_path / 'x.onnx').exists()
