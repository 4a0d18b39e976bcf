"""``convnext-dense infer`` and the Python API on the demo detector and segmentor (fixed seed-0 random weights):
shapes images, a folder, a glob, a generated video and scikit-image's photographs; the files, their schema
and sizes; the API's predictions equal the CLI's JSON; and every bad input ends in one line."""
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils

import mmdet  # noqa: F401  (a missing mmdet must fail the suite, not skip it)
import mmseg  # noqa: F401

from convnext_dense.apis import inference_model, init_model
from convnext_dense.apis.inference import resolve_device
from convnext_dense.apis.predictions import detection_record
from convnext_dense.cli.main import main as cli_main

DET_CONFIG = 'demo/mask_rcnn_convnext_shapes'
SEG_CONFIG = 'demo/upernet_convnext_shapes'
SIZE = 64


def save_random_checkpoint(config: str, path: Path, with_meta: bool = True) -> Path:
    """A checkpoint of ``config``'s model with seed-0 initial weights, as a training run saves it."""
    torch.manual_seed(0)
    model = init_model(config)
    meta = {'dataset_meta': dict(model.dataset_meta)} if with_meta else {}
    torch.save({'state_dict': model.state_dict(), 'meta': meta}, path)
    return path


@pytest.fixture(scope='module')
def assets(tmp_path_factory):
    root = tmp_path_factory.mktemp('infer')
    from convnext_dense.datasets.shapes import make_shapes
    make_shapes(root / 'shapes', seed=0, num_train=1, num_val=3, image_size=SIZE, max_objects=3)
    images = sorted((root / 'shapes' / 'images' / 'val').glob('*.png'))
    frames = [cv2.imread(str(path)) for path in images]
    video = root / 'clip.mp4'
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*'mp4v'), 5, (SIZE, SIZE))
    for frame in frames + frames[:1]:
        writer.write(frame)
    writer.release()
    skimage_data = pytest.importorskip('skimage.data')
    photos = root / 'photos'
    photos.mkdir()
    for name in ('astronaut', 'coffee'):
        rgb = getattr(skimage_data, name)()
        small = cv2.resize(rgb, (128, round(128 * rgb.shape[0] / rgb.shape[1])), interpolation=cv2.INTER_AREA)
        cv2.imwrite(str(photos / f'{name}.jpg'), small[..., ::-1])
    portrait = root / 'portrait'  # beside the photos: a third aspect ratio (128 x 85 turned upright)
    portrait.mkdir()
    cv2.imwrite(str(portrait / 'coffee_upright.jpg'), cv2.imread(str(photos / 'coffee.jpg')).transpose(1, 0, 2))
    return dict(root=root, images=images, video=video, photos=photos, portrait=portrait / 'coffee_upright.jpg',
                det=save_random_checkpoint(DET_CONFIG, root / 'det.pth'),
                seg=save_random_checkpoint(SEG_CONFIG, root / 'seg.pth'))


def run_infer(argv, capsys):
    """``convnext-dense infer ARGV`` in this process; returns (exit status, stdout, stderr)."""
    try:
        status = cli_main(['infer', *[str(arg) for arg in argv]])
    except SystemExit as exited:  # argparse
        status = exited.code
    captured = capsys.readouterr()
    assert 'Traceback' not in captured.err
    return status, captured.out, captured.err


