"""Predict on your own images and videos with a detector or a segmentor.

    convnext-dense infer CONFIG CHECKPOINT INPUT... [--out-dir DIR] [--device cuda:1] [--score-thr 0.3]
    convnext-dense infer MODEL_NAME [CHECKPOINT] INPUT...      # a zoo name: its config and released weights
    convnext-dense infer MODEL.onnx INPUT...                   # through ONNX Runtime (convnext-dense export)

CONFIG is a path or a shipped config's name (``det/mask_rcnn_convnext_t_3x``). INPUT is image files, folders
(their images), quoted globs (``'photos/*.jpg'``) or video files. Under ``--out-dir`` (default
``infer_output``), per image NAME: ``vis/NAME.png`` painted, and ``preds/NAME.json`` (detection: boxes,
scores, labels, class names, COCO RLE masks) or ``preds/NAME.png`` (segmentation label map); per video
``vis/NAME.mp4`` painted and, for detection, ``preds/NAME.jsonl`` (one record per frame).

Inputs that cannot be read are skipped and listed at the end; the exit status is then 1, or 2 when none
could be written (0 when every input was written).
"""
import argparse
import contextlib
import glob
import json
import os
import os.path as osp
import sys
import time
from typing import List, Optional, Sequence, Tuple

import cv2
import numpy as np
from mmengine.utils import ProgressBar

from convnext_dense.apis.inference import inference_model, init_model
from convnext_dense.apis.predictions import PredictionWriter
from convnext_dense.cli.errors import RUN_ERROR, USAGE_ERROR
from convnext_dense.cli.weights import add_weights_mirror_argument, is_checkpoint_source
from convnext_dense.config import task_of
from convnext_dense.deploy.predictor import OnnxPredictor
from convnext_dense.errors import ConfigError
from convnext_dense.io import atomic_output
from convnext_dense.zoo import is_model_name

IMAGE_SUFFIXES = ('.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff', '.webp', '.ppm', '.pgm')
VIDEO_SUFFIXES = ('.mp4', '.avi', '.mov', '.mkv', '.webm', '.m4v', '.mpg', '.mpeg')
#: Exit status when some inputs were skipped (and others written); none written is a usage error.
SKIPPED_STATUS = RUN_ERROR


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('model', help='model name (convnext-dense zoo), config path or name (then CHECKPOINT '
                                      'follows), or an exported .onnx file')
    parser.add_argument('inputs', nargs='+', metavar='[CHECKPOINT] INPUT',
                        help='checkpoint (not with .onnx), then image files, folders, globs or videos')
    parser.add_argument('--out-dir', default='infer_output', help='output folder (default infer_output)')
    parser.add_argument('--device', help="'cpu', 'cuda', 'cuda:1', ... (default: the first GPU if there is one, "
                                         "else the CPU)")
    parser.add_argument('--score-thr', type=float, default=0.3,
                        help='detection: lowest score painted and written (default 0.3)')
    parser.add_argument('--batch-size', type=int, default=1, help='images per forward pass (default 1)')
    add_weights_mirror_argument(parser)
    args = parser.parse_args(argv)
    if args.model.endswith('.onnx') or (is_model_name(args.model) and not is_checkpoint_source(args.inputs[0])):
        args.checkpoint = None  # a model name's released weights are found by init_model
    else:
        if len(args.inputs) < 2:
            parser.error('give CONFIG CHECKPOINT INPUT..., MODEL_NAME INPUT... or MODEL.onnx INPUT...')
        args.checkpoint, args.inputs = args.inputs[0], args.inputs[1:]
    if args.batch_size < 1:
        parser.error(f'--batch-size must be at least 1, got {args.batch_size}')
    return args


def expand_inputs(inputs: Sequence[str]) -> List[str]:
    """Files named by ``inputs`` (files, folders' images and videos, globs), in order, without repeats.

    Raises:
        ConfigError: An input that is missing, an empty folder or a glob that matches nothing.
    """
    files: List[str] = []
    for item in inputs:
        if osp.isdir(item):
            found = sorted(osp.join(item, name) for name in os.listdir(item)
                           if name.lower().endswith(IMAGE_SUFFIXES + VIDEO_SUFFIXES))
            if not found:
                raise ConfigError(f'input folder {item} holds no image or video file '
                                  f'({", ".join(IMAGE_SUFFIXES)}, ...); pass a folder with images')
        elif osp.isfile(item):
            found = [item]
        elif glob.has_magic(item):
            found = sorted(path for path in glob.glob(item, recursive=True) if osp.isfile(path))
            if not found:
                raise ConfigError(f'input pattern {item} matches no file; check the pattern (quote it so the '
                                  f'shell does not expand it)')
        else:
            raise ConfigError(f'input {item} not found; pass image files, folders, globs or videos')
        files += [path for path in found if path not in files]
    return files


def check_out_dir(out_dir: str) -> None:
    """Raises :class:`ConfigError` if ``--out-dir`` is a file or cannot be created."""
    if osp.exists(out_dir) and not osp.isdir(out_dir):
        raise ConfigError(f'--out-dir {out_dir} is a file; pass a folder (it is created if missing)')


class TorchPredictor:
    """A config + checkpoint as a predictor: ``task``, ``dataset_meta`` and batches of BGR images in,
    data samples out (see :mod:`convnext_dense.apis.inference`)."""

    def __init__(self, config: str, checkpoint: Optional[str], device: str, batch_size: int,
                 weights_mirror: Optional[str] = None) -> None:
        self.model = init_model(config, checkpoint, device=device, weights_mirror=weights_mirror)
        self.task = task_of(self.model.cfg)
        self.dataset_meta = self.model.dataset_meta
        self.batch_size = batch_size

    def predict(self, bgr_images: List[np.ndarray]) -> list:
        return inference_model(self.model, bgr_images, batch_size=self.batch_size)


