# UperNet ConvNeXt-S, ImageNet-1K (the paper's numbers: configs/seg/metafile.yml).
# The T recipe (schedule, crops, AMP, slide test) with this backbone; only the differences follow.
_base_ = ['./upernet_convnext_t_512_160k.py']
model = dict(
    backbone=dict(
        arch='small',
        drop_path_rate=0.3,
        init_cfg=dict(checkpoint='https://dl.fbaipublicfiles.com/convnext/convnext_small_1k_224.pth')),  # official non-EMA
    decode_head=dict(in_channels=(96, 192, 384, 768)),
    auxiliary_head=dict(in_channels=384))
