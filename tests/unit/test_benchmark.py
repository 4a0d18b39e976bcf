"""The benchmark package: its modes, JSON schema, ratios and mode registration.

No timing is asserted: the benchmark is the instrument; these tests check that it runs and what it reports.
"""
import json
import statistics

import pytest
import torch

from convnext_dense import benchmark
from convnext_dense.benchmark import backbone, backbones, common, model
from convnext_dense.models.convnext import ConvNeXt

TINY_ARCH = 'depths:1,1,1,1;channels:8,16,32,64'


def test_backbone_mode_runs_and_reports_json(capsys):
    assert benchmark.main(['backbone', '--arch', TINY_ARCH, '--impls', 'ours', 'timm', '--sizes', '64',
                           '--batch', '2', '--iters', '1', '--warmup', '0', '--rounds', '1',
                           '--memory-formats', 'contiguous', 'channels_last', '--device', 'cpu', '--json']) == 0
    report = json.loads(capsys.readouterr().out)

    assert report['mode'] == 'backbone' and report['arch'] == TINY_ARCH
    assert {'torch', 'timm', 'device'} <= set(report['env'])
    # same weights: timm's outputs equal ours
    assert report['max_abs_diff_vs_ours']['timm'] < 1e-5
    assert [(r['mode'], r['memory_format']) for r in report['rows']] == [
        ('infer', 'contiguous'), ('infer', 'channels_last'), ('train', 'contiguous'), ('train', 'channels_last')]
    for row in report['rows']:
        assert row['size'] == '64x64' and row['batch'] == 2 and row['dtype'] == 'fp32' and row['compile'] == 'off'
        for impl in ('ours', 'timm'):
            result = row['results'][impl]
            assert result['img_per_s'] > 0 and result['s_per_iter'] > 0 and len(result['rounds']) == 1
        assert row['ours_vs_timm'] == pytest.approx(
            row['results']['ours']['img_per_s'] / row['results']['timm']['img_per_s'])


def test_save_json_writes_the_report_beside_the_table(tmp_path, capsys):
    out_file = tmp_path / 'reports' / 'backbone.json'
    assert benchmark.main(['backbone', '--arch', TINY_ARCH, '--impls', 'ours', '--sizes', '64', '--batch', '1',
                           '--iters', '1', '--warmup', '0', '--rounds', '1', '--modes', 'infer',
                           '--memory-formats', 'contiguous', '--device', 'cpu', '--no-memory',
                           '--save-json', str(out_file)]) == 0
    table = capsys.readouterr().out
    report = json.loads(out_file.read_text())

    assert 'ours' in table and not table.lstrip().startswith('{')  # the table is still printed
    assert report['mode'] == 'backbone' and len(report['rows']) == 1
    assert 'peak_mem_mib' not in report['rows'][0]['results']['ours']  # --no-memory
    assert [p.name for p in out_file.parent.iterdir()] == ['backbone.json']  # no temporary file left


def test_backbone_mode_reports_unsupported_combinations_as_na(monkeypatch, capsys):
    def broken(*args, **kwargs):
        raise RuntimeError('autocast dtype not supported here')
    monkeypatch.setattr(backbone, 'measure_backbone_case', broken)
    benchmark.main(['backbone', '--arch', TINY_ARCH, '--impls', 'ours', '--sizes', '64', '--batch', '1',
                    '--iters', '1', '--rounds', '1', '--modes', 'infer', '--memory-formats', 'contiguous',
                    '--device', 'cpu'])
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert 'ours n/a (RuntimeError: autocast dtype not supported here)' in line


def test_build_backbones_copies_the_same_weights():
    models, _ = backbones.build_backbones(TINY_ARCH, ('ours', 'timm'))
    assert isinstance(models['ours'], ConvNeXt)
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        for ours, theirs in zip(models['ours'].eval()(x), models['timm'].eval()(x)):
            assert ours.shape == theirs.shape
            torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-5)


def test_ratios_pair_the_figures_of_each_round():
    # the machine slows 2x between rounds; both implementations slow with it, ours stays 1.5x faster
    ours, timm = [3.0, 1.5, 3.0], [2.0, 1.0, 2.0]
    assert common.paired_ratio(ours, timm) == pytest.approx(1.5)
    # the ratio of the separate medians would mix the drift in when it does not hit both sides alike
    assert common.paired_ratio([3.0, 1.5, 1.5], [2.0, 1.0, 2.0]) == pytest.approx(1.5)
    assert statistics.median([3.0, 1.5, 1.5]) / statistics.median([2.0, 1.0, 2.0]) == pytest.approx(0.75)
    with pytest.raises(ValueError, match='one figure per round'):
        common.paired_ratio([1.0, 2.0], [1.0])


