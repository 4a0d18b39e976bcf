# Cascade Mask R-CNN with FPN on ConvNeXt-T, as in the ConvNeXt paper: three stages of 4conv1fc box heads
# with SyncBN and GIoU loss on decoded boxes, one FCN mask head per stage. Everything else (preprocessor,
# backbone, FPN, RPN anchors, RoI extractors, mask head, test settings) is the Mask R-CNN model's.
_base_ = ['mask_rcnn_convnext_fpn.py']
# Configs override the backbone arch, drop path, init_cfg and the FPN in_channels.
norm_cfg = dict(type='SyncBN', requires_grad=True)


def _bbox_head(target_stds):
    return dict(
        type='Shared4Conv1FCBBoxHead',
        in_channels=256,
        conv_out_channels=256,
        fc_out_channels=1024,
        roi_feat_size=7,
        num_classes=80,
        bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[0.0, 0.0, 0.0, 0.0], target_stds=target_stds),
        reg_class_agnostic=False,
        reg_decoded_bbox=True,
        norm_cfg=norm_cfg,
        loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0),
        loss_bbox=dict(type='GIoULoss', loss_weight=10.0))


def _rcnn_train_cfg(iou_thr):
    return dict(
        assigner=dict(type='MaxIoUAssigner', pos_iou_thr=iou_thr, neg_iou_thr=iou_thr, min_pos_iou=iou_thr,
                      match_low_quality=False, ignore_iof_thr=-1),
        sampler=dict(type='RandomSampler', num=512, pos_fraction=0.25, neg_pos_ub=-1,
                     add_gt_as_proposals=True),
        mask_size=28,
        pos_weight=-1,
        debug=False)


model = dict(
    type='CascadeRCNN',
    rpn_head=dict(loss_bbox=dict(_delete_=True, type='SmoothL1Loss', beta=1.0 / 9.0, loss_weight=1.0)),
    roi_head=dict(
        type='CascadeRoIHead',
        num_stages=3,
        stage_loss_weights=[1, 0.5, 0.25],
        bbox_head=[
            _bbox_head([0.1, 0.1, 0.2, 0.2]),
            _bbox_head([0.05, 0.05, 0.1, 0.1]),
            _bbox_head([0.033, 0.033, 0.067, 0.067]),
        ]),
    train_cfg=dict(
        rpn=dict(allowed_border=0),
        rpn_proposal=dict(max_per_img=2000),
        rcnn=[_rcnn_train_cfg(0.5), _rcnn_train_cfg(0.6), _rcnn_train_cfg(0.7)]))
