# ADE20K (SceneParsing, 150 classes) at 512x512 crops, as in the ConvNeXt paper and mmseg's ade20k.py.
# Layout under data_root: images/{training,validation}/*.jpg, annotations/{training,validation}/*.png.
# Label 0 ("other") becomes 255 (ignored) through reduce_zero_label; classes 1..150 become 0..149.
dataset_type = 'ADE20KDataset'
data_root = 'data/ade/ADEChallengeData2016'
crop_size = (512, 512)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='RandomResize', scale=(2048, 512), ratio_range=(0.5, 2.0), keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(2048, 512), keep_ratio=True),
    # Annotations load after Resize: metrics compare against the original-size label map.
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='PackSegInputs'),
]
# Multi-scale + flip test (tools/test.py --tta; mmseg's SegTTAModel averages the 12 predictions). As in the
# paper's mmseg 0.x MultiScaleFlipAug, the ratios scale the 2048x512 test scale, not the original image.
img_ratios = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)
tta_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='TestTimeAug',
         transforms=[
             [dict(type='Resize', scale=(int(2048 * r), int(512 * r)), keep_ratio=True) for r in img_ratios],
             [dict(type='RandomFlip', prob=0.0, direction='horizontal'),
              dict(type='RandomFlip', prob=1.0, direction='horizontal')],
             [dict(type='LoadAnnotations', reduce_zero_label=True)],
             [dict(type='PackSegInputs')],
         ]),
]
train_dataloader = dict(
    batch_size=2,  # 8 GPUs x 2 = the paper's 16 images per iteration
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        data_prefix=dict(img_path='images/training', seg_map_path='annotations/training'),
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        data_prefix=dict(img_path='images/validation', seg_map_path='annotations/validation'),
        pipeline=test_pipeline))
test_dataloader = val_dataloader

val_evaluator = dict(type='IoUMetric', iou_metrics=('mIoU',))  # reports aAcc, mIoU and mAcc
test_evaluator = val_evaluator
