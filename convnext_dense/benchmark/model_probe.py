"""The child process of ``model`` mode: builds one variant of a config, times training and inference steps on
a synthetic batch, and prints one JSON line."""
import copy
import json
import statistics

import torch

from convnext_dense.benchmark.common import DTYPES, Clock, autocast, peak_rss_bytes, rss_bytes
from convnext_dense.benchmark.model import model_variant_cfg


def _synthetic_batch(scope: str, batch: int, height: int, width: int, device: torch.device, num_classes: int):
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(batch, 3, height, width, generator=generator).to(device)
    samples = []
    meta = dict(img_shape=(height, width), ori_shape=(height, width), pad_shape=(height, width),
                batch_input_shape=(height, width), scale_factor=(1.0, 1.0))
    for _ in range(batch):
        if scope == 'mmseg':
            from mmengine.structures import PixelData
            from mmseg.structures import SegDataSample
            sample = SegDataSample(metainfo=meta)
            sample.gt_sem_seg = PixelData(
                data=torch.randint(0, num_classes, (1, height, width), generator=generator).to(device))
        else:
            from mmdet.structures import DetDataSample
            from mmdet.structures.mask import BitmapMasks
            from mmengine.structures import InstanceData
            sample = DetDataSample(metainfo=meta)
            num_boxes = 8
            xy = torch.rand(num_boxes, 2, generator=generator) * torch.tensor([width * 0.6, height * 0.6])
            wh = torch.rand(num_boxes, 2, generator=generator) * torch.tensor([width * 0.3, height * 0.3]) + 16
            boxes = torch.cat([xy, xy + wh], dim=1)
            masks = torch.zeros(num_boxes, height, width, dtype=torch.uint8)
            for i, (x1, y1, x2, y2) in enumerate(boxes.int().tolist()):
                masks[i, y1:y2, x1:x2] = 1
            instances = InstanceData()
            instances.bboxes = boxes.to(device)
            instances.labels = torch.randint(0, num_classes, (num_boxes,), generator=generator).to(device)
            instances.masks = BitmapMasks(masks.numpy(), height, width)
            sample.gt_instances = instances
        samples.append(sample)
    return inputs, samples


def _num_classes(model_cfg: dict) -> int:
    found = []

    def visit(node) -> None:
        if isinstance(node, dict):
            if isinstance(node.get('num_classes'), int):
                found.append(node['num_classes'])
            for value in node.values():
                visit(value)
        elif isinstance(node, (list, tuple)):
            for value in node:
                visit(value)
    visit(model_cfg)
    return max(found) if found else 2


def model_probe(case_json: str) -> None:
    """Child process of ``model`` mode: one variant, timing of inference and training, peak memory."""
    case = json.loads(case_json)
    from mmengine.config import Config, ConfigDict

    import convnext_dense  # noqa: F401  registers our backbone
    cfg = Config.fromfile(case['config'])
    scope = cfg.get('default_scope', 'mmdet')
    if scope == 'mmseg':
        from mmseg.registry import MODELS
        from mmseg.utils import register_all_modules
    else:
        from mmdet.registry import MODELS
        from mmdet.utils import register_all_modules
    register_all_modules(init_default_scope=True)
    if case['variant'] == 'mmpretrain':
        import mmpretrain.models  # noqa: F401  registers mmpretrain.ConvNeXt
    device = torch.device(case['device'])
    torch.set_num_threads(case['threads'])
    torch.backends.cudnn.benchmark = bool(cfg.get('env_cfg', {}).get('cudnn_benchmark', False))  # as training
    model_cfg = model_variant_cfg(cfg.model.to_dict(), case['variant'])
    torch.manual_seed(0)
    # ConfigDict: mmdet's detectors read train_cfg.rpn / test_cfg.rcnn as attributes.
    model = MODELS.build(ConfigDict(model_cfg)).to(device)
    model.init_weights()
    clock = Clock(case['clock'], device)
    inputs, samples = _synthetic_batch(scope, case['batch'], case['height'], case['width'], device,
                                       _num_classes(model_cfg))
    result = dict(variant=case['variant'])

    def train_step() -> None:
        with autocast(device, DTYPES[case['dtype']]):
            losses = model(inputs, copy.deepcopy(samples), mode='loss')
        loss, _ = model.parse_losses(losses)
        loss.backward()
        model.zero_grad(set_to_none=True)

    def infer_step() -> list:
        with torch.no_grad(), autocast(device, DTYPES[case['dtype']]):
            return model(inputs, copy.deepcopy(samples), mode='predict')

    if 'train' in case['modes']:
        model.train()
        # the first step's peak is the one to report on CPU (ru_maxrss is a high-water mark)
        before = rss_bytes() if device.type != 'cuda' else None
        if device.type == 'cuda':
            train_step()
            torch.cuda.synchronize()
            base = torch.cuda.memory_allocated()
            torch.cuda.reset_peak_memory_stats()
        for _ in range(max(case['warmup'], 1)):
            train_step()
        result['train_peak_mem_mib'] = ((torch.cuda.max_memory_allocated() - base) if device.type == 'cuda'
                                        else max(0, peak_rss_bytes() - before)) / 2 ** 20
        start = clock()
        for _ in range(case['iters']):
            train_step()
        result['train_s_per_iter'] = (clock() - start) / case['iters']
    if 'infer' in case['modes']:
        model.eval()
        outputs = None
        for _ in range(case['warmup']):
            outputs = infer_step()
        start = clock()
        for _ in range(case['iters']):
            outputs = infer_step()
        result['infer_fps'] = case['batch'] * case['iters'] / (clock() - start)
        if scope != 'mmseg' and outputs:
            result['detections_per_image'] = statistics.mean(len(o.pred_instances) for o in outputs)
    print(json.dumps(result))
