# UperNet ConvNeXt-T on your own semantic-segmentation dataset of images and label maps
# (docs/custom_dataset.md). Model and recipe (AdamW, stage-wise lr decay, AMP, 160k iterations, 512x512 crops)
# come from the paper config. Copy this file and change the dataset section; the layout it expects:
#   images/train/NAME.jpg  + labels/train/NAME.png   (one single-channel PNG per image: pixel value i is
#   images/val/NAME.jpg    + labels/val/NAME.png      classes[i]; 255 is ignored by the loss and the metric)
_base_ = ['../seg/upernet_convnext_t_512_160k.py']

# --- your dataset ---
data_root = 'data/my_label_maps/'
img_suffix = '.jpg'
seg_map_suffix = '.png'
classes = ('background', 'circle', 'square', 'triangle', 'star', 'ring')
palette = [(0, 0, 0), (220, 20, 60), (0, 130, 200), (60, 180, 75), (255, 200, 0), (145, 30, 180)]
# ---

metainfo = dict(classes=classes, palette=palette)
num_classes = len(classes)

# Pre-training: the base config starts the backbone from the official ImageNet-1K ConvNeXt-T weights.
model = dict(decode_head=dict(num_classes=num_classes), auxiliary_head=dict(num_classes=num_classes))

# Label value 0 is a real class here, so reduce_zero_label=False (ADE20K's 0 means "other" and is dropped).
crop_size = (512, 512)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=False),
    dict(type='RandomResize', scale=(2048, 512), ratio_range=(0.5, 2.0), keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(2048, 512), keep_ratio=True),
    dict(type='LoadAnnotations', reduce_zero_label=False),
    dict(type='PackSegInputs'),
]
img_ratios = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)
tta_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='TestTimeAug',
         transforms=[
             [dict(type='Resize', scale=(int(2048 * r), int(512 * r)), keep_ratio=True) for r in img_ratios],
             [dict(type='RandomFlip', prob=0.0, direction='horizontal'),
              dict(type='RandomFlip', prob=1.0, direction='horizontal')],
             [dict(type='LoadAnnotations', reduce_zero_label=False)],
             [dict(type='PackSegInputs')],
         ]),
]
label_map_dataset = dict(type='BaseSegDataset', data_root=data_root, metainfo=metainfo, img_suffix=img_suffix,
                         seg_map_suffix=seg_map_suffix, reduce_zero_label=False)
train_dataloader = dict(
    dataset=dict(_delete_=True, **label_map_dataset, pipeline=train_pipeline,
                 data_prefix=dict(img_path='images/train', seg_map_path='labels/train')))
val_dataloader = dict(
    dataset=dict(_delete_=True, **label_map_dataset, pipeline=test_pipeline,
                 data_prefix=dict(img_path='images/val', seg_map_path='labels/val')))
test_dataloader = val_dataloader
