"""``benchmark gemm``: each stage's two linears timed by every available GEMM, on the same operands."""
import json

import pytest
import torch

from convnext_dense import benchmark
from convnext_dense.benchmark import gemm


def test_every_gemm_computes_the_same_linear():
    calls, _ = gemm.linear_calls(rows=12, in_features=8, out_features=32, threads=1)
    assert 'aten' in calls
    reference = calls['aten']()
    assert reference.shape == (12, 32)
    for name, call in calls.items():
        assert torch.allclose(torch.as_tensor(call()[0] if name == 'ort' else call()), reference, atol=1e-5), name


def test_mode_reports_both_linears_of_every_stage(capsys):
    assert benchmark.main(['gemm', '--arch', 'depths:1,1,1,1;channels:8,16,32,64', '--size', '64', '--batch', '1',
                           '--rounds', '1', '--iters', '1', '--json']) == 0
    report = json.loads(capsys.readouterr().out)
    assert report['mode'] == 'gemm'
    assert [(row['stage'], row['linear']) for row in report['rows']] == [
        (stage, name) for stage in range(4) for name in ('pwconv1', 'pwconv2')]
    first, last = report['rows'][0], report['rows'][-1]
    assert (first['rows'], first['in_features'], first['out_features']) == (16 * 16, 8, 32)
    assert (last['rows'], last['in_features'], last['out_features']) == (2 * 2, 256, 64)
    for row in report['rows']:
        assert row['gflops']['aten'] > 0
        assert set(row['vs_aten']) == set(row['gflops']) - {'aten'}
        for impl, ratio in row['vs_aten'].items():
            assert ratio == pytest.approx(row['gflops'][impl] / row['gflops']['aten'])
