"""Building mmengine's Runner for ``train`` and ``test``, and the checks that need the built model.

- :func:`build_runner`: registers mmdet's or mmseg's modules (the config's task decides) and builds the
  Runner, as their ``tools/train.py`` and ``tools/test.py`` do.
- :func:`setup_cpu_distributed`: ``--launcher pytorch`` on machines without CUDA, i.e. PyTorch DDP over gloo.
  mmengine 0.10.7 assumes a GPU per process: ``init_dist('pytorch')`` calls ``torch.cuda.set_device`` and
  ``Runner.wrap_model`` passes ``device_ids=[LOCAL_RANK]``, which DDP rejects for a CPU module. Without CUDA
  the process group is initialised here with gloo (mmengine skips its own init when one exists) and the DDP
  wrapper is asked for without ``device_ids`` (a config value wins over mmengine's default). With CUDA
  nothing changes: the config's ``env_cfg.dist_cfg`` (nccl) and mmengine's launch are used as usual.
- :func:`nothing_to_resume`: ``--resume`` without a checkpoint to resume says so in one line.
- :func:`check_checkpoint_fits`: mmengine loads checkpoints non-strictly and only warns, which is right for
  fine-tuning (``load_from``) but wrong for ``--resume`` and ``test``: they must continue or evaluate the same
  model. The file is read once: mmengine then gets what the check read (see ``checkpoint/read.py``).
"""
import datetime
import glob
import os.path as osp
from typing import Any, Dict, Optional

import torch
import torch.distributed as torch_dist
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.registry import MODEL_WRAPPERS
from mmengine.runner import Runner, find_latest_checkpoint
from torch.nn.parallel import DistributedDataParallel

from convnext_dense.checkpoint import check_fit, is_remote, keep_for_next_read, read_checkpoint
from convnext_dense.checkpoint.legacy import dataset_meta_of
from convnext_dense.config import task_of
from convnext_dense.errors import CliError


def build_runner(cfg: Config) -> Runner:
    """Registers the task's modules and builds mmengine's Runner (or the config's ``runner_type``)."""
    if task_of(cfg) == 'det':
        from mmdet.registry import RUNNERS
        from mmdet.utils import register_all_modules, setup_cache_size_limit_of_dynamo
        setup_cache_size_limit_of_dynamo()
    else:
        from mmseg.registry import RUNNERS
        from mmseg.utils import register_all_modules
    register_all_modules(init_default_scope=False)
    if 'runner_type' in cfg:
        return RUNNERS.build(cfg)
    return Runner.from_cfg(cfg)


def setup_cpu_distributed(cfg: Config, launcher: str) -> bool:
    """Prepares a CPU DDP run under torchrun; returns whether it did.

    Args:
        cfg: The run's config; ``model_wrapper_cfg`` and ``env_cfg.dist_cfg.backend`` are updated.
        launcher: The ``--launcher`` value.

    Raises:
        CliError: A Slurm or MPI launch without CUDA (mmengine's launch needs GPUs there).
    """
    if launcher == 'none' or torch.cuda.is_available():
        return False
    if launcher != 'pytorch':
        raise CliError(f'--launcher {launcher} needs CUDA GPUs and none is visible; on CPU launch with torchrun '
                       f'(bash tools/dist_train.sh CONFIG NPROC), which uses the gloo backend')
    env_cfg = dict(cfg.get('env_cfg') or {})
    dist_cfg = dict(env_cfg.get('dist_cfg') or {}, backend='gloo')  # recorded in the dumped config
    env_cfg['dist_cfg'] = dist_cfg
    cfg.env_cfg = env_cfg
    if not torch_dist.is_initialized():
        timeout = dist_cfg.get('timeout')
        kwargs = {'timeout': datetime.timedelta(seconds=timeout)} if timeout else {}
        torch_dist.init_process_group(backend='gloo', **kwargs)  # RANK, WORLD_SIZE, MASTER_* from torchrun

    wrapper = cfg.get('model_wrapper_cfg') or dict(
        type='MMDistributedDataParallel', broadcast_buffers=False,
        find_unused_parameters=cfg.get('find_unused_parameters', False))
    wrapper_type = MODEL_WRAPPERS.get(wrapper.get('type', 'MMDistributedDataParallel'))
    if isinstance(wrapper_type, type) and issubclass(wrapper_type, DistributedDataParallel):
        wrapper['device_ids'] = None  # a CPU module: DDP must not be told about devices
    cfg.model_wrapper_cfg = wrapper
    return True


