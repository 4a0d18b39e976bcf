# Runtime of the ADE20K configs: mmseg scope, our package imported for its backbone and optimizer constructor.
default_scope = 'mmseg'
# convnext_dense registers the backbone, the optimizer constructor and the hooks; convnext_dense.runtime adds
# our mmengine patches for runs (weights_only loading of training checkpoints, atomic checkpoint saves).
custom_imports = dict(imports=['convnext_dense', 'convnext_dense.runtime'], allow_failed_imports=False)
env_cfg = dict(
    cudnn_benchmark=True,  # fixed-size crops in training; the 7x7 depthwise conv is ~2x slower without it
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    dist_cfg=dict(backend='nccl'))
# Stops at the first NaN/inf loss naming the iteration and images, before a broken checkpoint is saved.
custom_hooks = [dict(type='convnext_dense.FiniteLossHook')]
vis_backends = [dict(type='LocalVisBackend')]
visualizer = dict(type='SegLocalVisualizer', vis_backends=vis_backends, name='visualizer')
log_processor = dict(by_epoch=False)
log_level = 'INFO'
load_from = None
resume = False
# tools/test.py --tta wraps the model in this and swaps the test pipeline for the dataset's tta_pipeline.
tta_model = dict(type='SegTTAModel')
