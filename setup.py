"""Install metadata for convnext_dense: the package, the ``convnext-dense`` command and the configs.

The repository's ``configs/`` folder ships inside the package as ``convnext_dense/configs/`` (package data),
so an installed wheel resolves config names without a clone (see convnext_dense/config.py).
``convnext_dense_mmcv_ext.pth`` goes to the top of site-packages, beside the top-level module it runs
(``_convnext_dense_mmcv_ext.py``): the start-up hook that provides ``mmcv._ext`` under mmcv-lite.
"""
import re
from pathlib import Path

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

VERSION = re.search(r"__version__ = '([^']+)'",
                    Path(__file__).with_name('convnext_dense').joinpath('version.py').read_text()).group(1)

STARTUP_HOOK = 'convnext_dense_mmcv_ext.pth'

# ninja: torch builds the optional CPU kernels (convnext_dense/ops/extension.py) with it, where a C++ compiler
# exists; without one they step aside.
CORE = ['torch>=2.0', 'torchvision', 'mmengine==0.10.7', 'numpy', 'matplotlib', 'ninja']
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
# mmdet 3.3 and mmseg 1.2 need mmcv < 2.2: mmcv-lite 2.1.0 is its Python code without compiled ops, which
# convnext_dense provides (RoIAlign, NMS, soft-NMS). With a compiled mmcv 2.1.0, leave this extra out.
MMCV_LITE = ['mmcv-lite==2.1.0']


class BuildPyWithStartupHook(build_py):
    """build_py that also puts the start-up hook's ``.pth`` at the top of the wheel (so of site-packages).

    ``pip install -e`` builds an editable wheel from the install folder and ignores build_lib, so there the
    file goes straight into that folder.
    """

    def run(self) -> None:
        super().run()
        editable = getattr(self, 'editable_mode', False)  # setuptools >= 64
        target = self.get_finalized_command('install').install_lib if editable else self.build_lib
        self.mkpath(target)
        self.copy_file(str(Path(__file__).with_name(STARTUP_HOOK)), str(Path(target, STARTUP_HOOK)))


setup(
    name='convnext_dense',
    version=VERSION,
    description='ConvNeXt backbones for COCO detection and ADE20K segmentation on the OpenMMLab stack',
    long_description=Path(__file__).with_name('README.md').read_text(),
    long_description_content_type='text/markdown',
    python_requires='>=3.9',
    packages=find_packages(include=['convnext_dense', 'convnext_dense.*']) + ['convnext_dense.configs'],
    py_modules=['_convnext_dense_mmcv_ext'],
    package_dir={'convnext_dense.configs': 'configs'},
    package_data={'convnext_dense': ['ops/csrc/*.cpp', 'ops/csrc/*.h'], 'convnext_dense.configs': CONFIG_DATA},
    install_requires=CORE,
    cmdclass={'build_py': BuildPyWithStartupHook},
    entry_points={'console_scripts': ['convnext-dense = convnext_dense.cli.main:main']},
    extras_require={
        'det': DET,
        'seg': SEG,
        'deploy': DEPLOY,
        'hub': HUB,
        'tests': TESTS,
        'mmcv-lite': MMCV_LITE,
        'all': DET + SEG + DEPLOY + HUB + MMCV_LITE,
    },
    license='Apache-2.0',
)
