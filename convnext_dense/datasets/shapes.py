"""Synthetic shapes: a small, deterministic scene dataset for the built-in demo and the tests.

Each scene is a greyish, mildly textured, noisy background with a few filled shapes (circle, square,
triangle, star, ring) of random saturated colour, size and rotation. Shapes may overlap: a later shape paints
over earlier ones, and every instance is annotated with its *visible* pixels only. One scene yields, from the
same per-pixel instance map, all three annotations the toolkit needs:

- ``images/{split}/NNNNNN.png``: the RGB image (PNG, lossless, so the bytes are reproducible);
- ``annotations/instances_{split}.json``: COCO instances with compressed-RLE masks (exact, holes allowed);
- ``labels/{split}/NNNNNN.png``: a semantic label map, one class index per pixel.

Label-map convention: ``0`` is *background*, a real class counted by mIoU, and shape ``k`` of
:data:`SHAPES_CLASSES` is ``k + 1``; segmentation configs use ``reduce_zero_label=False`` with
:data:`SEG_CLASSES`. (ADE20K itself uses ``0`` for "ignore" and ``reduce_zero_label=True``.)

The same seed and sizes give byte-identical files: all randomness comes from one
``numpy.random.Generator(PCG64(seed))``, shapes are rasterised by PIL on integer coordinates, and the
json is written with sorted keys. pycocotools (for the RLE encoding) is imported only when data is written,
so ``import convnext_dense`` stays light.
"""
import io
import json
import math
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

import numpy as np
from PIL import Image, ImageDraw

from convnext_dense.errors import ConfigError, MissingDependencyError
from convnext_dense.io import atomic_write

#: Object classes, in COCO category-id order (category id = index + 1).
SHAPES_CLASSES: Tuple[str, ...] = ('circle', 'square', 'triangle', 'star', 'ring')
#: One RGB colour per object class, for visualisation.
SHAPES_PALETTE: Tuple[Tuple[int, int, int], ...] = (
    (220, 20, 60), (0, 130, 200), (60, 180, 75), (255, 200, 0), (145, 30, 180))
#: Semantic-segmentation classes: label-map value ``i`` is ``SEG_CLASSES[i]``.
SEG_CLASSES: Tuple[str, ...] = ('background',) + SHAPES_CLASSES
SEG_PALETTE: Tuple[Tuple[int, int, int], ...] = ((0, 0, 0),) + SHAPES_PALETTE

SPLITS: Tuple[str, ...] = ('train', 'val')
# Smallest visible area (pixels) and visible fraction of its full shape an instance must keep; placements
# that would occlude an earlier shape below these are redrawn, so every painted shape is annotated.
MIN_VISIBLE_AREA = 40
MIN_VISIBLE_FRACTION = 0.4
# Fill colours must differ from the background's mean by this L1 distance, or a shape may be invisible.
MIN_COLOUR_CONTRAST = 120
# Shapes are saturated colours (HSV saturation and value at least these) on a greyish background: its base
# colour is at most BACKGROUND_TINT off grey per channel, its texture (blobs and stripes, amplitudes at most
# these) and the pixel noise (NOISE_STD) change brightness far more than hue.
MIN_SATURATION = 0.6
MIN_VALUE = 0.55
BACKGROUND_TINT = 12.0
BACKGROUND_BLOBS = 30.0
BACKGROUND_STRIPES = 10.0
NOISE_STD = 6.0
PLACEMENT_ATTEMPTS = 20


def _regular_polygon(cx: float, cy: float, radius: float, sides: int, angle: float,
                     inner_ratio: Optional[float] = None) -> List[Tuple[int, int]]:
    """Integer vertices of a regular polygon, or of a star when ``inner_ratio`` is given."""
    points = []
    steps = sides * 2 if inner_ratio else sides
    for i in range(steps):
        r = radius * (inner_ratio if inner_ratio and i % 2 else 1.0)
        theta = angle + 2 * math.pi * i / steps
        points.append((int(round(cx + r * math.cos(theta))), int(round(cy + r * math.sin(theta)))))
    return points


