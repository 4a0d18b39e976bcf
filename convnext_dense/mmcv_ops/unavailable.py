"""The mmcv 2.1.0 ops that only the compiled mmcv has, with the model parts that need them.

mmcv's Python modules ask for their compiled functions when they are imported (``ext_loader.load_ext``), and
mmdet imports most of them at start-up, so ``mmcv._ext`` answers every name of :data:`UNAVAILABLE`: with a
function that raises :class:`MmcvOpUnavailableError` when called, naming the op, what uses it and how to get the
compiled mmcv. The names are those of mmcv 2.1.0's ``mmcv/ops/*.py`` (``tests/unit/test_mmcv_ops.py`` imports
every one of them).
"""
from typing import Callable, Dict, NoReturn, Tuple

from convnext_dense.errors import ConvNeXtDenseError

#: Where the fix is described (docs/troubleshooting.md).
HOW_TO_COMPILE = ('run `MMCV=full make setup` in a clone, or build mmcv 2.1.0 as docs/troubleshooting.md '
                  '"The compiled mmcv ops" shows')

#: mmcv.ops module -> (its compiled functions, the models or layers that use them).
UNAVAILABLE: Dict[str, Tuple[Tuple[str, ...], str]] = {
    'active_rotated_filter': (('active_rotated_filter_forward', 'active_rotated_filter_backward'),
                              'ActiveRotatingFilter of oriented detectors (mmrotate)'),
    'assign_score_withk': (('assign_score_withk_forward', 'assign_score_withk_backward'),
                           'PAConv point-cloud layers (mmdet3d)'),
    'ball_query': (('ball_query_forward', 'stack_ball_query_forward'), 'point-cloud grouping (mmdet3d)'),
    'bbox': (('bbox_overlaps',), 'mmcv.ops.bbox_overlaps (mmdet computes IoUs with its own Python code)'),
    'bezier_align': (('bezier_align_forward', 'bezier_align_backward'), 'BezierAlign text spotters (mmocr)'),
    'bias_act': (('bias_act',), 'StyleGAN3 generators (mmagic)'),
    'border_align': (('border_align_forward', 'border_align_backward'), 'BorderAlign heads (BorderDet)'),
    'box_iou_quadri': (('box_iou_quadri',), 'quadrilateral-box detectors (mmrotate)'),
    'box_iou_rotated': (('box_iou_rotated',), 'rotated-box detectors (mmrotate)'),
    'carafe': (('carafe_forward', 'carafe_backward', 'carafe_naive_forward', 'carafe_naive_backward'),
               'CARAFE upsampling in FPN and mask heads'),
    'chamfer_distance': (('chamfer_distance_forward', 'chamfer_distance_backward'),
                         'Chamfer-distance losses (point clouds)'),
    'contour_expand': (('contour_expand',), 'PSENet text detection (mmocr)'),
    'convex_iou': (('convex_iou', 'convex_giou'), 'oriented RepPoints (mmrotate)'),
    'correlation': (('correlation_forward', 'correlation_backward'), 'optical-flow cost volumes (mmflow)'),
    'deform_conv': (('deform_conv_forward', 'deform_conv_backward_input', 'deform_conv_backward_parameters'),
                    'deformable convolutions (DCN backbones and heads)'),
    'deform_roi_pool': (('deform_roi_pool_forward', 'deform_roi_pool_backward'), 'deformable RoI pooling'),
    'diff_iou_rotated': (('diff_iou_rotated_sort_vertices_forward',), 'rotated IoU losses (mmrotate)'),
    'filtered_lrelu': (('filtered_lrelu', 'filtered_lrelu_act_'), 'StyleGAN3 generators (mmagic)'),
    'focal_loss': (('sigmoid_focal_loss_forward', 'sigmoid_focal_loss_backward', 'softmax_focal_loss_forward',
                    'softmax_focal_loss_backward'),
                   "focal loss on the GPU (RetinaNet, FCOS, ...; on the CPU mmdet uses its Python version)"),
    'furthest_point_sample': (('furthest_point_sampling_forward', 'furthest_point_sampling_with_dist_forward'),
                              'point-cloud sampling (mmdet3d)'),
    'fused_bias_leakyrelu': (('fused_bias_leakyrelu',), 'StyleGAN2 generators (mmagic)'),
    'gather_points': (('gather_points_forward', 'gather_points_backward'), 'point-cloud layers (mmdet3d)'),
    'group_points': (('group_points_forward', 'group_points_backward', 'stack_group_points_forward',
                      'stack_group_points_backward'), 'point-cloud grouping (mmdet3d)'),
    'iou3d': (('iou3d_boxes_overlap_bev_forward', 'iou3d_nms3d_forward', 'iou3d_nms3d_normal_forward'),
              '3-D box IoU and NMS (mmdet3d)'),
    'knn': (('knn_forward',), 'k-nearest-neighbour point grouping (mmdet3d)'),
    'masked_conv': (('masked_im2col_forward', 'masked_col2im_forward'), 'MaskedConv2d (guided anchoring)'),
    'min_area_polygons': (('min_area_polygons',), 'oriented RepPoints (mmrotate)'),
    'modulated_deform_conv': (('modulated_deform_conv_forward', 'modulated_deform_conv_backward'),
                              'modulated deformable convolutions (DCNv2 backbones and heads)'),
    'multi_scale_deform_attn': (('ms_deform_attn_forward', 'ms_deform_attn_backward'),
                                'multi-scale deformable attention on the GPU (Deformable DETR, DINO, Mask2Former)'),
    'nms': (('nms_match', 'nms_rotated', 'nms_quadri'),
            'nms_match (PISA / score-HLR sampling) and rotated or quadrilateral NMS (mmrotate)'),
    'pixel_group': (('pixel_group',), 'PANet text detection (mmocr)'),
    'points_in_boxes': (('points_in_boxes_part_forward', 'points_in_boxes_cpu_forward',
                         'points_in_boxes_all_forward'), '3-D detectors (mmdet3d)'),
    'points_in_polygons': (('points_in_polygons_forward',), 'oriented RepPoints (mmrotate)'),
    'prroi_pool': (('prroi_pool_forward', 'prroi_pool_backward', 'prroi_pool_coor_backward'),
                   'precise RoI pooling (IoU-Net)'),
    'psa_mask': (('psamask_forward', 'psamask_backward'), 'PSANet segmentors (mmseg)'),
    'riroi_align_rotated': (('riroi_align_rotated_forward', 'riroi_align_rotated_backward'),
                            'ReDet rotation-invariant RoI heads (mmrotate)'),
    'roi_align_rotated': (('roi_align_rotated_forward', 'roi_align_rotated_backward'),
                          'rotated RoI heads (mmrotate)'),
    'roi_pool': (('roi_pool_forward', 'roi_pool_backward'), 'RoIPool (Fast R-CNN style RoI heads)'),
    'roiaware_pool3d': (('roiaware_pool3d_forward', 'roiaware_pool3d_backward'), '3-D detectors (mmdet3d)'),
    'roipoint_pool3d': (('roipoint_pool3d_forward',), '3-D detectors (mmdet3d)'),
    'rotated_feature_align': (('rotated_feature_align_forward', 'rotated_feature_align_backward'),
                              'R3Det feature refinement (mmrotate)'),
    'scatter_points': (('dynamic_point_to_voxel_forward', 'dynamic_point_to_voxel_backward'),
                       'dynamic voxelization (mmdet3d)'),
    'sparse_ops': (('get_indice_pairs_2d_forward', 'get_indice_pairs_3d_forward', 'get_indice_pairs_4d_forward',
                    'get_indice_pairs_2d_backward', 'get_indice_pairs_3d_backward', 'indice_conv_forward',
                    'indice_conv_backward', 'fused_indice_conv_forward', 'indice_maxpool_forward',
                    'indice_maxpool_backward'), 'sparse convolutions (mmdet3d)'),
    'sync_bn': (('sync_bn_forward_mean', 'sync_bn_forward_var', 'sync_bn_forward_output',
                 'sync_bn_backward_param', 'sync_bn_backward_data'),
                "mmcv's SyncBatchNorm ('MMSyncBN'; the configs' 'SyncBN' is PyTorch's and needs no mmcv op)"),
    'three_interpolate': (('three_interpolate_forward', 'three_interpolate_backward'),
                          'point-cloud feature propagation (mmdet3d)'),
    'three_nn': (('three_nn_forward',), 'point-cloud feature propagation (mmdet3d)'),
    'tin_shift': (('tin_shift_forward', 'tin_shift_backward'), 'temporal interlace shift (mmaction2)'),
    'upfirdn2d': (('upfirdn2d',), 'StyleGAN2 up/down-sampling (mmagic)'),
    'voxelize': (('hard_voxelize_forward', 'dynamic_voxelize_forward'), 'voxelization (mmdet3d)'),
}


