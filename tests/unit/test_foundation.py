"""The foundation: mmcv's ops (compiled, or ours on torchvision), registry scopes, and a package without import
cycles (the light import and the env report are checked in a fresh process in
tests/integration/test_fresh_process.py)."""
import ast
from pathlib import Path
from typing import Dict, List, Set

import pytest
import torch
from mmengine.registry import DefaultScope

import convnext_dense
from convnext_dense.models import ConvNeXt

PACKAGE = Path(convnext_dense.__file__).parent


def package_imports() -> Dict[str, Set[str]]:
    """``{module: modules of the package it imports}``, imports inside functions included; a submodule import
    also counts its parent packages (their ``__init__`` runs first), but for the root's, which every module needs."""
    modules = {'.'.join(p.relative_to(PACKAGE.parent).with_suffix('').parts).removesuffix('.__init__'): p
               for p in PACKAGE.rglob('*.py')}
    graph = {name: set() for name in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text(encoding='utf-8'))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module] + [f'{node.module}.{alias.name}' for alias in node.names]
            else:
                continue
            for target in targets:
                parts = target.split('.')
                graph[name] |= {q for q in ('.'.join(parts[:i]) for i in range(2, len(parts) + 1))
                                if q in modules and q != name and not name.startswith(q + '.')}
    return graph


def import_cycles(graph: Dict[str, Set[str]]) -> List[List[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    cycles: List[List[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        for target in graph[module]:
            if target not in index:
                visit(target)
                low[module] = min(low[module], low[target])
            elif target in stack:
                low[module] = min(low[module], index[target])
        if low[module] == index[module]:
            component = []
            while not component or component[-1] != module:
                component.append(stack.pop())
            if len(component) > 1:
                cycles.append(sorted(component))

    for module in graph:
        if module not in index:
            visit(module)
    return cycles


def test_no_module_imports_back_what_imports_it():
    graph = package_imports()
    assert 'convnext_dense.checkpoint' in graph['convnext_dense.models.convnext']  # the graph is read
    assert not any(target.startswith('convnext_dense.models') for module in graph
                   if module.startswith('convnext_dense.checkpoint') for target in graph[module])
    assert import_cycles(graph) == []
    assert import_cycles({'a': {'b'}, 'b': {'c'}, 'c': {'a'}, 'd': {'a'}}) == [['a', 'b', 'c']]


def test_mmcv_compiled_ops_run():
    from mmcv.ops import RoIAlign, nms
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [1.0, 1.0, 10.0, 10.0], [20.0, 20.0, 30.0, 30.0]])
    scores = torch.tensor([0.9, 0.8, 0.7])
    _, keep = nms(boxes, scores, iou_threshold=0.5)
    assert keep.tolist() == [0, 2]
    features = torch.arange(16.0).reshape(1, 1, 4, 4)
    rois = torch.tensor([[0.0, 0.0, 0.0, 4.0, 4.0]])
    pooled = RoIAlign(output_size=(2, 2), spatial_scale=1.0, sampling_ratio=2, aligned=True)(features, rois)
    assert pooled.shape == (1, 1, 2, 2)
    # The 4x4 ramp averaged over each 2x2 quadrant.
    assert torch.allclose(pooled.flatten(), torch.tensor([2.5, 4.5, 10.5, 12.5]))


def test_roi_features_of_our_backbone_match_torchvision():
    # mmcv 2.1.0's compiled RoIAlign indexes its input as contiguous NCHW: given channels_last-strided maps it
    # returns wrong features without an error (checked below, so the trap stays visible); ours on torchvision
    # reads them right. Our backbone hands NCHW callers contiguous maps, and mmdet's RoI extractor then matches
    # torchvision's roi_align with either.
    import torchvision
    from mmcv.ops import RoIAlign

    from convnext_dense.mmcv_ops import COMPILED, ext_provider
    torch.manual_seed(0)
    model = ConvNeXt(dict(depths=(1, 1, 1, 1), channels=(8, 16, 32, 64))).eval()
    rois = torch.tensor([[0.0, 4.0, 6.0, 40.0, 30.0], [1.0, 20.0, 2.0, 60.0, 60.0]])
    roi_align = RoIAlign(output_size=7, spatial_scale=1 / 4, sampling_ratio=0, aligned=True)
    with torch.no_grad():
        stride4 = model(torch.randn(2, 3, 64, 64))[0]
        expected = torchvision.ops.roi_align(stride4, rois, 7, 1 / 4, 0, aligned=True)
        torch.testing.assert_close(roi_align(stride4, rois), expected, atol=1e-5, rtol=1e-5)
        misread = roi_align(stride4.contiguous(memory_format=torch.channels_last), rois)
    if ext_provider()[0] == COMPILED:
        assert (misread - expected).abs().max() > 0.1, 'mmcv RoIAlign handles channels_last now: update the comments'
    else:
        torch.testing.assert_close(misread, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize('scope', ['mmdet', 'mmseg'])
def test_backbone_resolves_from_downstream_default_scope(scope):
    if scope == 'mmdet':
        from mmdet.registry import MODELS
    else:
        from mmseg.registry import MODELS
    with DefaultScope.overwrite_default_scope(scope):
        backbone = MODELS.build(dict(type='convnext_dense.ConvNeXt', arch='atto', out_indices=(1, 3)))
    assert isinstance(backbone, ConvNeXt)
    assert backbone.out_channels == (80, 320)


def test_optimizer_constructor_resolves_from_mmdet_scope():
    from mmdet.registry import OPTIM_WRAPPER_CONSTRUCTORS
    from convnext_dense.engine import LearningRateDecayOptimizerConstructor
    with DefaultScope.overwrite_default_scope('mmdet'):
        found = OPTIM_WRAPPER_CONSTRUCTORS.get('convnext_dense.LearningRateDecayOptimizerConstructor')
    assert found is LearningRateDecayOptimizerConstructor
