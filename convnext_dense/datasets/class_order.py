"""The label order of COCO-format datasets: which json category each name of ``metainfo.classes`` is.

mmdet 3.3's ``CocoDataset`` and ``CocoMetric`` number labels in the order in which the json lists its
categories (``COCO.get_cat_ids(cat_names=classes)`` filters the json's ``categories`` by name and keeps the
json's order), while every name they report, paint or store in a checkpoint's ``dataset_meta`` follows
``metainfo.classes``. When the two orders differ, a model trains without a warning and names every
prediction wrongly; a name the json lacks is dropped and shifts every later label. Our ``CocoDataset`` and
``CocoMetric`` (:mod:`convnext_dense.datasets.coco`) take the ids in the order of ``classes`` instead, so label
``i`` is ``classes[i]`` whatever the json's order. Pure functions over the json's ``categories`` list, so the
command line's data checks use them without importing mmdet.
"""
from collections import defaultdict
from typing import Dict, List, Sequence, Tuple

from convnext_dense.errors import ConfigError

#: Names shown in a message before it says how many more there are.
SHOWN_NAMES = 8


def shorten(names: Sequence[str], limit: int = SHOWN_NAMES) -> str:
    """``names`` joined with commas, the ones after ``limit`` counted instead of listed."""
    shown = ', '.join(str(name) for name in names[:limit])
    return shown + (f', ... ({len(names) - limit} more)' if len(names) > limit else '')


def category_ids(categories: Sequence[dict], classes: Sequence[str], source: str) -> List[int]:
    """The json category id of each name of ``classes``, in the order of ``classes``.

    Args:
        categories: The json's ``categories`` entries (``id``, ``name``).
        classes: ``metainfo.classes`` of the dataset, in the order the labels are to follow.
        source: The annotation file, for the message.

    Raises:
        ConfigError: A name listed twice in ``classes``, a name the json has no category of, or a name the json
            gives to several categories: the labels would not be the classes the user listed.
    """
    ids_by_name: Dict[str, List[int]] = defaultdict(list)
    for category in categories:
        ids_by_name[category['name']].append(category['id'])
    repeated = sorted({name for name in classes if list(classes).count(name) > 1})
    if repeated:
        raise ConfigError(f'metainfo.classes lists {shorten(repeated)} more than once (annotation file {source}); '
                          f'list each class once')
    missing = [name for name in classes if name not in ids_by_name]
    if missing:
        raise ConfigError(f'annotation file {source} has no category named {shorten(missing)} (metainfo.classes); '
                          f'its categories are {shorten(list(ids_by_name))}: use those names in classes')
    ambiguous = [name for name in classes if len(ids_by_name[name]) > 1]
    if ambiguous:
        raise ConfigError(f'annotation file {source} names several categories {ambiguous[0]!r} (ids '
                          f'{ids_by_name[ambiguous[0]]}); give each category its own name')
    return [ids_by_name[name][0] for name in classes]


def json_order(categories: Sequence[dict], classes: Sequence[str]) -> Tuple[str, ...]:
    """The names of ``classes`` in the order the json lists their categories: mmdet's ``CocoDataset`` labels."""
    wanted = set(classes)
    return tuple(category['name'] for category in categories if category['name'] in wanted)


def labels_follow_classes(dataset_cfg: dict) -> bool:
    """Whether a dataset config (wrappers looked through) numbers labels in the order of ``classes``: our
    ``convnext_dense.CocoDataset``, not mmdet's ``CocoDataset``."""
    while isinstance(dataset_cfg.get('dataset'), dict):
        dataset_cfg = dataset_cfg['dataset']
    return dataset_cfg.get('type') == 'convnext_dense.CocoDataset'
