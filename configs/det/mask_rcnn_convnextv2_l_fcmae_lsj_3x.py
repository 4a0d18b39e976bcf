# Mask R-CNN, ConvNeXt V2-L (FCMAE pre-trained), FPN, large-scale jitter 1024, 3x schedule, AMP.
# The V2-B recipe of mask_rcnn_convnextv2_b_fcmae_lsj_3x.py (mmdet's projects/ConvNeXt-V2, the only published
# V2 detection config) with the L backbone and its official FCMAE weights; drop path and every other setting
# are B's (no L recipe is published). Box / mask AP: not published for this recipe. 217M params, 876G FLOPs
# at 1280x800 (tools/analysis/get_flops.py).
_base_ = ['./mask_rcnn_convnextv2_b_fcmae_lsj_3x.py']
checkpoint_file = 'https://dl.fbaipublicfiles.com/convnext/convnextv2/pt_only/convnextv2_large_1k_224_fcmae.pt'
model = dict(
    backbone=dict(arch='large', init_cfg=dict(checkpoint=checkpoint_file)),
    neck=dict(in_channels=[192, 384, 768, 1536]))
