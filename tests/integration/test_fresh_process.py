"""What only a fresh Python process shows: the import stays light and changes nothing outside the package,
the entry points and our configs install the mmengine patches, ``python -m`` and the env report run, and the
convert command refuses a crafted checkpoint before anything from the tests is imported."""
import os
import subprocess
import sys

import torch
from conftest import REPO_ROOT, RunsCodeWhenUnpickled


def _run(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=300, **kwargs)


def test_import_does_not_pull_mmdet_or_mmseg():
    # The model zoo and weights downloads too: they serve commands before mmdet / mmseg are needed.
    code = ('import sys, convnext_dense, convnext_dense.zoo, convnext_dense.checkpoint.download, '
            'convnext_dense.checkpoint.legacy; '
            'heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("mmdet", "mmseg", "mmcv")); '
            'print(heavy); sys.exit(1 if heavy else 0)')
    result = _run('-c', code)
    assert result.returncode == 0, f'importing convnext_dense imported {result.stdout} {result.stderr}'


# mmengine's own state that importing the backbone must leave as it is: every root registry's modules, the
# file backends by name and by prefix, and the checkpoint loaders by scheme. mmengine's modules are imported
# first, so what they register themselves is in the "before" snapshot.
SNAPSHOT = '''
import mmengine.config, mmengine.dist, mmengine.fileio, mmengine.hooks, mmengine.logging, mmengine.model
import mmengine.optim, mmengine.registry, mmengine.runner
from mmengine.fileio.backends import registry_utils
from mmengine.registry import Registry
from mmengine.runner.checkpoint import CheckpointLoader

def snapshot():
    roots = {name: dict(value._module_dict) for name, value in vars(mmengine.registry).items()
             if isinstance(value, Registry)}
    return dict(roots=roots, backends=dict(registry_utils.backends),
                prefixes=dict(registry_utils.prefix_to_backends), schemes=dict(CheckpointLoader._schemes))

def same(a, b):
    if a.keys() != b.keys():
        return False
    return all(same(a[k], b[k]) if isinstance(a[k], dict) else a[k] is b[k] for k in a)
'''


def test_importing_the_backbone_leaves_mmengine_untouched():
    code = SNAPSHOT + (
        'before = snapshot()\n'
        'import convnext_dense, convnext_dense.models\n'
        'after = snapshot()\n'
        'import sys\n'
        'assert same(before, after), [k for k in before if not same({k: before[k]}, {k: after[k]})]\n'
        'assert "convnext_dense.runtime" not in sys.modules\n'
        # our registries hang under mmengine's roots: a scoped type resolves from the root, as mmdet's would
        'model = mmengine.registry.MODELS.build(dict(type="convnext_dense.ConvNeXt", arch="atto"))\n'
        'assert type(model).__name__ == "ConvNeXt"\n')
    result = _run('-c', code)
    assert result.returncode == 0, result.stdout + result.stderr


def test_entry_points_and_our_configs_install_the_patches(repo_root):
    config = repo_root / 'configs' / 'demo' / 'mask_rcnn_convnext_shapes.py'  # what a plain Runner script loads
    patched = SNAPSHOT + (
        'from convnext_dense.runtime import AtomicLocalBackend, load_from_local\n'
        'assert CheckpointLoader._schemes[""] is load_from_local\n'
        'assert registry_utils.backends["local"] is AtomicLocalBackend\n')
    entry_points = {
        'apis': 'import convnext_dense.apis\n',
        'config': (f'cfg = mmengine.config.Config.fromfile({str(config)!r})\n'
                   'assert "convnext_dense.runtime" in cfg.custom_imports["imports"]\n'),
        'command line': ('from convnext_dense.cli.main import main\n'
                         'assert main(["config-path"]) == 0\n'),
    }
    for name, code in entry_points.items():
        result = _run('-c', SNAPSHOT + code + patched[len(SNAPSHOT):])
        assert result.returncode == 0, (name, result.stdout + result.stderr)


def test_python_dash_m_runs_the_same_entry_point():
    result = _run('-m', 'convnext_dense', 'config-path', '--list')
    assert result.returncode == 0, result.stderr
    assert 'det/cascade_convnext_t_3x' in result.stdout.split()


def test_env_report_names_the_stack_and_the_mmcv_ops_in_use():
    result = _run('-m', 'convnext_dense', 'env', '--check')
    assert result.returncode == 0, result.stdout + result.stderr
    rows = {}
    for line in result.stdout.splitlines():
        name = 'mmcv ops' if line.startswith('mmcv ops') else line.split()[0]
        rows[name] = line[len(name):].strip()
    for name in ('python', 'torch', 'torchvision', 'mmcv', 'mmengine', 'mmdet', 'mmseg', 'timm'):
        assert name in rows, name
    from convnext_dense.mmcv_ops import OURS, ext_provider
    kind, file = ext_provider()
    expected = 'convnext_dense RoIAlign, NMS, soft-NMS on torchvision' if kind == OURS else f'compiled, {file}'
    assert rows['mmcv ops'].startswith(expected)
    assert 'nms kept [0], RoIAlign of ones 1' in rows['mmcv ops']


def test_convert_checkpoint_cli_refuses_a_crafted_file(tmp_path):
    """The real command line refuses a pickle that would run code, without running it (see test_security.py)."""
    marker = tmp_path / 'marker_cli'
    path = tmp_path / 'evil.pth'
    torch.save({'model': {'stem.0.weight': RunsCodeWhenUnpickled(str(marker))}}, path)
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    result = _run(str(REPO_ROOT / 'tools' / 'convert_checkpoint.py'), str(path), str(tmp_path / 'out.pth'), env=env)
    assert result.returncode == 2
    assert 'Traceback' not in result.stderr
    assert result.stderr.strip().startswith(f'error: could not load checkpoint {path}')
    assert not marker.exists()