def test_detector_on_images_folder_and_photographs(assets, tmp_path, capsys):
    out = tmp_path / 'out'
    folder = assets['images'][0].parent
    status, stdout, _ = run_infer([DET_CONFIG, assets['det'], assets['images'][0], folder, assets['photos'] / '*.jpg',
                                   '--out-dir', out, '--score-thr', '0'], capsys)
    assert status == 0
    names = [p.stem for p in assets['images']] + ['astronaut', 'coffee']  # the first image only once
    assert sorted(p.stem for p in (out / 'preds').glob('*.json')) == sorted(names)
    last = stdout.strip().splitlines()[-1]
    assert last.startswith(f'infer: {len(names)} images in ') and 'images/s' in last
    classes = init_model(DET_CONFIG).dataset_meta['classes']
    for name in names:
        record = json.loads((out / 'preds' / f'{name}.json').read_text())
        assert set(record) == {'image', 'height', 'width', 'boxes', 'scores', 'labels', 'class_names', 'masks'}
        source = cv2.imread(record['image'])
        assert (record['height'], record['width']) == source.shape[:2]
        count = len(record['scores'])
        assert count > 0  # random weights still score every class near 1/6
        assert len(record['boxes']) == len(record['labels']) == len(record['masks']) == count
        assert all(len(box) == 4 and box[0] <= box[2] and box[1] <= box[3] for box in record['boxes'])
        assert record['class_names'] == [classes[label] for label in record['labels']]
        for rle in record['masks']:
            assert mask_utils.decode(dict(rle, counts=rle['counts'].encode())).shape == source.shape[:2]
        painted = cv2.imread(str(out / 'vis' / f'{name}.png'))
        assert painted.shape == source.shape
    assert not [p for p in out.rglob('*') if p.name.endswith('.tmp')]


def test_segmentor_writes_label_maps_and_overlays(assets, tmp_path, capsys):
    out = tmp_path / 'out'
    status, _, _ = run_infer([SEG_CONFIG, assets['seg'], *assets['images'], assets['photos'], '--out-dir', out,
                              '--batch-size', '2'], capsys)
    assert status == 0
    num_classes = len(init_model(SEG_CONFIG).dataset_meta['classes'])
    sources = [*assets['images'], *sorted(assets['photos'].glob('*.jpg'))]
    for source in sources:
        image = cv2.imread(str(source))
        label_map = cv2.imread(str(out / 'preds' / f'{source.stem}.png'), cv2.IMREAD_UNCHANGED)
        assert label_map.shape == image.shape[:2] and label_map.dtype == np.uint8
        assert label_map.max() < num_classes
        assert cv2.imread(str(out / 'vis' / f'{source.stem}.png')).shape == image.shape


def test_video_is_painted_frame_by_frame(assets, tmp_path, capsys):
    out = tmp_path / 'out'
    status, stdout, _ = run_infer([DET_CONFIG, assets['det'], assets['video'], '--out-dir', out, '--score-thr', '0'],
                                  capsys)
    assert status == 0
    frames = len(assets['images']) + 1
    assert stdout.strip().splitlines()[-1].startswith(f'infer: {frames} images in ')
    capture = cv2.VideoCapture(str(out / 'vis' / 'clip.mp4'))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == frames
    ok, frame = capture.read()
    capture.release()
    assert ok and frame.shape == (SIZE, SIZE, 3)
    records = [json.loads(line) for line in (out / 'preds' / 'clip.jsonl').read_text().splitlines()]
    assert [record['frame'] for record in records] == list(range(frames))
    # Written to temporary files and renamed when complete: nothing else is left.
    assert sorted(path.name for path in out.rglob('*') if path.is_file()) == ['clip.jsonl', 'clip.mp4']


def test_python_api_returns_the_cli_predictions(assets, tmp_path, capsys):
    image = assets['photos'] / 'astronaut.jpg'
    out = tmp_path / 'out'
    assert run_infer([DET_CONFIG, assets['det'], image, '--out-dir', out, '--score-thr', '0'], capsys)[0] == 0
    from_cli = json.loads((out / 'preds' / 'astronaut.json').read_text())

    model = init_model(DET_CONFIG, str(assets['det']), device='cpu')
    result = inference_model(model, str(image))
    from_api = detection_record(result, model.dataset_meta['classes'], str(image), *cv2.imread(str(image)).shape[:2],
                                score_thr=0.0)
    assert from_api['labels'] == from_cli['labels'] and from_api['masks'] == from_cli['masks']
    np.testing.assert_allclose(from_api['boxes'], from_cli['boxes'], atol=0.02)
    np.testing.assert_allclose(from_api['scores'], from_cli['scores'], atol=1e-5)


def test_segmentor_classes_come_from_the_config_without_checkpoint_meta(assets, tmp_path):
    bare = save_random_checkpoint(SEG_CONFIG, tmp_path / 'bare.pth', with_meta=False)
    model = init_model(SEG_CONFIG, str(bare))
    from mmengine.config import Config

    from convnext_dense.config import config_path
    metainfo = Config.fromfile(config_path(SEG_CONFIG)).metainfo
    assert list(model.dataset_meta['classes']) == list(metainfo['classes'])
    assert [tuple(c) for c in model.dataset_meta['palette']] == [tuple(c) for c in metainfo['palette']]


