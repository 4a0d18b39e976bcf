"""The ``convnext-dense`` entry point: help, dispatch, and one line for what it cannot run."""
from convnext_dense.cli import main as entry


def test_help_lists_every_subcommand(capsys):
    assert entry.main(['--help']) == 0
    out = capsys.readouterr().out
    for name in ('train', 'test', 'infer', 'flops', 'benchmark', 'convert', 'demo', 'env', 'export', 'config-path'):
        assert f'\n  {name} ' in out, name


def test_no_arguments_is_a_usage_error(capsys):
    assert entry.main([]) == 2
    assert 'usage: convnext-dense SUBCOMMAND' in capsys.readouterr().out


def test_unknown_subcommand_suggests_the_close_one(capsys):
    assert entry.main(['trian']) == 2
    assert capsys.readouterr().err.strip() == "error: unknown subcommand 'trian'; did you mean train?"


def test_missing_module_is_one_line(capsys, monkeypatch):
    monkeypatch.setitem(entry.SUBCOMMANDS, 'export', ('convnext_dense.cli.not_a_module', 'x'))
    assert entry.main(['export', 'a.onnx']) == 2
    assert capsys.readouterr().err.strip() == ('error: convnext-dense export is not part of this installation '
                                               '(no module convnext_dense.cli.not_a_module)')


def test_subcommand_runs_with_its_arguments(capsys):
    assert entry.main(['config-path', 'det/mask_rcnn_convnext_t_3x']) == 0
    assert capsys.readouterr().out.strip().endswith('det/mask_rcnn_convnext_t_3x.py')