class OnnxBatchPredictor:
    """An exported ONNX model through ``convnext_dense.deploy.predictor.OnnxPredictor``: batches of BGR images in,
    ``--batch-size`` per ONNX Runtime call (a file exported with ``--batch N`` takes N)."""

    def __init__(self, path: str, batch_size: int = 1) -> None:
        self.predictor = OnnxPredictor(path, batch_size=batch_size if batch_size > 1 else None)
        self.task = self.predictor.task
        self.dataset_meta = self.predictor.dataset_meta
        self.batch_size = self.predictor.batch_size

    def predict(self, bgr_images: List[np.ndarray]) -> list:
        return self.predictor.predict([np.ascontiguousarray(image[..., ::-1]) for image in bgr_images])


def read_image(path: str) -> Optional[np.ndarray]:
    """The image at ``path`` as BGR uint8 (grey and alpha converted), or None when it cannot be decoded."""
    import mmcv  # mmcv: an optional dependency, as mmdet and mmseg
    try:
        image = mmcv.imread(path, flag='color')
    except Exception:  # noqa: BLE001 - any decoder failure means "not an image we can read"
        return None
    return image


def infer_video(path: str, predictor, writer) -> int:
    """Paints every frame of the video at ``path`` into ``vis/NAME.mp4`` (and ``preds/NAME.jsonl`` for
    detection), each written to a temporary file and renamed when complete; returns the number of frames.

    Raises:
        ConfigError: The video cannot be opened or holds no frame.
    """
    capture = cv2.VideoCapture(path)
    if not capture.isOpened():
        raise ConfigError(f'video {path} cannot be opened (unknown codec or not a video)')
    fps = capture.get(cv2.CAP_PROP_FPS) or 25.0
    name = writer.unique_name(osp.splitext(osp.basename(path))[0])
    video_out = writer.out_dir / 'vis' / f'{name}.mp4'
    jsonl_out = writer.out_dir / 'preds' / f'{name}.jsonl'
    # Both files appear complete or not at all; a segmentor writes no jsonl.
    jsonl_output = atomic_output(jsonl_out) if writer.task == 'det' else contextlib.nullcontext(os.devnull)
    frames = 0
    with atomic_output(video_out, suffix='.tmp.mp4') as video_tmp, jsonl_output as jsonl_tmp, \
            open(jsonl_tmp, 'w') as records:
        video_writer = None
        try:
            while True:
                ok, frame = capture.read()
                if not ok:
                    break
                sample = predictor.predict([frame])[0]
                rgb = np.ascontiguousarray(frame[..., ::-1])
                painted = writer.paint(rgb, sample)
                if video_writer is None:
                    height, width = painted.shape[:2]
                    video_writer = cv2.VideoWriter(video_tmp, cv2.VideoWriter_fourcc(*'mp4v'), fps, (width, height))
                video_writer.write(np.ascontiguousarray(painted[..., ::-1]))
                if writer.task == 'det':
                    records.write(json.dumps(dict(writer.record(sample, path, *rgb.shape[:2]), frame=frames)) + '\n')
                frames += 1
        finally:
            capture.release()
            if video_writer is not None:
                video_writer.release()
        if frames == 0:
            raise ConfigError(f'video {path} holds no frame that could be decoded')
    return frames


def run(args: argparse.Namespace) -> Tuple[int, List[str], float]:
    """Predicts on every input; returns (images and frames written, skipped inputs with reasons, seconds)."""
    files = expand_inputs(args.inputs)
    check_out_dir(args.out_dir)
    if args.model.endswith('.onnx'):
        predictor = OnnxBatchPredictor(args.model, args.batch_size)
    else:
        predictor = TorchPredictor(args.model, args.checkpoint, args.device, args.batch_size, args.weights_mirror)
    writer = PredictionWriter(predictor.task, predictor.dataset_meta, args.out_dir, score_thr=args.score_thr)
    videos = [path for path in files if path.lower().endswith(VIDEO_SUFFIXES)]
    images = [path for path in files if path not in videos]
    progress = ProgressBar(len(images) + len(videos), file=sys.stderr)
    skipped: List[str] = []
    done = 0
    start = time.perf_counter()
    for first in range(0, len(images), predictor.batch_size):
        paths, arrays = [], []
        for path in images[first:first + predictor.batch_size]:
            image = read_image(path)
            if image is None:
                skipped.append(f'{path} is not a readable image')
                progress.update()
            else:
                paths.append(path)
                arrays.append(image)
        if arrays:
            for path, image, sample in zip(paths, arrays, predictor.predict(arrays)):
                writer.write(path, np.ascontiguousarray(image[..., ::-1]), sample)
                done += 1
                progress.update()
    for path in videos:
        try:
            done += infer_video(path, predictor, writer)
        except ConfigError as error:
            skipped.append(str(error))
        progress.update()
    return done, skipped, time.perf_counter() - start


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    done, skipped, seconds = run(args)
    print(file=sys.stderr)
    print(f'infer: {done} images in {seconds:.1f} s ({done / max(seconds, 1e-9):.2f} images/s); '
          f'outputs in {args.out_dir}')
    if skipped:
        print(f'error: skipped {len(skipped)} input(s) that could not be read: {"; ".join(skipped)}; fix or '
              f'remove them', file=sys.stderr)
        return SKIPPED_STATUS if done else USAGE_ERROR
    return 0
