"""``--launcher pytorch`` on machines without CUDA: PyTorch DDP over gloo on the CPU.

mmengine 0.10.7 assumes a GPU per process: ``init_dist('pytorch')`` calls ``torch.cuda.set_device`` and
``Runner.wrap_model`` passes ``device_ids=[LOCAL_RANK]``, which DDP rejects for a CPU module. On a machine
without CUDA this module initialises the process group itself with gloo (mmengine skips its own init when
one exists) and asks for a DDP wrapper without ``device_ids`` (a config value wins over mmengine's default).
With CUDA nothing changes: the config's ``env_cfg.dist_cfg`` (nccl) and mmengine's launch are used as usual.
"""
import datetime

import torch
import torch.distributed as torch_dist

from convnext_dense.cli.checks import CliError


def setup_cpu_distributed(cfg, launcher: str) -> bool:
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

    from mmengine.registry import MODEL_WRAPPERS
    from torch.nn.parallel import DistributedDataParallel
    wrapper = cfg.get('model_wrapper_cfg') or dict(
        type='MMDistributedDataParallel', broadcast_buffers=False,
        find_unused_parameters=cfg.get('find_unused_parameters', False))
    wrapper_type = MODEL_WRAPPERS.get(wrapper.get('type', 'MMDistributedDataParallel'))
    if isinstance(wrapper_type, type) and issubclass(wrapper_type, DistributedDataParallel):
        wrapper['device_ids'] = None  # a CPU module: DDP must not be told about devices
    cfg.model_wrapper_cfg = wrapper
    return True