def _shape_mask(name: str, cx: float, cy: float, radius: float, angle: float,
                size: Tuple[int, int]) -> np.ndarray:
    """Boolean mask (H, W) of one shape, rasterised by PIL."""
    width, height = size
    canvas = Image.new('L', (width, height), 0)
    draw = ImageDraw.Draw(canvas)
    box = [int(round(cx - radius)), int(round(cy - radius)), int(round(cx + radius)), int(round(cy + radius))]
    if name == 'circle':
        draw.ellipse(box, fill=1)
    elif name == 'square':
        # radius is the half side: the circumradius of the square is radius * sqrt(2).
        draw.polygon(_regular_polygon(cx, cy, radius * math.sqrt(2), 4, angle), fill=1)
    elif name == 'triangle':
        draw.polygon(_regular_polygon(cx, cy, radius * 1.25, 3, angle), fill=1)
    elif name == 'star':
        draw.polygon(_regular_polygon(cx, cy, radius * 1.2, 5, angle, inner_ratio=0.45), fill=1)
    elif name == 'ring':
        draw.ellipse(box, fill=1)
        inner = radius * 0.5
        draw.ellipse([int(round(cx - inner)), int(round(cy - inner)),
                      int(round(cx + inner)), int(round(cy + inner))], fill=0)
    else:
        raise ConfigError(f'unknown shape {name!r}; known: {SHAPES_CLASSES}')
    return np.asarray(canvas, dtype=bool)


def _background(rng: np.random.Generator, size: Tuple[int, int]) -> np.ndarray:
    """Float RGB background (H, W, 3): a greyish base colour, smooth brightness blobs and faint stripes.

    The background is kept low in saturation (at most :data:`BACKGROUND_TINT` per channel off grey, plus
    texture that changes all channels alike) and shapes are saturated (:func:`_fill_colour`), so the demo's
    small from-scratch models separate shapes from background quickly and must learn the geometry to tell
    the classes apart.
    """
    width, height = size
    base = rng.uniform(50, 200) + rng.uniform(-BACKGROUND_TINT, BACKGROUND_TINT, size=3)
    # Low-frequency texture: a coarse random grid upsampled bilinearly (PIL, deterministic).
    coarse = rng.uniform(-BACKGROUND_BLOBS, BACKGROUND_BLOBS, size=(4, 4)).astype(np.float32)
    blobs = np.asarray(Image.fromarray(coarse).resize((width, height), Image.BILINEAR), dtype=np.float64)
    # Faint stripes at a random angle and period make the background textured, not just smooth.
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    theta = rng.uniform(0, math.pi)
    period = rng.uniform(6, 20)
    stripes = rng.uniform(2, BACKGROUND_STRIPES) * np.sin(
        2 * math.pi * (xx * math.cos(theta) + yy * math.sin(theta)) / period)
    return base[None, None, :] + (blobs + stripes)[..., None]


def _fill_colour(rng: np.random.Generator, background_mean: np.ndarray) -> np.ndarray:
    """A saturated colour (HSV saturation and value at least :data:`MIN_SATURATION`, :data:`MIN_VALUE`)
    that differs from the background's mean by at least :data:`MIN_COLOUR_CONTRAST` (L1) when possible."""
    colour = _saturated_colour(rng)
    for _ in range(PLACEMENT_ATTEMPTS):
        if np.abs(colour - background_mean).sum() >= MIN_COLOUR_CONTRAST:
            break
        colour = _saturated_colour(rng)
    return colour