class MmcvOpUnavailableError(ConvNeXtDenseError, NotImplementedError):
    """An mmcv op that needs mmcv's compiled ops was called where mmcv is installed without them."""


def raise_unavailable(op: str, used_by: str) -> NoReturn:
    """Raises the one-line error for ``op``.

    Args:
        op: The op as a user would search for it, e.g. ``deform_conv_forward``.
        used_by: The model part that needs it.
    """
    raise MmcvOpUnavailableError(
        f"mmcv op {op} ({used_by}) needs mmcv's compiled ops, and this installation has mmcv without them "
        f"(mmcv-lite with convnext_dense's RoIAlign, NMS and soft-NMS): {HOW_TO_COMPILE}")


def unavailable_op(name: str, used_by: str) -> Callable[..., NoReturn]:
    """A stand-in for the compiled function ``name`` that raises :class:`MmcvOpUnavailableError` when called.

    Args:
        name: The function's name in mmcv's ``_ext``.
        used_by: The model part that needs it.
    """
    def op(*args, **kwargs) -> NoReturn:
        raise_unavailable(name, used_by)

    op.__name__ = op.__qualname__ = name
    op.__doc__ = f'Not available without the compiled mmcv: {used_by}.'
    return op


def unavailable_ops() -> Dict[str, Callable[..., NoReturn]]:
    """``{name: stand-in}`` for every compiled function of :data:`UNAVAILABLE`."""
    return {name: unavailable_op(name, used_by) for names, used_by in UNAVAILABLE.values() for name in names}
