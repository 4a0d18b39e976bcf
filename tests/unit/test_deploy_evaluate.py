"""An exported file's metric on a config's test split (convnext_dense/deploy/evaluate.py) equals PyTorch's."""
import pytest

pytest.importorskip('onnxruntime')
pytest.importorskip('onnx')

from convnext_dense.datasets.shapes import make_shapes  # noqa: E402
from convnext_dense.deploy.evaluate import evaluate_onnx, load_test_split  # noqa: E402
from convnext_dense.errors import CliError, DeployError  # noqa: E402

CONFIG = 'demo/upernet_convnext_shapes'


@pytest.fixture(scope='module')
def exported(tmp_path_factory):
    """Three 64x64 shapes test images, an atto UperNet with random weights and its export."""
    from convnext_dense.apis import init_model
    from convnext_dense.deploy.export import export_model
    from convnext_dense.deploy.from_config import pipeline_resize
    root = tmp_path_factory.mktemp('evaluate')
    make_shapes(root / 'shapes', seed=0, num_train=0, num_val=3, image_size=64, max_objects=3)
    model = init_model(CONFIG, None, device='cpu', cfg_options={'model.backbone.arch': 'atto'})
    onnx_file = export_model(model, root / 'seg.onnx', shape=(64, 64), dataset_meta=model.dataset_meta,
                             resize=pipeline_resize(model.cfg))
    return model, onnx_file, str(root / 'shapes')


def test_segmentor_file_scores_what_the_pytorch_model_scores(exported):
    from convnext_dense.apis import inference_model
    model, onnx_file, data_root = exported
    _, dataset, evaluator = load_test_split(CONFIG, data_root)
    for index in range(len(dataset)):
        sample = dataset[index]['data_samples']
        sample.pred_sem_seg = inference_model(model, sample.img_path).pred_sem_seg
        evaluator.process(data_samples=[sample])
    expected = evaluator.evaluate(len(dataset))
    got = evaluate_onnx(CONFIG, onnx_file, data_root=data_root, num_threads=1)
    assert set(got) == set(expected) and len(dataset) == 3
    assert got['mIoU'] == pytest.approx(expected['mIoU'], abs=0.02)
    assert got['aAcc'] == pytest.approx(expected['aAcc'], abs=0.02)


def test_the_test_command_evaluates_an_onnx_file(exported, capsys):
    from convnext_dense.cli import test as test_command
    _, onnx_file, data_root = exported
    metrics = test_command.test_onnx(test_command.parse_args([CONFIG, str(onnx_file), '--data-root', data_root]))
    assert f'mIoU: {metrics["mIoU"]}' in capsys.readouterr().out
    assert metrics == evaluate_onnx(CONFIG, onnx_file, data_root=data_root)
    with pytest.raises(CliError, match='--tta: not available when testing an .onnx file'):
        test_command.main([CONFIG, str(onnx_file), '--data-root', data_root, '--tta'])


def test_a_config_without_a_test_split_is_named(tmp_path):
    config = tmp_path / 'no_test.py'
    config.write_text("_base_ = ['mmseg::_base_/default_runtime.py']\ntest_dataloader = None\n")
    with pytest.raises(DeployError, match='no test_dataloader'):
        load_test_split(str(config))
