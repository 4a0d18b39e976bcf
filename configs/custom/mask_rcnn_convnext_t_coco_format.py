# Mask R-CNN ConvNeXt-T on your own COCO-format instance-segmentation dataset (docs/custom_dataset.md).
# Everything else (model, 3x AdamW recipe with layer-wise lr decay, AMP, augmentation) comes from the paper
# config. Copy this file and change the dataset section; the layout it expects under data_root:
#   annotations/instances_train.json, annotations/instances_val.json   (COCO json: images, annotations with
#   images/train/*.jpg, images/val/*.jpg                                 bbox and polygon or RLE masks, categories)
_base_ = ['../det/mask_rcnn_convnext_t_3x.py']

# --- your dataset ---
data_root = 'data/my_coco_dataset/'
# Category names of the json, matched by name: label i is classes[i] in any order (the base config's
# convnext_dense.CocoDataset); palette: one RGB colour per class for pictures.
classes = ('circle', 'square', 'triangle', 'star', 'ring')
palette = [(220, 20, 60), (0, 130, 200), (60, 180, 75), (255, 200, 0), (145, 30, 180)]
# ---

metainfo = dict(classes=classes, palette=palette)
num_classes = len(classes)

# Pre-training: the base config starts the backbone from the official ImageNet-1K ConvNeXt-T weights
# (init_cfg). To fine-tune a whole COCO-trained detector instead, set load_from to its checkpoint.
model = dict(
    roi_head=dict(bbox_head=dict(num_classes=num_classes), mask_head=dict(num_classes=num_classes)))

train_dataloader = dict(
    dataset=dict(
        data_root=data_root,
        metainfo=metainfo,
        ann_file='annotations/instances_train.json',
        data_prefix=dict(img='images/train/')))
val_dataloader = dict(
    dataset=dict(
        data_root=data_root,
        metainfo=metainfo,
        ann_file='annotations/instances_val.json',
        data_prefix=dict(img='images/val/')))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val.json')
test_evaluator = val_evaluator

# The recipe's lr is for 16 images per iteration (8 GPUs x 2); `train --auto-scale-lr` rescales it to yours.
