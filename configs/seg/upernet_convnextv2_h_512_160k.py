# UperNet ConvNeXt V2-H on ADE20K, 512x512 crops, 160k iterations: the V2-B recipe of
# upernet_convnextv2_b_512_160k.py (our V1 UperNet recipe with V2 backbone settings; no published V2 UperNet
# config exists) with the H backbone and its FCMAE pre-trained, ImageNet-1K fine-tuned weights (README of
# facebookresearch/ConvNeXt-V2). mIoU: not published for this recipe.
_base_ = ['./upernet_convnextv2_b_512_160k.py']
model = dict(
    backbone=dict(
        arch='huge',
        init_cfg=dict(checkpoint='https://dl.fbaipublicfiles.com/convnext/convnextv2/im1k/'
                                 'convnextv2_huge_1k_224_ema.pt')),
    decode_head=dict(in_channels=(352, 704, 1408, 2816)),
    auxiliary_head=dict(in_channels=1408))
