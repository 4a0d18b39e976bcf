"""Every error the package raises on purpose derives from ConvNeXtDenseError and keeps its built-in base."""
import ast
import importlib
import typing
from pathlib import Path

import pytest
import torch

import convnext_dense
from convnext_dense.errors import (CheckpointError, CheckpointFormatError, CheckpointNotFoundError, ConfigError,
                                   ConvNeXtDenseError, InputShapeError)
from convnext_dense.models import ConvNeXt, convert_state_dict, load_pretrained

PACKAGE = Path(convnext_dense.__file__).parent


def _raised_names(path: Path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call) and isinstance(node.exc.func, ast.Name):
            yield node.exc.func.id, node.lineno


@pytest.mark.parametrize('path', sorted(p.relative_to(PACKAGE).as_posix() for sub in ('models', 'engine', 'datasets',
                                                                                        'ops', 'checkpoint', 'cli',
                                                                                        'apis')
                                        for p in (PACKAGE / sub).rglob('*.py')))
def test_every_raise_site_raises_a_package_error(path):
    module = importlib.import_module('convnext_dense.' + path[:-3].replace('/', '.').replace('.__init__', ''))
    for name, line in _raised_names(PACKAGE / path):
        raised = getattr(module, name)
        if not isinstance(raised, type):  # a function that builds the error: its declared return type
            raised = typing.get_type_hints(raised)['return']
        assert issubclass(raised, ConvNeXtDenseError), f'{path}:{line} raises {name}'


def test_errors_keep_their_builtin_base(tmp_path):
    with pytest.raises(ConfigError) as err:
        ConvNeXt('tinny')
    assert isinstance(err.value, ValueError)
    with pytest.raises(InputShapeError) as err:
        ConvNeXt(dict(depths=(1, 1, 1, 1), channels=(8, 8, 8, 8)))(torch.zeros(1, 3, 16, 16))
    assert isinstance(err.value, ValueError)
    with pytest.raises(CheckpointFormatError) as err:
        convert_state_dict({'pos_embed': torch.zeros(1)})
    assert isinstance(err.value, ValueError) and isinstance(err.value, CheckpointError)
    with pytest.raises(CheckpointNotFoundError) as err:
        load_pretrained(ConvNeXt('atto'), str(tmp_path / 'missing.pth'))
    assert isinstance(err.value, FileNotFoundError) and str(tmp_path) in str(err.value)
