"""convnext_dense's ``mmcv._ext`` in use: through the start-up hook in fresh processes (whatever is imported
first, stepping aside for a compiled ``_ext``), through mmcv's ops modules, and through mmdet detectors that
train and predict on it.

The processes run on a copy of the installed mmcv's Python code without its compiled ``_ext`` (what mmcv-lite
installs), and process the package's ``.pth`` file from a site folder of their own, as Python does with
site-packages at start-up; so the tests check the hook wherever they run, beside a compiled mmcv too.
"""
import importlib
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from convnext_dense.mmcv_ops import ext

REPO_ROOT = Path(__file__).resolve().parents[2]
HOOK_PTH = REPO_ROOT / 'convnext_dense_mmcv_ext.pth'

USER_SCRIPT = '''
import mmdet.models  # a user's script: mmdet first, convnext_dense never imported
import importlib, json, pkgutil, sys
import torch
import mmcv.ops
import mmcv._ext
modules = [info.name for info in pkgutil.iter_modules(mmcv.ops.__path__)]
for name in modules:
    importlib.import_module('mmcv.ops.' + name)
roi = mmcv.ops.RoIAlign(7, 1 / 4, 0)(torch.rand(1, 2, 16, 16), torch.tensor([[0.0, 4, 4, 40, 40]]))
report = dict(ext=mmcv._ext.__file__, modules=modules, roi=list(roi.shape))
try:
    mmcv.ops.DeformConv2d(2, 2, 3, padding=1)(torch.rand(1, 2, 8, 8), torch.zeros(1, 18, 8, 8))
except Exception as error:
    report['deform_conv'] = [type(error).__name__, str(error)]
print(json.dumps(report))
'''


def run_python(code: str, root: Path, mmcv_parent: Path, **env_vars: str) -> subprocess.CompletedProcess:
    """Runs ``python -c code`` with ``mmcv_parent/mmcv`` as mmcv and the hook's ``.pth`` processed at start-up
    from ``root/site`` (by a ``sitecustomize`` in ``root/boot``)."""
    if not (root / 'site').is_dir():
        (root / 'site').mkdir()
        shutil.copy(HOOK_PTH, root / 'site')
        (root / 'boot').mkdir()
        (root / 'boot' / 'sitecustomize.py').write_text(f'import site\nsite.addsitedir({str(root / "site")!r})\n')
    path = [str(root / 'boot'), str(mmcv_parent), str(REPO_ROOT)]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(path), OMP_NUM_THREADS='1', **env_vars)
    return subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=300, env=env,
                          cwd=root)


@pytest.fixture(scope='module')
def lite_mmcv(tmp_path_factory) -> Path:
    """A folder holding the installed mmcv's Python code without its compiled ``_ext`` (as mmcv-lite)."""
    import mmcv
    root = tmp_path_factory.mktemp('lite')
    shutil.copytree(Path(mmcv.__file__).parent, root / 'mmcv',
                    ignore=shutil.ignore_patterns('_ext*.so', '_ext*.pyd', 'csrc', '__pycache__'))
    return root


def test_a_script_importing_mmdet_first_gets_our_ops(lite_mmcv, tmp_path):
    result = run_python(USER_SCRIPT, tmp_path, lite_mmcv)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report['ext'] == ext.__file__
    assert {'roi_align', 'nms', 'deform_conv', 'sparse_ops', 'sync_bn'} <= set(report['modules'])
    assert report['roi'] == [1, 2, 7, 7]
    error, message = report['deform_conv']
    assert error == 'MmcvOpUnavailableError' and '\n' not in message
    assert message.startswith('mmcv op deform_conv_forward (deformable convolutions')


@pytest.mark.parametrize('compiled, switch', [(True, '1'), (False, '0')])
def test_the_hook_steps_aside_for_a_compiled_ext_and_when_turned_off(compiled, switch, tmp_path):
    """A bare ``mmcv`` package: with an ``_ext`` of its own, that one is imported; without one and with
    ``CONVNEXT_DENSE_MMCV_EXT=0``, none is."""
    (tmp_path / 'pkgs' / 'mmcv').mkdir(parents=True)
    (tmp_path / 'pkgs' / 'mmcv' / '__init__.py').write_text('')
    if compiled:
        (tmp_path / 'pkgs' / 'mmcv' / '_ext.py').write_text('COMPILED = True\n')
    result = run_python('import mmcv._ext; print(mmcv._ext.__file__)', tmp_path, tmp_path / 'pkgs',
                        CONVNEXT_DENSE_MMCV_EXT=switch)
    if compiled:
        assert result.returncode == 0, result.stderr[-3000:]
        assert result.stdout.strip() == str(tmp_path / 'pkgs' / 'mmcv' / '_ext.py')
    else:
        assert result.returncode == 1 and "No module named 'mmcv._ext'" in result.stderr