def _saturated_colour(rng: np.random.Generator) -> np.ndarray:
    hue, saturation, value = rng.uniform(0, 6), rng.uniform(MIN_SATURATION, 1.0), rng.uniform(MIN_VALUE, 1.0)
    # HSV -> RGB: the largest channel is value, the smallest value * (1 - saturation).
    sector, frac = int(hue) % 6, hue - int(hue)
    high, low = value, value * (1 - saturation)
    rising, falling = low + (high - low) * frac, high - (high - low) * frac
    rgb = [(high, rising, low), (falling, high, low), (low, high, rising),
           (low, falling, high), (rising, low, high), (high, low, falling)][sector]
    return 255.0 * np.asarray(rgb)


def make_scene(rng: np.random.Generator, image_size: Tuple[int, int] = (128, 128),
               max_objects: int = 6, radius_range: Tuple[float, float] = (9.0, 24.0)
               ) -> Tuple[np.ndarray, np.ndarray, List[int]]:
    """Draws one scene.

    Args:
        rng: Source of all randomness.
        image_size: (width, height) in pixels.
        max_objects: Each scene gets 1 to ``max_objects`` shapes (fewer if placements fail).
        radius_range: Range of the shape radius (half side for squares) in pixels.

    Returns:
        The uint8 RGB image (H, W, 3), the instance map (H, W; 0 background, i > 0 the i-th shape) and the
        class index (into :data:`SHAPES_CLASSES`) of each instance, in instance-id order.
    """
    width, height = image_size
    image = _background(rng, image_size)
    background_mean = image.reshape(-1, 3).mean(axis=0)
    instance_map = np.zeros((height, width), dtype=np.int32)
    labels: List[int] = []
    full_areas: List[int] = []
    for _ in range(int(rng.integers(1, max_objects + 1))):
        label = int(rng.integers(len(SHAPES_CLASSES)))
        colour = _fill_colour(rng, background_mean)
        for _attempt in range(PLACEMENT_ATTEMPTS):
            radius = rng.uniform(*radius_range)
            # Centres may lie near the border, so some shapes are truncated by the image edge.
            cx, cy = rng.uniform(0.1 * width, 0.9 * width), rng.uniform(0.1 * height, 0.9 * height)
            mask = _shape_mask(SHAPES_CLASSES[label], cx, cy, radius, rng.uniform(0, 2 * math.pi), image_size)
            if mask.sum() < MIN_VISIBLE_AREA:
                continue
            covered = np.bincount(instance_map[mask], minlength=len(labels) + 1)[1:]
            visible = np.bincount(instance_map.ravel(), minlength=len(labels) + 1)[1:] - covered
            if all(v >= MIN_VISIBLE_AREA and v >= MIN_VISIBLE_FRACTION * a for v, a in zip(visible, full_areas)):
                break
        else:
            continue  # no placement keeps every earlier shape recognisable: leave this one out
        labels.append(label)
        full_areas.append(int(mask.sum()))
        instance_map[mask] = len(labels)
        # A slight brightness gradient across the shape, so fills are not perfectly flat.
        shade = 1.0 + 0.15 * np.tanh((np.arange(width) - cx) / max(radius, 1.0))[None, :, None]
        image = np.where(mask[..., None], colour[None, None, :] * shade, image)
    image = image + rng.normal(0, NOISE_STD, size=image.shape)
    return np.clip(np.rint(image), 0, 255).astype(np.uint8), instance_map, labels


def encode_rle(mask: np.ndarray) -> Dict[str, Any]:
    """COCO compressed RLE of a boolean mask, with ``counts`` as a str (json-serialisable)."""
    try:
        from pycocotools import mask as mask_utils
    except ImportError as error:  # pragma: no cover - pycocotools is in the [det] extra
        raise MissingDependencyError('writing the shapes dataset needs pycocotools: pip install pycocotools '
                          '(or pip install -e .[det])') from error
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {'size': [int(s) for s in rle['size']], 'counts': rle['counts'].decode('ascii')}


def _bbox(mask: np.ndarray) -> List[float]:
    ys, xs = np.nonzero(mask)
    x0, y0 = int(xs.min()), int(ys.min())
    return [float(x0), float(y0), float(xs.max() - x0 + 1), float(ys.max() - y0 + 1)]