def test_ade20k_model_gets_ade20k_colours_not_cityscapes():
    from mmseg.datasets import ADE20KDataset
    model = init_model('seg/upernet_convnext_t_512_160k')
    assert tuple(model.dataset_meta['classes']) == ADE20KDataset.METAINFO['classes']
    assert [tuple(c) for c in model.dataset_meta['palette']] == [tuple(c) for c in ADE20KDataset.METAINFO['palette']]


# Bad input: one line, a non-zero exit, nothing half written.

@pytest.mark.parametrize('cuda, expected', [(True, 'cuda:0'), (False, 'cpu')])
def test_device_defaults_to_the_first_gpu_when_there_is_one(cuda, expected, monkeypatch):
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: cuda)
    assert resolve_device(None) == expected
    assert resolve_device('cpu') == 'cpu'
    from convnext_dense.cli.infer import parse_args
    assert parse_args(['det/mask_rcnn_convnext_t_3x', 'model.pth', 'a.jpg']).device is None


def test_unreadable_files_among_good_ones_are_skipped_and_listed(assets, tmp_path, capsys):
    corrupt = tmp_path / 'corrupt.png'
    corrupt.write_bytes(np.random.default_rng(0).bytes(500))
    notes = tmp_path / 'notes.txt'
    notes.write_text('not an image')
    out = tmp_path / 'out'
    status, _, err = run_infer([DET_CONFIG, assets['det'], assets['images'][0], corrupt, notes,
                                assets['images'][1], '--out-dir', out], capsys)
    assert status == 1
    assert sorted(p.stem for p in (out / 'preds').glob('*.json')) == sorted(p.stem for p in assets['images'][:2])
    assert err.strip().splitlines()[-1] == (f'error: skipped 2 input(s) that could not be read: {corrupt} is not a '
                                            f'readable image; {notes} is not a readable image; fix or remove them')
    assert not (out / 'preds' / 'corrupt.json').exists() and not (out / 'vis' / 'notes.png').exists()


def test_video_that_cannot_be_opened(assets, tmp_path, capsys):
    broken = tmp_path / 'broken.mp4'
    broken.write_bytes(b'\x00' * 256)
    out = tmp_path / 'out'
    status, _, err = run_infer([DET_CONFIG, assets['det'], broken, '--out-dir', out], capsys)
    assert status == 2
    assert err.strip().splitlines()[-1] == (f'error: skipped 1 input(s) that could not be read: video {broken} '
                                            f'cannot be opened (unknown codec or not a video); fix or remove them')
    assert not list(out.rglob('*.mp4')) and not list(out.rglob('*.tmp*'))


@pytest.mark.parametrize('case', ['empty_folder', 'glob', 'missing', 'out_dir_file', 'checkpoint_folder',
                                  'checkpoint_of_another_model', 'unknown_config', 'syntax_error', 'config_kind'])
