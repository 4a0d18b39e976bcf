# UperNet ConvNeXt V2-B on ADE20K, 512x512 crops, 160k iterations: 122M params, 1171G FLOPs at 2048x512.
# No UperNet config for ConvNeXt V2 is published (the V2 repository has no segmentation code, mmseg none): this
# is our V1 UperNet-B recipe (upernet_convnext_b_512_160k.py: 16 images per iteration, AMP, AdamW lr 1e-4,
# stage-wise decay 0.9 over 12 layers, drop path 0.4, slide test) with the V2 backbone settings of the
# official V2 code (GRN, layer scale off) and its FCMAE pre-trained, ImageNet-1K fine-tuned weights
# (README of facebookresearch/ConvNeXt-V2). mIoU: not published for this recipe.
_base_ = ['./upernet_convnext_b_512_160k.py']
checkpoint_file = 'https://dl.fbaipublicfiles.com/convnext/convnextv2/im1k/convnextv2_base_1k_224_ema.pt'
model = dict(
    backbone=dict(
        layer_scale_init_value=0.0,  # V2: GRN instead of layer scale
        use_grn=True,
        init_cfg=dict(checkpoint=checkpoint_file)))
