"""The DINOv3 configs are the paper's V1 recipe of their size with DINOv3 weights by hub name, and their
metafile entries and headers say what the weights are, their licence and that no result is published."""
import re
from pathlib import Path

import pytest
from mmengine.config import Config

from convnext_dense import zoo

REPO_ROOT = Path(__file__).resolve().parents[2]
CONFIGS = {  # stem -> (task, the paper config whose recipe it runs, hub name of the weights)
    'cascade_convnext_t_dinov3_3x': ('det', 'cascade_convnext_t_3x', 'hf-hub:timm/convnext_tiny.dinov3_lvd1689m'),
    'cascade_convnext_b_dinov3_3x': ('det', 'cascade_convnext_b_in22k_3x',
                                     'hf-hub:timm/convnext_base.dinov3_lvd1689m'),
    'upernet_convnext_t_dinov3_512_160k': ('seg', 'upernet_convnext_t_512_160k',
                                           'hf-hub:timm/convnext_tiny.dinov3_lvd1689m'),
    'upernet_convnext_b_dinov3_512_160k': ('seg', 'upernet_convnext_b_512_160k',
                                           'hf-hub:timm/convnext_base.dinov3_lvd1689m'),
}
LICENCE_URL = 'https://ai.meta.com/resources/models-and-libraries/dinov3-license/'


def merged(task: str, stem: str) -> dict:
    return Config.fromfile(str(REPO_ROOT / 'configs' / task / f'{stem}.py')).to_dict()


@pytest.mark.parametrize('stem', sorted(CONFIGS))
def test_config_is_the_paper_recipe_with_dinov3_weights(stem):
    task, recipe, weights = CONFIGS[stem]
    ours, paper = merged(task, stem), merged(task, recipe)
    assert ours['model']['backbone'].pop('init_cfg') == dict(type='Pretrained', checkpoint=weights)
    paper['model']['backbone'].pop('init_cfg')
    assert ours.pop('checkpoint_file') == weights
    paper.pop('checkpoint_file', None)
    assert ours == paper


@pytest.mark.parametrize('stem', sorted(CONFIGS))
def test_metafile_names_the_weights_and_no_result(stem):
    task, recipe, weights = CONFIGS[stem]
    record = zoo.models(task)[stem]
    assert record['config'] == f'configs/{task}/{stem}.py' and record['pretrained'] == weights
    assert not {'box AP', 'mask AP', 'mIoU', 'mIoU (ms+flip)'} & set(record)
    # The same network as the recipe's paper config: the paper's params and FLOPs.
    paper = zoo.models(task)[recipe]
    assert (record['params'], record['flops']) == (paper['params'], paper['flops'])


@pytest.mark.parametrize('stem', sorted(CONFIGS))
def test_header_says_recipe_result_licence_and_measured_complexity(stem):
    task, recipe, weights = CONFIGS[stem]
    header = ''.join(line for line in (REPO_ROOT / 'configs' / task / f'{stem}.py').read_text().splitlines(True)
                     if line.startswith('#'))
    assert f'./{recipe}.py' in header and 'No result' in header and LICENCE_URL in header
    assert weights.replace('hf-hub:', 'https://huggingface.co/') in header
    params, flops = map(float, re.search(r'([\d.]+)M / ([\d.]+)G', header).groups())
    paper = zoo.models(task)[recipe]
    assert abs(params * 1e6 - paper['params']) <= 0.01 * paper['params']
    assert abs(flops * 1e9 - paper['flops']) <= 0.01 * paper['flops']
