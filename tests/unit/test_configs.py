"""Every config merges to the same dict as the recorded snapshot, key by key, and the paper configs agree
with the metafiles. Regenerate the snapshot only for an intended change of a merged config:
``python tests/unit/test_configs.py`` (from the repository root)."""
import json
import sys
from pathlib import Path
from typing import Any, Dict

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
SNAPSHOT = REPO_ROOT / 'tests' / 'fixtures' / 'merged_configs.json'
# every config users run, keyed by file stem (unique across folders, so a moved config keeps its entry)
CONFIGS = sorted(p for folder in ('det', 'seg', 'demo') for p in (REPO_ROOT / 'configs' / folder).glob('*.py'))


def _plain(value: Any) -> Any:
    """JSON-able form that keeps tuples and lists apart (mmengine and the models treat them alike, a diff not)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return {'__tuple__': [_plain(v) for v in value]}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return {'__repr__': repr(value)}


def merged(path: Path) -> Dict[str, Any]:
    from mmengine.config import Config
    return _plain(Config.fromfile(str(path)).to_dict())


def flatten(tree: Any, prefix: str = '') -> Dict[str, Any]:
    """``{'a.b.0': leaf}``: one entry per leaf, so a difference names its key."""
    if isinstance(tree, dict) and tree and '__tuple__' not in tree:
        return {k: v for key, sub in tree.items() for k, v in flatten(sub, f'{prefix}{key}.').items()}
    if isinstance(tree, dict) and '__tuple__' in tree:
        items = tree['__tuple__']
        return {f'{prefix}()': len(items), **{k: v for i, sub in enumerate(items)
                                             for k, v in flatten(sub, f'{prefix}{i}.').items()}}
    if isinstance(tree, list):
        return {f'{prefix}[]': len(tree), **{k: v for i, sub in enumerate(tree)
                                            for k, v in flatten(sub, f'{prefix}{i}.').items()}}
    return {prefix.rstrip('.'): tree}


@pytest.fixture(scope='module')
def snapshot() -> Dict[str, Any]:
    return json.loads(SNAPSHOT.read_text())


def test_every_config_has_a_snapshot(snapshot):
    assert {p.stem for p in CONFIGS} == set(snapshot)


@pytest.mark.parametrize('path', CONFIGS, ids=lambda p: p.stem)
def test_merged_config_equals_the_snapshot_key_by_key(path, snapshot):
    got, want = flatten(merged(path)), flatten(snapshot[path.stem])
    differing = sorted(k for k in got.keys() | want.keys() if got.get(k, '<missing>') != want.get(k, '<missing>'))
    assert not differing, '; '.join(f'{k}: {want.get(k, "<missing>")!r} -> {got.get(k, "<missing>")!r}'
                                    for k in differing[:10])


def test_paper_configs_name_the_metafiles_weights():
    from mmengine.config import Config

    from convnext_dense import zoo
    for task in zoo.TASKS:
        for stem, record in zoo.models(task).items():
            cfg = Config.fromfile(str(REPO_ROOT / record['config']))
            assert Path(record['config']).stem == stem
            assert cfg.model.backbone.init_cfg.checkpoint == record['pretrained'], stem


if __name__ == '__main__':
    root = Path(sys.argv[1]) if len(sys.argv) > 1 else REPO_ROOT
    configs = sorted(p for folder in ('det', 'seg', 'demo') for p in (root / 'configs' / folder).glob('*.py'))
    SNAPSHOT.write_text(json.dumps({p.stem: merged(p) for p in configs}, indent=1, sort_keys=True) + '\n')
