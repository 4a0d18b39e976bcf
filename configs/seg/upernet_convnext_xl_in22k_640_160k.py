# UperNet ConvNeXt-XL, ImageNet-22K (the paper's numbers: configs/seg/metafile.yml).
# The B 22K recipe (schedule, crops, AMP, slide test) with this backbone; only the differences follow.
_base_ = ['./upernet_convnext_b_in22k_640_160k.py']
model = dict(
    backbone=dict(
        arch='xlarge',
        drop_path_rate=0.4,
        init_cfg=dict(checkpoint='https://dl.fbaipublicfiles.com/convnext/convnext_xlarge_22k_224.pth')),  # official non-EMA
    decode_head=dict(in_channels=(256, 512, 1024, 2048)),
    auxiliary_head=dict(in_channels=1024))
optim_wrapper = dict(optimizer=dict(lr=8e-5))
