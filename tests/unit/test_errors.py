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


class _GatedHub:
    """huggingface_hub's download answering as for a gated repository whose licence was not accepted."""

    def __call__(self, repo_id: str, filename: str, **kwargs) -> str:
        from huggingface_hub import errors as hub_errors
        gated = type('GatedRepoError', (hub_errors.GatedRepoError,),  # its constructor wants an HTTP response
                     {'__init__': lambda self: Exception.__init__(self, '403 gated')})
        raise gated()


def _checkpoint_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """``(convert arguments, text the one line must hold)`` for each checkpoint-package error a user can meet."""
    import huggingface_hub
    from huggingface_hub import constants
    monkeypatch.setattr(constants, 'HF_HUB_OFFLINE', True)
    monkeypatch.setattr(huggingface_hub, 'hf_hub_download', _GatedHub())
    truncated = tmp_path / 'model.safetensors'
    truncated.write_bytes(b'\x10\x00\x00\x00\x00\x00\x00\x00{"a":')
    unknown = tmp_path / 'resnet.pth'
    torch.save({'conv1.weight': torch.zeros(1)}, unknown)
    out = str(tmp_path / 'out.pth')
    return [
        (['hf-hub:timm', out], ['hf-hub:timm', 'hf-hub:ORG/NAME']),
        (['hf-hub:facebook/dinov3-convnext-tiny-pretrain-lvd1689m', out],
         ['gated', 'https://huggingface.co/facebook/dinov3-convnext-tiny-pretrain-lvd1689m', 'accept the licence',
          'HF_TOKEN']),
        ([str(truncated), out], [str(truncated), 'Download it again']),
        ([str(unknown), out], ['not a ConvNeXt checkpoint of any known layout', "'conv1.weight'", 'torchvision (',
                               'open_clip (', 'prefix=']),
        ([str(unknown), out, '--whole-model', '--to', 'timm'], ['--to', '--whole-model', 'drop one of them']),
    ]


def test_checkpoint_errors_are_one_line_naming_the_input_and_the_fix(tmp_path, monkeypatch, capsys):
    """Through the command line's boundary: exit status 2, one line naming the file or option and the fix."""
    from convnext_dense.cli import convert
    from convnext_dense.cli.errors import run_guarded
    for argv, expected in _checkpoint_errors(tmp_path, monkeypatch):
        assert run_guarded(convert.main, argv) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith('error: ') and err.count('\n') == 1, err
        for text in expected:
            assert text in err, (argv, text, err)
    assert not (tmp_path / 'out.pth').exists()