def test_editable_and_regular_wheels_carry_the_hook(tmp_path):
    """``pip install -e`` builds an editable wheel (PEP 660) and ``pip install`` a wheel: both hold the .pth
    at their top, beside the module it imports (or the finder that maps it)."""
    source = tmp_path / 'source'
    shutil.copytree(REPO_ROOT, source, ignore=shutil.ignore_patterns(
        '.venv', '.git', 'build', 'dist', '*.egg-info', '__pycache__', 'data', 'work_dirs', 'tests', 'docs'))
    code = ('import sys; from setuptools import build_meta as b; '
            'print(b.build_editable(sys.argv[1]) if sys.argv[2] == "editable" else b.build_wheel(sys.argv[1]))')
    for kind in ('editable', 'regular'):
        out = tmp_path / kind
        result = subprocess.run([sys.executable, '-c', code, str(out), kind], cwd=source, capture_output=True,
                                text=True, timeout=600)
        assert result.returncode == 0, result.stderr[-3000:]
        names = zipfile.ZipFile(out / result.stdout.strip().splitlines()[-1]).namelist()
        assert HOOK_PTH.name in names, (kind, [n for n in names if '/' not in n])
        if kind == 'regular':
            assert '_convnext_dense_mmcv_ext.py' in names
            assert zipfile.ZipFile(out / result.stdout.strip().splitlines()[-1]).read(HOOK_PTH.name) == \
                HOOK_PTH.read_bytes()


# ---------------------------------------------------------------------------------------------- detectors
class CountingOps(SimpleNamespace):
    """Our ops, counting their calls by name."""

    def __init__(self) -> None:
        self_calls = {}

        def counted(name, op):
            def call(*args, **kwargs):
                self_calls[name] = self_calls.get(name, 0) + 1
                return op(*args, **kwargs)
            return call
        super().__init__(**{name: counted(name, op) for name, op in ext.OPS.items()})
        self.calls = self_calls


@pytest.fixture
def counted_ops(monkeypatch):
    """``{op name: calls}`` of our ops, which mmcv's RoIAlign and NMS modules use while the test runs."""
    ops = CountingOps()
    for module in ('roi_align', 'nms'):
        monkeypatch.setattr(importlib.import_module(f'mmcv.ops.{module}'), 'ext_module', ops)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small convs on varying RoI counts: threads only contend on a shared machine
    yield ops.calls
    torch.set_num_threads(threads)


TINY = dict(backbone=dict(arch='atto', drop_path_rate=0.0, init_cfg=None), neck=dict(in_channels=[40, 80, 160, 320]))


WIDTHS = {256: 32, 1024: 64}  # FPN, RPN and RoI-head channels of the paper configs -> lean ones


def narrowed(node):
    """A model config with the paper's 256 / 1024-channel necks and heads narrowed (same structure)."""
    if isinstance(node, dict):
        return {key: (WIDTHS.get(value, value) if key.endswith('channels') and isinstance(value, int)
                      else narrowed(value)) for key, value in node.items()}
    if isinstance(node, (list, tuple)):
        return type(node)(narrowed(item) for item in node)
    return node


def build_tiny(config: str, **overrides):
    """A paper config's detector on ConvNeXt-atto with narrow heads, BN for SyncBN and few RoIs, on the CPU."""
    from mmdet.registry import MODELS
    from mmengine.config import Config, ConfigDict
    from mmdet.utils import register_all_modules

    from convnext_dense.config import syncbn_to_bn
    register_all_modules(init_default_scope=True)
    import convnext_dense  # noqa: F401  (registers the backbone)
    cfg = Config.fromfile(str(REPO_ROOT / 'configs' / 'det' / f'{config}.py'))
    cfg.merge_from_dict(dict(model=dict(TINY, **overrides)))
    model_cfg = narrowed(syncbn_to_bn(cfg.model.to_dict()))
    model_cfg['backbone']['type'] = 'convnext_dense.ConvNeXt'
    model_cfg['train_cfg']['rpn_proposal'].update(nms_pre=200, max_per_img=48)
    rcnn = model_cfg['train_cfg']['rcnn']
    for stage in rcnn if isinstance(rcnn, list) else [rcnn]:
        stage['sampler']['num'] = 16
    model_cfg['test_cfg']['rpn'].update(nms_pre=200, max_per_img=24)
    model_cfg['test_cfg']['rcnn'].update(score_thr=0.0, max_per_img=6)
    return MODELS.build(ConfigDict(model_cfg))


def train_two_iterations_and_predict(model):
    """Returns the two losses and the predictions for two 128 px images with three objects each."""
    from mmdet.testing import demo_mm_inputs
    torch.manual_seed(0)
    packed = demo_mm_inputs(batch_size=2, image_shapes=(3, 128, 128), num_items=[3, 3], num_classes=80,
                            with_mask=True)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    model.train()
    losses = []
    for _ in range(2):
        data = model.data_preprocessor(packed, True)
        loss, _ = model.parse_losses(model(**data, mode='loss'))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    model.eval()
    with torch.no_grad():
        return losses, model(**model.data_preprocessor(packed, False), mode='predict')


@pytest.mark.parametrize('config, soft_nms', [('mask_rcnn_convnext_t_3x', False), ('cascade_convnext_t_3x', False),
                                              ('mask_rcnn_convnextv2_b_fcmae_lsj_3x', True)])
def test_detector_trains_and_predicts_on_our_ops(config, soft_nms, counted_ops):
    overrides = dict(backbone=dict(TINY['backbone'], layer_scale_init_value=0.0)) if soft_nms else {}
    model = build_tiny(config, **overrides)
    losses, predictions = train_two_iterations_and_predict(model)
    assert all(torch.isfinite(torch.tensor(losses)))
    instances = predictions[0].pred_instances
    assert len(instances) > 0 and instances.masks.shape[-2:] == (128, 128)
    assert counted_ops.get('roi_align_forward', 0) > 0 and counted_ops.get('roi_align_backward', 0) > 0
    assert counted_ops.get('nms', 0) > 0
    assert (counted_ops.get('softnms', 0) > 0) == soft_nms
