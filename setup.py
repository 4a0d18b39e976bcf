"""Install metadata for convnext_dense: the package, the ``convnext-dense`` command and the configs.

The repository's ``configs/`` folder ships inside the package as ``convnext_dense/configs/`` (package data),
so an installed wheel resolves config names without a clone (see convnext_dense/config_paths.py).
"""
import re
from pathlib import Path

from setuptools import find_packages, setup

VERSION = re.search(r"__version__ = '([^']+)'",
                    Path(__file__).with_name('convnext_dense').joinpath('version.py').read_text()).group(1)

# mmcv 2.1.0 is compiled by tools/setup_env.sh against the installed torch (PyPI has it as source only),
# so it is not listed here: pip would otherwise try to build it in an isolated environment.
CORE = ['torch>=2.0', 'torchvision', 'mmengine==0.10.7', 'numpy', 'matplotlib']
DET = ['mmdet==3.3.0', 'pycocotools', 'shapely', 'terminaltables']
# mmseg 1.2 imports ftfy and regex at import time without declaring them.
SEG = ['mmsegmentation==1.2.2', 'ftfy', 'regex', 'prettytable']
# hf-hub:ORG/NAME checkpoints (huggingface_hub's cache, offline mode and gated repositories) and .safetensors
# files, the Hub's weight format.
HUB = ['huggingface_hub>=0.23', 'safetensors']
# timm and mmpretrain are independent references in tests only (mmpretrain breaks with transformers 5).
# scikit-image: its bundled photographs are the real-world pictures of the inference tests.
TESTS = ['pytest', 'timm', 'mmpretrain==1.2.0', 'fvcore', 'scikit-image'] + HUB
CONFIG_DATA = ['*.py', '**/*.py', '**/*.yml', '**/*.yaml', '**/*.json', '**/*.md']
# ONNX export (torch's TorchScript exporter writes through onnx) and the ONNX Runtime predictor.
DEPLOY = ['onnx', 'onnxruntime']

setup(
    name='convnext_dense',
    version=VERSION,
    description='ConvNeXt backbones for COCO detection and ADE20K segmentation on the OpenMMLab stack',
    long_description=Path(__file__).with_name('README.md').read_text(),
    long_description_content_type='text/markdown',
    python_requires='>=3.9',
    packages=find_packages(include=['convnext_dense', 'convnext_dense.*']) + ['convnext_dense.configs'],
    package_dir={'convnext_dense.configs': 'configs'},
    package_data={'convnext_dense': ['ops/csrc/*.cpp', 'ops/csrc/*.h'], 'convnext_dense.configs': CONFIG_DATA},
    install_requires=CORE,
    entry_points={'console_scripts': ['convnext-dense = convnext_dense.cli.main:main']},
    extras_require={
        'det': DET,
        'seg': SEG,
        'deploy': DEPLOY,
        'hub': HUB,
        'tests': TESTS,
        'all': DET + SEG + DEPLOY + HUB,
    },
    license='Apache-2.0',
)