def _png_bytes(array: np.ndarray) -> bytes:
    """PNG bytes of a uint8 array: (H, W, 3) is saved as RGB, (H, W) as 8-bit grey."""
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format='PNG')
    return buffer.getvalue()


def metainfo() -> Dict[str, Any]:
    """Class names and palettes of both tasks, as written to ``metainfo.json``."""
    return {
        'classes': list(SHAPES_CLASSES),
        'palette': [list(c) for c in SHAPES_PALETTE],
        'seg_classes': list(SEG_CLASSES),
        'seg_palette': [list(c) for c in SEG_PALETTE],
        'label_map': '0 = background (a counted class), k + 1 = classes[k]; use reduce_zero_label=False',
    }


def make_shapes(out_dir: Union[str, Path], seed: int = 0, num_train: int = 400, num_val: int = 60,
                image_size: Union[int, Tuple[int, int]] = 128, max_objects: int = 6,
                radius_range: Tuple[float, float] = (9.0, 24.0)) -> Dict[str, Any]:
    """Writes the shapes dataset (train and val splits) under ``out_dir``.

    Each split is drawn from its own stream (``seed`` and split index), so changing ``num_train`` does not
    change the val split. Existing files are overwritten; each file is replaced atomically.

    Args:
        out_dir: Dataset root; gets ``images/``, ``labels/``, ``annotations/`` and ``metainfo.json``.
        seed: Random seed; the same seed and sizes give byte-identical files.
        num_train: Number of training images.
        num_val: Number of validation images.
        image_size: Side of square images, or (width, height).
        max_objects: Most shapes per image.
        radius_range: Range of the shape radius in pixels.

    Returns:
        A summary: ``root``, ``seed``, and per split the number of images and instances.
    """
    if num_train < 0 or num_val < 0:
        raise ConfigError(f'make_shapes: num_train and num_val must be >= 0, got {num_train}, {num_val}')
    size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    if min(size) < 32:
        raise ConfigError(f'make_shapes: image_size must be at least 32 pixels, got {image_size}')
    root = Path(out_dir)
    categories = [{'id': i + 1, 'name': name, 'supercategory': 'shape'} for i, name in enumerate(SHAPES_CLASSES)]
    summary: Dict[str, Any] = {'root': str(root), 'seed': seed, 'image_size': list(size)}
    for split_index, (split, count) in enumerate(zip(SPLITS, (num_train, num_val))):
        rng = np.random.Generator(np.random.PCG64([seed, split_index]))
        images, annotations = [], []
        for index in range(count):
            image, instance_map, labels = make_scene(rng, size, max_objects, radius_range)
            name = f'{index:06d}.png'
            atomic_write(_png_bytes(image), root / 'images' / split / name, fsync=False)
            label_map = np.concatenate([[0], np.asarray(labels, dtype=np.int64) + 1])[instance_map]
            atomic_write(_png_bytes(label_map.astype(np.uint8)), root / 'labels' / split / name, fsync=False)
            image_id = index + 1
            images.append({'id': image_id, 'file_name': name, 'width': size[0], 'height': size[1]})
            for instance_id, label in enumerate(labels, start=1):
                mask = instance_map == instance_id
                annotations.append({
                    'id': len(annotations) + 1, 'image_id': image_id, 'category_id': label + 1,
                    'segmentation': encode_rle(mask), 'area': float(mask.sum()), 'bbox': _bbox(mask),
                    'iscrowd': 0})
        coco = {'info': {'description': f'convnext_dense synthetic shapes, {split}, seed {seed}'},
                'images': images, 'annotations': annotations, 'categories': categories}
        atomic_write(json.dumps(coco, sort_keys=True), root / 'annotations' / f'instances_{split}.json')
        summary[split] = {'images': len(images), 'instances': len(annotations)}
    atomic_write(json.dumps(metainfo(), sort_keys=True, indent=1), root / 'metainfo.json')
    return summary
