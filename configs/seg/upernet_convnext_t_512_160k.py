# UperNet ConvNeXt-T, ImageNet-1K (the paper's numbers: configs/seg/metafile.yml).
# 160k iterations, 16 images per iteration (8 GPUs x 2), 512x512 crops, AMP, slide test.
_base_ = [
    '../_base_/models/upernet_convnext.py',
    '../_base_/datasets/ade20k.py',
    '../_base_/schedules/schedule_160k.py',
    '../_base_/seg_runtime.py',
]
crop_size = (512, 512)
checkpoint_file = 'https://dl.fbaipublicfiles.com/convnext/convnext_tiny_1k_224.pth'  # official non-EMA weights
model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(
        arch='tiny',
        drop_path_rate=0.4,
        layer_scale_init_value=1.0,
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint_file)),
    decode_head=dict(in_channels=(96, 192, 384, 768)),
    auxiliary_head=dict(in_channels=384),
    test_cfg=dict(mode='slide', crop_size=crop_size, stride=(341, 341)))
optim_wrapper = dict(
    type='AmpOptimWrapper',
    loss_scale='dynamic',
    optimizer=dict(lr=1e-4),
    paramwise_cfg=dict(decay_rate=0.9, decay_type='stage_wise'))
