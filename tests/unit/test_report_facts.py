"""A run's facts: differences from the inherited config, params / FLOPs, pre-training weights."""
from pathlib import Path

from mmengine.config import Config

from convnext_dense.config import config_path, load_config
from convnext_dense.report import facts
from convnext_dense.report.workdir import WorkDir


def test_flatten_opens_dicts_and_keeps_lists_whole():
    flat = facts.flatten({'model': {'backbone': {'arch': 'atto', 'out_indices': (0, 1)}, 'neck': {}}, 'lr': 0.1})
    assert flat == {'model.backbone.arch': 'atto', 'model.backbone.out_indices': (0, 1), 'model.neck': {}, 'lr': 0.1}


def test_differences_from_the_merged_base():
    source = Path(config_path('det/cascade_convnext_s_3x'))
    run = load_config(source)
    run.merge_from_dict({'train_cfg.max_epochs': 1, 'work_dir': 'somewhere'})
    rows = {key: (old, new) for key, old, new in facts.config_differences(run, facts.merged_base(source))}
    assert rows['train_cfg.max_epochs'] == ('36', '1')  # a command-line option
    assert rows['model.backbone.arch'] == ('tiny', 'small')  # what the S config itself changes
    assert 'work_dir' not in rows  # set on every run
    assert all(not key.startswith('model.neck') for key in rows)


def test_source_config_is_found_by_the_dumped_name(tmp_path):
    (tmp_path / 'upernet_convnext_shapes.py').write_text('x = 1\n')
    work_dir = WorkDir(path=tmp_path, label='a', runs=())
    assert facts.find_source_config(work_dir, None) == Path(config_path('demo/upernet_convnext_shapes'))
    recorded = tmp_path / 'configs' / 'upernet_convnext_shapes.py'
    recorded.parent.mkdir()
    recorded.write_text('x = 1\n')
    assert facts.find_source_config(work_dir, str(recorded)) == recorded  # what test --out recorded wins
    (tmp_path / 'upernet_convnext_shapes.py').rename(tmp_path / 'my_own.py')
    assert facts.find_source_config(work_dir, None) is None


def test_paper_configs_take_params_and_flops_from_the_metafile():
    params, flops = facts.complexity(load_config('det/mask_rcnn_convnext_t_3x'), 'mask_rcnn_convnext_t_3x')
    assert (params, flops) == ("48.0M (the paper's, from the metafile)",
                               "262.0G at the paper's input size (from the metafile)")


def test_small_models_are_counted_at_their_test_size_and_large_ones_are_not():
    cfg = load_config('demo/upernet_convnext_shapes')
    params, flops = facts.complexity(cfg, 'upernet_convnext_shapes')
    assert params.endswith('M') and float(params[:-1]) > 1.0
    assert flops.endswith('G at 128x128 (HxW)')
    big = load_config('seg/upernet_convnext_b_512_160k')
    params, flops = facts.complexity(big, 'my_upernet_b')  # not a paper config name: counted or refused
    assert float(params[:-1]) > 100
    assert flops.startswith('not computed: it would take minutes')


def test_pretrained_weights():
    cfg = Config(dict(model=dict(backbone=dict(init_cfg=dict(type='Pretrained', checkpoint='a.pth')))))
    assert facts.pretrained_weights(cfg) == 'a.pth (backbone init_cfg)'
    assert facts.pretrained_weights(Config(dict(model=dict(backbone=dict()), load_from='b.pth'))) == 'b.pth (load_from)'
    assert facts.pretrained_weights(Config(dict(model=dict()))) == 'none (trained from scratch)'


def test_run_facts_separate_the_configs_changes_from_the_command_lines(tmp_path, monkeypatch):
    monkeypatch.setattr(facts, 'complexity', lambda cfg, name: ('3.67M', '0.24G'))  # counted in the test above
    (tmp_path / 'upernet_convnext_shapes.py').write_text('# dumped by mmengine\n')
    cfg = load_config('demo/upernet_convnext_shapes')
    cfg.merge_from_dict({'train_cfg.max_iters': 2})
    work_dir = WorkDir(path=tmp_path, label='seg', runs=(), train={'loss': [(1, 2.0), (2, 1.0)],
                                                                  'time': [(1, 0.5), (2, 0.7)]}, cfg=cfg,
                       train_wall_s=125.0)
    run = facts.run_facts(work_dir)
    assert run.config_name == 'upernet_convnext_shapes' and run.base_config == 'seg_runtime.py'
    assert run.overrides == [('train_cfg.max_iters', '1700', '2')]
    assert ('model.backbone.arch', '-', 'atto') in run.differences  # the config's own, against its _base_
    assert (run.iterations, run.wall_time, run.time_per_iter) == ('2 of 2', '2 min 05 s',
                                                                  '0.600 s (mean of the logged windows)')
    assert (run.params, run.flops, run.pretrained) == ('3.67M', '0.24G', 'none (trained from scratch)')
