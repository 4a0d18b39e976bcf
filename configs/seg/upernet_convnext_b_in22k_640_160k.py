# UperNet ConvNeXt-B, ImageNet-22K (the paper's numbers: configs/seg/metafile.yml).
# 160k iterations, 16 images per iteration (8 GPUs x 2), 640x640 crops, AMP, slide test.
_base_ = [
    '../_base_/models/upernet_convnext.py',
    '../_base_/datasets/ade20k_640x640.py',
    '../_base_/schedules/schedule_160k.py',
    '../_base_/seg_runtime.py',
]
crop_size = (640, 640)
checkpoint_file = 'https://dl.fbaipublicfiles.com/convnext/convnext_base_22k_224.pth'  # official non-EMA weights
model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(
        arch='base',
        drop_path_rate=0.4,
        layer_scale_init_value=1.0,
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint_file)),
    decode_head=dict(in_channels=(128, 256, 512, 1024)),
    auxiliary_head=dict(in_channels=512),
    test_cfg=dict(mode='slide', crop_size=crop_size, stride=(426, 426)))
optim_wrapper = dict(
    type='AmpOptimWrapper',
    loss_scale='dynamic',
    optimizer=dict(lr=1e-4),
    paramwise_cfg=dict(decay_rate=0.9, decay_type='stage_wise'))
