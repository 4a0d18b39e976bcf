"""The config edits the analysis tools share."""
from convnext_dense.config_utils import syncbn_to_bn


def test_syncbn_to_bn_replaces_every_sync_norm_and_leaves_the_input_alone():
    config = dict(backbone=dict(type='convnext_dense.ConvNeXt', norm_cfg=dict(type='MMSyncBN')),
                  roi_head=dict(bbox_head=[dict(norm_cfg=dict(type='SyncBN', requires_grad=True)),
                                           dict(norm_cfg=dict(type='GN', num_groups=8))]),
                  pool_scales=(1, 2, 3, 6))

    converted = syncbn_to_bn(config)

    assert converted['backbone'] == dict(type='convnext_dense.ConvNeXt', norm_cfg=dict(type='BN'))
    assert converted['roi_head']['bbox_head'] == [dict(norm_cfg=dict(type='BN', requires_grad=True)),
                                                  dict(norm_cfg=dict(type='GN', num_groups=8))]
    assert converted['pool_scales'] == (1, 2, 3, 6)
    assert config['roi_head']['bbox_head'][0]['norm_cfg']['type'] == 'SyncBN'  # a copy, not an edit
    assert config['backbone']['norm_cfg']['type'] == 'MMSyncBN'