def test_model_ratios_need_an_ours_row_and_nonzero_rounds():
    def row(variant, *rounds):
        return dict(variant=variant, rounds=list(rounds), **{k: statistics.median(r[k] for r in rounds)
                                                             for k in rounds[0]})
    ours = row('ours', dict(train_s_per_iter=2.0, train_peak_mem_mib=100.0), dict(train_s_per_iter=4.0,
                                                                                   train_peak_mem_mib=0.0))
    cp = row('ours_cp', dict(train_s_per_iter=3.0, train_peak_mem_mib=50.0), dict(train_s_per_iter=4.0,
                                                                                   train_peak_mem_mib=50.0))
    rows = [ours, cp, dict(variant='mmpretrain', error='not importable')]
    model._add_model_ratios(rows)
    assert cp['train_s_per_iter_vs_ours'] == pytest.approx(1.25)  # median of 1.5 and 1.0, paired per round
    assert 'train_peak_mem_mib_vs_ours' not in cp  # one of ours' rounds grew memory by 0 MiB
    cp_alone = row('ours_cp', dict(train_s_per_iter=3.0))
    model._add_model_ratios([cp_alone])  # --variants without ours: figures, no ratios
    assert not any(key.endswith('_vs_ours') for key in cp_alone)


def test_rounds_rotate_which_implementation_runs_first():
    names = ['ours', 'timm', 'mmpretrain']
    assert [common.rotated(names, r)[0] for r in range(4)] == ['ours', 'timm', 'mmpretrain', 'ours']
    assert sorted(common.rotated(names, 2)) == sorted(names)
    assert common.rotated([], 3) == []


@pytest.mark.parametrize('text, expected', [('224', (224, 224)), ('1344x800', (800, 1344))])
def test_parse_size_is_width_by_height(text, expected):
    assert common.parse_size(text) == expected


def test_model_variant_cfg_swaps_backbone_and_keeps_100_detections():
    model_cfg = dict(
        type='CascadeRCNN',
        backbone=dict(type='ConvNeXt', arch='tiny', drop_path_rate=0.4, layer_scale_init_value=1.0,
                      init_cfg=dict(type='Pretrained', checkpoint='x.pth')),
        roi_head=dict(bbox_head=[dict(norm_cfg=dict(type='SyncBN'))]),
        test_cfg=dict(rcnn=dict(score_thr=0.05, nms=dict(type='nms'), max_per_img=50, mask_thr_binary=0.5)))

    ours_cp = model.model_variant_cfg(model_cfg, 'ours_cp')
    reference = model.model_variant_cfg(model_cfg, 'mmpretrain')

    assert ours_cp['backbone']['with_cp'] is True and ours_cp['backbone']['init_cfg'] is None
    assert ours_cp['test_cfg']['rcnn']['score_thr'] == 0.0 and ours_cp['test_cfg']['rcnn']['max_per_img'] == 100
    assert reference['backbone'] == dict(type='mmpretrain.ConvNeXt', arch='tiny', out_indices=(0, 1, 2, 3),
                                         drop_path_rate=0.4, layer_scale_init_value=1.0,
                                         gap_before_final_norm=False, with_cp=False)
    assert reference['roi_head']['bbox_head'][0]['norm_cfg']['type'] == 'BN'  # one process: no SyncBN
    assert model_cfg['backbone']['init_cfg'] is not None  # the input config is left unchanged


def test_modes_are_modules_and_an_optional_onnx_mode_registers_when_present(monkeypatch):
    parser, runners = benchmark.build_parser()
    assert {'backbone', 'model', 'layernorm'} <= set(runners)
    assert runners['backbone'] is backbone.run and runners['model'] is model.run

    class FakeOnnxMode:
        @staticmethod
        def add_parser(subparsers):
            subparsers.add_parser('onnx').add_argument('--json', action='store_true')

        @staticmethod
        def run(args):
            return dict(mode='onnx')
    real_import = benchmark.importlib.import_module
    monkeypatch.setattr(benchmark.importlib, 'import_module', lambda name: FakeOnnxMode if name.endswith(
        '.onnx') else real_import(name))
    parser, runners = benchmark.build_parser()
    assert runners['onnx'] is FakeOnnxMode.run and parser.parse_args(['onnx']).command == 'onnx'

    def missing(name):
        if name.endswith('.onnx'):
            raise ModuleNotFoundError(name)
        return real_import(name)
    monkeypatch.setattr(benchmark.importlib, 'import_module', missing)
    assert 'onnx' not in benchmark.build_parser()[1]


def test_int8_mode_registers_and_its_verdict_applies_the_shipping_rule():
    int8 = pytest.importorskip('convnext_dense.benchmark.int8')
    parser, runners = benchmark.build_parser()
    args = parser.parse_args(['int8', '--cases', '--seg', 'seg.py', 'seg.pth'])
    assert runners['int8'] is int8.run and args.cases == [] and args.seg == ['seg.py', 'seg.pth']

    def row(case, speedup, lost):
        return dict(case=case, int8_speedup=speedup, points_lost=dict(mIoU=lost), metrics={})
    speed_only = dict(case='backbone_224', int8_speedup=2.0)
    assert int8.verdict([speed_only])['passes'] is None
    assert int8.verdict([row('seg', 1.35, 0.5), row('det', 1.3, 1.0), speed_only])['passes'] is True
    assert int8.verdict([row('seg', 1.35, 0.5), row('det', 1.29, 0.0)])['cases'] == dict(seg=True, det=False)
    assert int8.verdict([row('seg', 2.0, 1.01)])['passes'] is False
