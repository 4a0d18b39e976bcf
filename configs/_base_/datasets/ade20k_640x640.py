# ADE20K at 640x640 crops (the paper's ImageNet-22K models): the 512 set-up scaled to 2560x640.
_base_ = ['./ade20k.py']
crop_size = (640, 640)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='RandomResize', scale=(2560, 640), ratio_range=(0.5, 2.0), keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(2560, 640), keep_ratio=True),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='PackSegInputs'),
]
img_ratios = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)
tta_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='TestTimeAug',
         transforms=[
             [dict(type='Resize', scale=(int(2560 * r), int(640 * r)), keep_ratio=True) for r in img_ratios],
             [dict(type='RandomFlip', prob=0.0, direction='horizontal'),
              dict(type='RandomFlip', prob=1.0, direction='horizontal')],
             [dict(type='LoadAnnotations', reduce_zero_label=True)],
             [dict(type='PackSegInputs')],
         ]),
]
# Pipelines are lists, which configs replace rather than merge, so the dataloaders name them again.
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
