# Cascade Mask R-CNN, ConvNeXt-B (ImageNet-22K).
# The T recipe (FPN, 4conv1fc GIoU heads, 3x schedule, AMP) with this backbone; only the differences follow.
# The paper's numbers for this config: configs/det/metafile.yml.
_base_ = ['./cascade_convnext_t_3x.py']
checkpoint_file = 'https://dl.fbaipublicfiles.com/convnext/convnext_base_22k_224.pth'

model = dict(
    backbone=dict(arch='base', drop_path_rate=0.6, init_cfg=dict(checkpoint=checkpoint_file)),
    neck=dict(in_channels=[128, 256, 512, 1024]))
optim_wrapper = dict(paramwise_cfg=dict(decay_rate=0.8), optimizer=dict(lr=1e-4))
