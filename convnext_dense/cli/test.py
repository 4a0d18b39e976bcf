"""Test (and evaluate) a detector or a segmentor checkpoint; the config's default_scope decides.

Same flags as mmdet 3.3's / mmseg 1.2's ``tools/test.py`` (``python tools/test.py`` runs the same). Detection
prints COCO bbox and segm mAP (pycocotools through mmdet's CocoMetric), segmentation mIoU:

    convnext-dense test configs/det/mask_rcnn_convnext_t_3x.py work_dirs/x/epoch_36.pth
    convnext-dense test mask_rcnn_convnext_t_3x      # a zoo name: released weights, published numbers beside
    convnext-dense test CONFIG CKPT --out results.pkl --show-dir vis   # pictures under work_dir/<time>/vis
                                                                        # + results.pkl.meta.json for `report`
    convnext-dense test CONFIG CKPT --tta
    convnext-dense test CONFIG model.onnx         # an exported file, run by ONNX Runtime, the same evaluator
"""
import argparse
import logging

from mmengine.config import Config, ConfigDict
from mmengine.logging import print_log

from convnext_dense.checkpoint import check_local_checkpoint
from convnext_dense.cli.args import (add_config_arguments, add_dataset_arguments, add_launcher_arguments,
                                    parse_launcher_args, read_config)
from convnext_dense.cli.data_checks import check_annotations, check_data, check_num_classes
from convnext_dense.cli.runner import build_runner, check_checkpoint_fits, paint_with_classes, setup_cpu_distributed
from convnext_dense.cli.weights import add_weights_mirror_argument, print_published, resolve_model
from convnext_dense.config import task_of
from convnext_dense.errors import CliError
from convnext_dense.io import atomic_output
from convnext_dense.report.results import write_results_info


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Test (and evaluate) a detector or a segmentor')
    add_config_arguments(parser, example='test_dataloader.batch_size=2')
    add_dataset_arguments(parser)
    parser.add_argument('checkpoint', nargs='?', help='checkpoint file or URL (a model name: its released file)')
    add_weights_mirror_argument(parser)
    parser.add_argument('--out', type=str,
                        help='detection: dump predictions to this .pkl file for offline evaluation; '
                             'segmentation: save prediction maps to this directory')
    parser.add_argument('--show', action='store_true', help='show prediction results')
    parser.add_argument('--show-dir', help='save painted predictions under work_dir/<timestamp>/SHOW_DIR')
    parser.add_argument('--wait-time', type=float, default=2, help='the interval of --show (s)')
    add_launcher_arguments(parser)
    parser.add_argument('--tta', action='store_true', help='test-time augmentation (cfg.tta_model, tta_pipeline)')
    return parse_launcher_args(parser, argv)


def load_config(args: argparse.Namespace) -> Config:
    """Reads the config and applies the command-line settings shared by both tasks."""
    cfg = read_config(args)
    cfg.load_from = args.checkpoint
    if args.out is not None and task_of(cfg) == 'det' and not args.out.endswith(('.pkl', '.pickle')):
        raise CliError(f'--out {args.out}: detection results are dumped to a pickle; name a .pkl file')
    return cfg


def enable_visualization(cfg: Config, args: argparse.Namespace, task: str) -> None:
    """Turns the visualization hook on as mmdet's / mmseg's ``trigger_visualization_hook`` do."""
    hook = cfg.default_hooks.get('visualization')
    if hook is None:
        raise CliError(f'--show/--show-dir: {args.config} has no default_hooks.visualization; add '
                       f"visualization=dict(type='{'Det' if task == 'det' else 'Seg'}VisualizationHook')")
    hook['draw'] = True
    if task == 'seg':
        hook['interval'] = 1  # SegVisualizationHook draws every 50th image by default; paint them all
    if args.show:
        hook['show'] = True
        hook['wait_time'] = args.wait_time
    if args.show_dir:
        if task == 'det':
            hook['test_out_dir'] = args.show_dir
        else:
            cfg.visualizer['save_dir'] = args.show_dir


def _strip_masks(model_cfg: ConfigDict) -> bool:
    roi_head = model_cfg.get('roi_head') or {}
    if roi_head.get('mask_head') is None:
        return False
    roi_head['mask_head'] = None
    roi_head['mask_roi_extractor'] = None
    return True