def nothing_to_resume(cfg: Config) -> Optional[str]:
    """For ``--resume`` without a path: when the work directory holds no checkpoint, turns resuming off and
    returns the line that says so (None when there is a checkpoint, a path, or no ``--resume``).

    ``--resume`` means "resume if possible", as in mmdet's and mmseg's tools: a job script that passes it on
    every (re)start must start afresh the first time. mmengine then logs only "Auto resumed from the latest
    checkpoint None.", so a ``--resume`` that looked in another folder than the earlier run (its
    ``--work-dir`` left out) would silently start over; the line names the folder and any folder beside it
    that holds checkpoints of the same config.
    """
    if not cfg.get('resume') or cfg.get('load_from') or osp.isfile(osp.join(cfg.work_dir, 'last_checkpoint')):
        return None
    cfg.resume = False
    message = (f'--resume: no checkpoint in {cfg.work_dir} (no last_checkpoint file there); training starts from '
               f'scratch')
    config_file = osp.basename(cfg.filename or '')
    others = sorted(osp.dirname(found) for found in glob.glob(osp.join(osp.dirname(osp.abspath(cfg.work_dir)), '*',
                                                                      'last_checkpoint'))
                    if config_file and osp.isfile(osp.join(osp.dirname(found), config_file)))
    if others:
        message += f'. Checkpoints of {config_file} are in {", ".join(others)}: pass --work-dir to continue that run'
    return message


def resume_checkpoint(cfg: Config) -> Optional[str]:
    """The checkpoint a ``resume=True`` run continues from: ``load_from``, or ``work_dir/last_checkpoint``."""
    if cfg.get('load_from'):
        return cfg.load_from
    return find_latest_checkpoint(cfg.work_dir)


def check_checkpoint_fits(model: torch.nn.Module, checkpoint: Optional[str], purpose: str) -> Dict[str, Any]:
    """Refuses a local ``checkpoint`` that does not hold every tensor of ``model`` with its shape.

    The checkpoint, with its backbone renamed to the model's names, is kept for mmengine's next read of the
    file (one read, one rename). Remote checkpoints are left to mmengine.

    Args:
        model: The built model (a DDP or TTA wrapper is looked through).
        checkpoint: Path; None or a URL is not checked.
        purpose: How the checkpoint was given, for the message (``'--resume'``, ``'CHECKPOINT'``).

    Returns:
        The classes and palette the file was trained with (``legacy.dataset_meta_of``), ``{}`` when it names
        none or was not read.

    Raises:
        CheckpointMismatchError: It does not fit (see :func:`convnext_dense.checkpoint.check_fit`).
    """
    if not checkpoint or is_remote(checkpoint):
        return {}
    loaded = read_checkpoint(checkpoint, purpose=purpose)
    _, state_dict = check_fit(loaded, model, source=checkpoint, purpose=purpose)
    keep_for_next_read(checkpoint, {**loaded, 'state_dict': state_dict})
    return dataset_meta_of(loaded)


def paint_with_classes(runner: Runner, dataset_meta: Dict[str, Any]) -> None:
    """Makes ``--show`` / ``--show-dir`` paint with the checkpoint's classes and palette, when it names them.

    mmengine's test loop hands the visualizer the dataset's meta; a hook that runs after it (``before_test``)
    puts the checkpoint's in its place, so a released file paints with the names it was trained with.
    """
    if not dataset_meta.get('classes'):
        return

    class CheckpointClassesHook(Hook):
        def before_test(self, runner) -> None:
            runner.visualizer.dataset_meta = {**(runner.visualizer.dataset_meta or {}), **dataset_meta}

    runner.register_hook(CheckpointClassesHook(), priority='LOWEST')
