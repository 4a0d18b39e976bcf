# Cascade Mask R-CNN, ConvNeXt-B pre-trained by DINOv3 (Meta, 2025: distilled from its 7B model on LVD-1689M).
# Recipe: the ConvNeXt paper's Cascade Mask R-CNN ConvNeXt-B for ImageNet-22K weights, DINOv3's being large-scale
# pre-training too (./cascade_convnext_b_in22k_3x.py: lr 1e-4, drop path 0.6, layer-wise decay 0.8 over 12 layers,
# 3x schedule, AMP); only the weights differ. No result is published for this config. Params / FLOPs
# (convnext-dense flops, 1280x800, the paper's convention): 145.8M / 964.6G.
# Weights: timm's copy of Meta's release, 'hf-hub:' through huggingface_hub (pip install 'convnext_dense[hub]').
# Licence: DINOv3 License (https://ai.meta.com/resources/models-and-libraries/dinov3-license/), not Apache-2.0: a
# model trained from these weights is a derivative work under it (docs/migration.md, "Pretrained weights"). If
# the Hub asks, accept the licence on https://huggingface.co/timm/convnext_base.dinov3_lvd1689m while logged in, then
# log in here (hf auth login, or HF_TOKEN).
_base_ = ['./cascade_convnext_b_in22k_3x.py']
checkpoint_file = 'hf-hub:timm/convnext_base.dinov3_lvd1689m'

model = dict(backbone=dict(init_cfg=dict(checkpoint=checkpoint_file)))