def enable_tta(cfg: Config, task: str) -> None:
    """Wraps the model in ``cfg.tta_model`` and feeds it ``cfg.tta_pipeline``.

    mmdet 3.3's DetTTAModel merges boxes only and refuses masks, so for an instance-segmentation detector
    the mask branch is left out and only bbox mAP is evaluated (with a warning).
    """
    if 'tta_model' not in cfg or 'tta_pipeline' not in cfg:
        raise CliError('--tta: the config defines no tta_model / tta_pipeline; add them (see '
                       'configs/_base_/datasets/coco_instance.py)')
    if task == 'det' and _strip_masks(cfg.model):
        print_log('--tta: DetTTAModel merges boxes only; masks are not predicted and only bbox mAP is '
                  'evaluated.', logger='current', level=logging.WARNING)
        for evaluator in (cfg.test_evaluator if isinstance(cfg.test_evaluator, list) else [cfg.test_evaluator]):
            if str(evaluator.get('type')).split('.')[-1] == 'CocoMetric':  # mmdet's or ours
                evaluator['metric'] = ['bbox']
    cfg.model = ConfigDict(**cfg.tta_model, module=cfg.model)
    cfg.test_dataloader.dataset.pipeline = cfg.tta_pipeline


def add_result_dump(runner, out: str) -> None:
    """Dumps detection predictions to ``out`` (a .pkl written to a temporary file, then renamed)."""
    from mmdet.evaluation import DumpDetResults  # mmdet: an optional dependency (det extra)

    class AtomicDumpDetResults(DumpDetResults):
        """Dumps through :func:`convnext_dense.io.atomic_output`, so ``--out`` is never half written."""

        def compute_metrics(self, results: list) -> dict:
            final_path = self.out_file_path
            try:
                with atomic_output(final_path, suffix='.tmp.pkl') as self.out_file_path:  # dump reads the suffix
                    return super().compute_metrics(results)
            finally:
                self.out_file_path = final_path

    runner.test_evaluator.metrics.append(AtomicDumpDetResults(out_file_path=out))


def test_onnx(args: argparse.Namespace) -> dict:
    """Evaluates an exported ``.onnx`` file on the config's test split (``deploy.evaluate``) and prints it."""
    from convnext_dense.deploy.evaluate import evaluate_onnx
    unused = [option for option, given in (('--out', args.out is not None), ('--show', args.show),
                                           ('--show-dir', args.show_dir), ('--tta', args.tta),
                                           ('--launcher', args.launcher != 'none')) if given]
    if unused:
        raise CliError(f'{", ".join(unused)}: not available when testing an .onnx file ({args.checkpoint}); test '
                       f'the PyTorch checkpoint for them')
    check_local_checkpoint(args.checkpoint, 'CHECKPOINT')
    cfg = read_config(args)
    check_data(cfg, ('test',))
    check_annotations(cfg, ('test',))
    metrics = evaluate_onnx(cfg, args.checkpoint)
    print('\n'.join(f'{name}: {value}' for name, value in metrics.items()))
    return metrics


def main(argv=None) -> int:
    args = parse_args(argv)
    if str(args.checkpoint or '').endswith('.onnx'):
        test_onnx(args)
        return 0
    resolved = resolve_model(args.config, args.checkpoint, args.weights_mirror)
    args.config, args.checkpoint = resolved.config, resolved.checkpoint
    check_local_checkpoint(args.checkpoint, 'CHECKPOINT')
    cfg = load_config(args)
    task = task_of(cfg)
    if args.show or args.show_dir:
        enable_visualization(cfg, args, task)
    if args.tta:
        enable_tta(cfg, task)
    if args.out is not None and task == 'seg':
        cfg.test_evaluator['output_dir'] = args.out
        cfg.test_evaluator['keep_results'] = True
    check_data(cfg, ('test',))
    check_num_classes(cfg, ('test',))
    setup_cpu_distributed(cfg, args.launcher)
    check_annotations(cfg, ('test',))
    runner = build_runner(cfg)
    dataset_meta = check_checkpoint_fits(runner.model, args.checkpoint, 'CHECKPOINT')
    if args.show or args.show_dir:
        paint_with_classes(runner, dataset_meta)
    if args.out is not None and task == 'det':
        add_result_dump(runner, args.out)
    metrics = runner.test()
    if args.out is not None:  # beside the results: the config, checkpoint and metrics `report` needs
        write_results_info(cfg, args.out, args.checkpoint, metrics)
    print_published(metrics, resolved)
    return 0
