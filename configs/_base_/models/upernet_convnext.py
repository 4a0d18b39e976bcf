# UperNet (pool scales 1/2/3/6, 512 channels) with an FCN auxiliary head on stage 2, on our ConvNeXt-T.
# The seg configs set arch, drop path, pretrained weights and the heads' in_channels for S/B/L/XL.
# SyncBN as in the paper; CPU and single-process runs override norm_cfg with dict(type='BN').
norm_cfg = dict(type='SyncBN', requires_grad=True)
data_preprocessor = dict(
    type='SegDataPreProcessor',
    mean=(123.675, 116.28, 103.53),
    std=(58.395, 57.12, 57.375),
    bgr_to_rgb=True,
    pad_val=0,
    seg_pad_val=255,
    size=(512, 512))
model = dict(
    type='EncoderDecoder',
    data_preprocessor=data_preprocessor,
    backbone=dict(
        type='convnext_dense.ConvNeXt',
        arch='tiny',
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.4,
        layer_scale_init_value=1.0),
    decode_head=dict(
        type='UPerHead',
        in_channels=(96, 192, 384, 768),
        in_index=(0, 1, 2, 3),
        pool_scales=(1, 2, 3, 6),
        channels=512,
        dropout_ratio=0.1,
        num_classes=150,
        norm_cfg=norm_cfg,
        align_corners=False,
        loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0)),
    auxiliary_head=dict(
        type='FCNHead',
        in_channels=384,  # channels of stage 2 (in_index 2)
        in_index=2,
        channels=256,
        num_convs=1,
        concat_input=False,
        dropout_ratio=0.1,
        num_classes=150,
        norm_cfg=norm_cfg,
        align_corners=False,
        loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=0.4)),
    train_cfg=dict(),
    test_cfg=dict(mode='whole'))
