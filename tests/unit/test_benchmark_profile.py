"""``benchmark profile``: each operator's time charged to its stage and block part, ours beside timm's."""
import json

import pytest
import torch

from convnext_dense import benchmark
from convnext_dense.benchmark import profile
from convnext_dense.benchmark.backbones import build_backbones
from convnext_dense.ops import CpuKernels, set_cpu_kernels

TINY_ARCH = 'depths:1,2,1,1;channels:8,16,32,64'


@pytest.mark.parametrize('op_name, group', [
    ('aten::mkldnn_convolution', 'dwconv'), ('aten::native_layer_norm', 'norm'), ('aten::addmm', 'linear'),
    ('aten::mm', 'linear'), ('mkldnn::_linear_pointwise', 'linear'), ('aten::gelu', 'gelu'),
    ('aten::mul', 'scale+residual'), ('aten::add', 'scale+residual'), ('aten::copy_', 'layout'),
    ('aten::sum', 'other')])
def test_operators_fall_into_the_block_part_they_compute(op_name, group):
    assert profile.group_of(op_name) == group


def test_each_stage_is_charged_its_blocks_operators():
    models, _ = build_backbones(TINY_ARCH, ['ours', 'timm'])
    x = torch.randn(1, 3, 64, 64)
    for name, model in models.items():
        model.eval()
        set_cpu_kernels(model, CpuKernels())  # PyTorch's own ops: every block part is an operator
        table = profile.profile_model(name, model, x, warmup=0, iters=1)
        assert sorted(stage for stage in table if stage >= 0) == [0, 1, 2, 3], name
        for stage in range(4):
            for group in ('dwconv', 'norm', 'linear', 'gelu'):
                assert table[stage][group] > 0, (name, stage, group)
        assert table[-1]['total'] > 0  # the stem, the downsampling layers, the output norms
        assert not any(hasattr(block, '_profile_scope') for stage in profile.blocks_by_stage(name, model)
                       for block in stage)
        assert all(not block._forward_pre_hooks for stage in profile.blocks_by_stage(name, model)
                   for block in stage)  # the scopes' hooks are removed


def test_mode_reports_rows_per_stage_and_a_step_total(capsys):
    assert benchmark.main(['profile', '--arch', TINY_ARCH, '--size', '64', '--batch', '1', '--iters', '1',
                           '--warmup', '0', '--json']) == 0
    report = json.loads(capsys.readouterr().out)
    assert report['mode'] == 'profile' and report['cpu_capability']
    step = report['rows'][-1]
    assert step['group'] == 'step'
    for impl in ('ours', 'timm'):
        parts = sum(row['ms'][impl] for row in report['rows'][:-1])
        assert parts == pytest.approx(step['ms'][impl], rel=1e-6) and step['ms'][impl] > 0
    assert {row['stage'] for row in report['rows'][:-1]} == {0, 1, 2, 3, -1}
