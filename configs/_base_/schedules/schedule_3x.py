# 3x schedule of the ConvNeXt detection recipes: 36 epochs, lr x0.1 after epochs 27 and 33, 1000 linear
# warm-up iterations; AdamW with mixed precision, 16 images per iteration (8 GPUs x 2).
max_epochs = 36
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=1)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')

param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=1000),
    dict(type='MultiStepLR', begin=0, end=max_epochs, by_epoch=True, milestones=[27, 33], gamma=0.1),
]

# Configs set lr and paramwise_cfg.decay_rate from the paper's table; the constructor derives num_layers from
# the backbone (6 for a third stage of depth 9, 12 for 27), as the paper's configs set it.
optim_wrapper = dict(
    type='AmpOptimWrapper',
    loss_scale='dynamic',
    constructor='convnext_dense.LearningRateDecayOptimizerConstructor',
    paramwise_cfg=dict(decay_rate=0.7, decay_type='layer_wise'),
    optimizer=dict(type='AdamW', lr=2e-4, betas=(0.9, 0.999), weight_decay=0.05))

# The lr above is for 16 images per iteration; `--auto-scale-lr` rescales it for other batch sizes.
auto_scale_lr = dict(enable=False, base_batch_size=16)
