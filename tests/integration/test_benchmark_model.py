"""Benchmark model mode end to end: each variant in a fresh process."""
import pytest

from convnext_dense.benchmark import model, parse_args


def test_model_mode_runs_a_detector_config_in_fresh_processes(repo_root, capsys):
    """Model mode end to end on the (small) demo detector: every variant builds, trains a step and predicts,
    each in its own process (a dict model config once broke mmdet's train_cfg.rpn access here)."""
    config = str(repo_root / 'configs/demo/mask_rcnn_convnext_shapes.py')
    report = model.run(parse_args([
        'model', config, '--size', '64', '64', '--batch', '1', '--iters', '1', '--warmup', '1', '--rounds', '1',
        '--threads', '1', '--device', 'cpu', '--variants', 'ours', 'ours_cp', '--json']))

    rows = {row['variant']: row for row in report['rows']}
    assert set(rows) == {'ours', 'ours_cp'} and not any('error' in row for row in rows.values()), rows
    for row in rows.values():
        assert row['train_s_per_iter'] > 0 and row['train_peak_mem_mib'] >= 0 and row['infer_fps'] > 0
        assert 0 < row['detections_per_image'] <= 100  # score threshold 0, max_per_img 100
        assert len(row['rounds']) == 1 and row['rounds'][0]['train_s_per_iter'] == row['train_s_per_iter']
    assert rows['ours_cp']['train_s_per_iter_vs_ours'] == pytest.approx(
        rows['ours_cp']['train_s_per_iter'] / rows['ours']['train_s_per_iter'])
