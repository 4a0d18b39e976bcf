"""ConvNeXt architecture settings: stage depths and widths per arch name, the number of stages, the stem.

The model (``models/``), the checkpoint package (``checkpoint/``) and the layer-decay constructor
(``engine/``) all read the stage layout from here, so none of them imports another to learn how many stages
a ConvNeXt has; in particular the checkpoint package names the arch of a file without importing the model.
"""
from typing import Dict, Tuple, Union

from convnext_dense.errors import ConfigError

# name -> (depths per stage, channels per stage); atto..huge as in ConvNeXt V2, tiny..xlarge as in V1, xxlarge
# as timm's convnext_xxlarge (the image tower of open_clip's CLIP ConvNeXt-XXLarge).
ARCH_SETTINGS: Dict[str, Tuple[Tuple[int, ...], Tuple[int, ...]]] = {
    'atto': ((2, 2, 6, 2), (40, 80, 160, 320)),
    'femto': ((2, 2, 6, 2), (48, 96, 192, 384)),
    'pico': ((2, 2, 6, 2), (64, 128, 256, 512)),
    'nano': ((2, 2, 8, 2), (80, 160, 320, 640)),
    'tiny': ((3, 3, 9, 3), (96, 192, 384, 768)),
    'small': ((3, 3, 27, 3), (96, 192, 384, 768)),
    'base': ((3, 3, 27, 3), (128, 256, 512, 1024)),
    'large': ((3, 3, 27, 3), (192, 384, 768, 1536)),
    'xlarge': ((3, 3, 27, 3), (256, 512, 1024, 2048)),
    'huge': ((3, 3, 27, 3), (352, 704, 1408, 2816)),
    'xxlarge': ((3, 4, 30, 3), (384, 768, 1536, 3072)),
}

NUM_STAGES = 4
#: The stem is a 4x4 patchify convolution with stride 4 (mmpretrain calls it ``stem_patch_size``).
STEM_STRIDE = 4


def resolve_arch(arch: Union[str, dict]) -> Tuple[Tuple[int, ...], Tuple[int, ...]]:
    """Returns ``(depths, channels)`` for an arch name or a ``dict(depths=..., channels=...)``.

    Args:
        arch: One of :data:`ARCH_SETTINGS` or a dict with four depths and four channel widths.

    Raises:
        ValueError: Unknown name, missing keys, or depths and channels of different or wrong length.
    """
    if isinstance(arch, str):
        if arch not in ARCH_SETTINGS:
            raise ConfigError(f'ConvNeXt: unknown arch {arch!r}; choose one of {sorted(ARCH_SETTINGS)} '
                             f'or pass dict(depths=(...), channels=(...)).')
        return ARCH_SETTINGS[arch]
    if not isinstance(arch, dict) or not {'depths', 'channels'} <= set(arch):
        raise ConfigError(f'ConvNeXt: arch must be one of {sorted(ARCH_SETTINGS)} or '
                         f'dict(depths=(...), channels=(...)), got {arch!r}.')
    depths, channels = tuple(arch['depths']), tuple(arch['channels'])
    if len(depths) != NUM_STAGES or len(channels) != NUM_STAGES:
        raise ConfigError(f'ConvNeXt: arch needs {NUM_STAGES} depths and {NUM_STAGES} channels, got '
                         f'depths={depths} and channels={channels}; or use one of {sorted(ARCH_SETTINGS)}.')
    return depths, channels