def test_usage_errors_are_one_line(case, assets, tmp_path, capsys):
    out = tmp_path / 'out'
    config, checkpoint, inputs = DET_CONFIG, assets['det'], [assets['images'][0]]
    if case == 'empty_folder':
        (tmp_path / 'empty').mkdir()
        inputs = [tmp_path / 'empty']
        expected = f'error: input folder {tmp_path / "empty"} holds no image or video file ('
    elif case == 'glob':
        inputs = [tmp_path / '*.jpg']
        expected = f'error: input pattern {tmp_path / "*.jpg"} matches no file; check the pattern'
    elif case == 'missing':
        inputs = [tmp_path / 'nope.png']
        expected = f'error: input {tmp_path / "nope.png"} not found; pass image files, folders, globs or videos'
    elif case == 'out_dir_file':
        out.write_text('a file')
        expected = f'error: --out-dir {out} is a file; pass a folder (it is created if missing)'
    elif case == 'checkpoint_folder':
        checkpoint = tmp_path
        expected = f'error: checkpoint {tmp_path} is a folder; pass a .pth file in it'
    elif case == 'checkpoint_of_another_model':
        checkpoint = assets['seg']
        expected = f'error: checkpoint {checkpoint} (CHECKPOINT) does not fit the model of this config: '
    elif case == 'unknown_config':
        config = 'det/mask_rcnn_convnext_shape'
        expected = ('error: config det/mask_rcnn_convnext_shape not found: no such file and no such config name; '
                    'close matches: demo/mask_rcnn_convnext_shapes')
    elif case == 'syntax_error':
        config = tmp_path / 'broken.py'
        config.write_text("_base_ = ['x.py'\nmodel = dict(\n")
        expected = f'error: config {config} has a Python syntax error in {config} line '
    else:
        config = tmp_path / 'config.txt'
        config.write_text('model = 1')
        expected = f'error: config {config} is a .txt file; configs are Python (.py), JSON or YAML files'
    status, _, err = run_infer([config, checkpoint, *inputs, '--out-dir', out], capsys)
    assert status == 2
    lines = err.strip().splitlines()
    assert lines[-1].startswith(expected), lines
    if case != 'checkpoint_of_another_model':  # found before the model is built (and may warn)
        assert len(lines) == 1, lines
    assert not out.is_dir()


@pytest.mark.parametrize('task', ['seg', 'det'])
def test_onnx_model_writes_what_the_pytorch_path_writes(task, assets, tmp_path, capsys):
    """A file of the default static shape and two images per call takes square, landscape and portrait images
    (each resized by the test pipeline and padded into the static input), as the PyTorch path batches them."""
    pytest.importorskip('onnxruntime')
    import onnx
    from convnext_dense.cli import export
    config = SEG_CONFIG if task == 'seg' else DET_CONFIG
    onnx_file = tmp_path / f'{task}.onnx'
    assert export.main([config, str(assets[task]), '--out', str(onnx_file), '--batch', '2']) == 0
    props = {p.key: json.loads(p.value) for p in onnx.load(str(onnx_file)).metadata_props}
    assert props['input_shape'] is not None and props['batch_size'] == 2
    images = [*assets['images'], assets['photos'] / 'astronaut.jpg', assets['photos'] / 'coffee.jpg',
              assets['portrait']]
    assert {np.sign(cv2.imread(str(image)).shape[0] - cv2.imread(str(image)).shape[1]) for image in images} == {
        -1, 0, 1}
    threshold = ['--score-thr', '0.05'] if task == 'det' else []  # random weights score low
    outs = {}
    for runtime, model in (('torch', [config, assets[task]]), ('onnx', [onnx_file])):
        outs[runtime] = tmp_path / runtime
        status, _, _ = run_infer([*model, *images, '--out-dir', outs[runtime], '--batch-size', '2', *threshold],
                                 capsys)
        assert status == 0
    detections = 0
    for image in images:
        painted = [cv2.imread(str(outs[runtime] / 'vis' / f'{image.stem}.png')) for runtime in outs]
        assert painted[0].shape == painted[1].shape == cv2.imread(str(image)).shape
        if task == 'seg':
            torch_map, onnx_map = (cv2.imread(str(outs[runtime] / 'preds' / f'{image.stem}.png'), cv2.IMREAD_UNCHANGED)
                                   for runtime in outs)
            assert (torch_map == onnx_map).mean() >= 0.999
            continue
        torch_json, onnx_json = (json.loads((outs[runtime] / 'preds' / f'{image.stem}.json').read_text())
                                 for runtime in outs)
        assert onnx_json['labels'] == torch_json['labels'] and onnx_json['class_names'] == torch_json['class_names']
        detections += len(torch_json['labels'])
        np.testing.assert_allclose(onnx_json['boxes'], torch_json['boxes'], atol=0.5)
        np.testing.assert_allclose(onnx_json['scores'], torch_json['scores'], atol=1e-3)
        for ours, theirs in zip(onnx_json['masks'], torch_json['masks']):
            assert ours['size'] == theirs['size']
            assert mask_utils.iou([ours], [theirs], [False])[0][0] >= 0.98 or (
                mask_utils.area(ours) == mask_utils.area(theirs) == 0)
    assert task == 'seg' or detections > 0
