# UperNet ConvNeXt-B pre-trained by DINOv3 (Meta, 2025: distilled from its 7B model on LVD-1689M).
# Recipe: the ConvNeXt paper's UperNet ConvNeXt-B (./upernet_convnext_b_512_160k.py: 160k iterations, 512x512 crops,
# lr 1e-4, drop path 0.4, stage-wise decay 0.9 over 12 layers, AMP, slide test); only the weights differ. No result
# is published for this config. Params / FLOPs (convnext-dense flops, whole image 2048x512): 122.1M / 1170.9G.
# Weights: timm's copy of Meta's release, 'hf-hub:' through huggingface_hub (pip install 'convnext_dense[hub]').
# Licence: DINOv3 License (https://ai.meta.com/resources/models-and-libraries/dinov3-license/), not Apache-2.0: a
# model trained from these weights is a derivative work under it (docs/migration.md, "Pretrained weights"). If
# the Hub asks, accept the licence on https://huggingface.co/timm/convnext_base.dinov3_lvd1689m while logged in, then
# log in here (hf auth login, or HF_TOKEN).
_base_ = ['./upernet_convnext_b_512_160k.py']
checkpoint_file = 'hf-hub:timm/convnext_base.dinov3_lvd1689m'
model = dict(backbone=dict(init_cfg=dict(checkpoint=checkpoint_file)))
