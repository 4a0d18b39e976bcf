"""A wheel built from the repository, installed into a folder outside it, runs ``convnext-dense`` (``--help``,
``flops`` and ``infer`` of shipped configs by name) from a working directory that is not the clone."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[2]
# What a source distribution holds; build outputs and data of a working clone stay behind.
NOT_SHIPPED = shutil.ignore_patterns('.venv', '.git', 'build', 'dist', '*.egg-info', '__pycache__', 'data',
                                     'work_dirs', 'demo_output', '.pytest_cache', 'tests')


@pytest.fixture(scope='module')
def installed(tmp_path_factory):
    """``(target folder, environment)`` of the wheel installed with ``pip install --target``."""
    root = tmp_path_factory.mktemp('wheel')
    source = root / 'source'
    shutil.copytree(REPO_ROOT, source, ignore=NOT_SHIPPED)
    build = subprocess.run([sys.executable, '-m', 'pip', 'wheel', '--no-deps', '--no-build-isolation', '-q',
                            str(source), '-w', str(root / 'dist')], capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stderr[-3000:]
    wheel, = (root / 'dist').glob('convnext_dense-*.whl')
    target = root / 'site'
    install = subprocess.run([sys.executable, '-m', 'pip', 'install', '--no-deps', '-q', '--target', str(target),
                              str(wheel)], capture_output=True, text=True, timeout=600)
    assert install.returncode == 0, install.stderr[-3000:]
    # The C++ CPU kernels would build again here (1-2 min): their cache is per package folder. The wheel's
    # sources are checked by test_the_cpu_kernels_sources_are_shipped; building them is tested in tests/unit.
    env = dict(os.environ, PYTHONPATH=str(target), OMP_NUM_THREADS='1', CONVNEXT_DENSE_CPU_KERNELS='0')
    return target, env


def run(args, env, cwd):
    result = subprocess.run(args, capture_output=True, text=True, timeout=600, env=env, cwd=cwd)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    return result.stdout


def test_console_script_help(installed, tmp_path):
    target, env = installed
    script = target / 'bin' / 'convnext-dense'
    assert script.is_file()
    out = run([sys.executable, str(script), '--help'], env, tmp_path)
    assert 'usage: convnext-dense SUBCOMMAND' in out and '  infer ' in out


def test_configs_come_from_the_installed_package(installed, tmp_path):
    target, env = installed
    out = run([sys.executable, '-m', 'convnext_dense', 'config-path', 'det/cascade_convnext_t_3x'], env, tmp_path)
    assert out.strip() == str(target / 'convnext_dense' / 'configs' / 'det' / 'cascade_convnext_t_3x.py')


def test_the_cpu_kernels_sources_are_shipped(installed):
    from convnext_dense.ops import extension
    target, _ = installed
    shipped = target / 'convnext_dense' / 'ops' / 'csrc'
    for name in extension.SOURCES + extension.HEADERS:
        assert (shipped / name).read_bytes() == (extension.CSRC / name).read_bytes(), name


def test_flops_of_a_config_by_name(installed, tmp_path):
    _, env = installed
    out = run([sys.executable, '-m', 'convnext_dense', 'flops', 'det/mask_rcnn_convnext_t_3x', '--shape', '256', '384'],
              env, tmp_path)
    assert 'det/mask_rcnn_convnext_t_3x.py' in out and 'backbone' in out
    params = float(out.split('model')[1].split()[0].rstrip('M'))
    assert 47 < params < 49  # the paper's 48M


def test_infer_with_a_shipped_config_name(installed, tmp_path):
    target, env = installed
    from convnext_dense.apis import init_model
    torch.manual_seed(0)
    model = init_model('demo/upernet_convnext_shapes')
    torch.save({'state_dict': model.state_dict(), 'meta': {'dataset_meta': model.dataset_meta}}, tmp_path / 'seg.pth')
    import cv2
    import numpy as np
    cv2.imwrite(str(tmp_path / 'image.png'), np.random.default_rng(0).integers(0, 255, (64, 96, 3), dtype=np.uint8))
    out = run([sys.executable, str(target / 'bin' / 'convnext-dense'), 'infer', 'demo/upernet_convnext_shapes',
               'seg.pth', 'image.png', '--out-dir', 'out'], env, tmp_path)
    assert out.strip().splitlines()[-1].startswith('infer: 1 images in ')
    assert cv2.imread(str(tmp_path / 'out' / 'preds' / 'image.png'), cv2.IMREAD_UNCHANGED).shape == (64, 96)
    assert (tmp_path / 'out' / 'vis' / 'image.png').is_file()
