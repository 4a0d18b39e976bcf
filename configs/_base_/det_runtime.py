# Runtime of the detection configs: mmdet scope, our package imported for the backbone and the optimizer
# constructor, mmdet's usual hooks, logging and visualizer.
default_scope = 'mmdet'
# convnext_dense registers the backbone, the optimizer constructor and the hooks; convnext_dense.runtime adds
# our mmengine patches for runs (weights_only loading of training checkpoints, atomic checkpoint saves).
custom_imports = dict(imports=['convnext_dense', 'convnext_dense.runtime'], allow_failed_imports=False)

default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=50),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CheckpointHook', interval=1),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    visualization=dict(type='DetVisualizationHook'))

env_cfg = dict(
    # mmdet's default: multi-scale crops give many input shapes, each re-autotuned with benchmark on. The
    # fp32 7x7 depthwise conv is ~2x faster with it (docs/design.md, traps); these recipes train in fp16 (AMP).
    cudnn_benchmark=False,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    dist_cfg=dict(backend='nccl'))

# Stops at the first NaN/inf loss naming the iteration and images, before a broken checkpoint is saved.
custom_hooks = [dict(type='convnext_dense.FiniteLossHook')]
vis_backends = [dict(type='LocalVisBackend')]
visualizer = dict(type='DetLocalVisualizer', vis_backends=vis_backends, name='visualizer')
log_processor = dict(type='LogProcessor', window_size=50, by_epoch=True)

log_level = 'INFO'
load_from = None
resume = False
