# Cascade Mask R-CNN, ConvNeXt-XL (ImageNet-22K).
# The T recipe (FPN, 4conv1fc GIoU heads, 3x schedule, AMP) with this backbone; only the differences follow.
# The paper's numbers for this config: configs/det/metafile.yml.
_base_ = ['./cascade_convnext_t_3x.py']
checkpoint_file = 'https://dl.fbaipublicfiles.com/convnext/convnext_xlarge_22k_224.pth'

model = dict(
    backbone=dict(arch='xlarge', drop_path_rate=0.8, init_cfg=dict(checkpoint=checkpoint_file)),
    neck=dict(in_channels=[256, 512, 1024, 2048]))
optim_wrapper = dict(optimizer=dict(lr=1e-4))
