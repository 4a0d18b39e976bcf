"""What only a fresh Python process shows: the import stays light, ``python -m`` and the env report run, and
the convert command refuses a crafted checkpoint before anything from the tests is imported."""
import os
import subprocess
import sys

import torch
from conftest import REPO_ROOT, RunsCodeWhenUnpickled


def _run(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=300, **kwargs)


def test_import_does_not_pull_mmdet_or_mmseg():
    code = ('import sys, convnext_dense; '
            'heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("mmdet", "mmseg", "mmcv")); '
            'print(heavy); sys.exit(1 if heavy else 0)')
    result = _run('-c', code)
    assert result.returncode == 0, f'importing convnext_dense imported {result.stdout} {result.stderr}'


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
    assert result.returncode == 1
    assert 'Traceback' not in result.stderr
    assert result.stderr.strip().startswith(f'error: cannot convert {path}: could not load checkpoint {path}')
    assert not marker.exists()
