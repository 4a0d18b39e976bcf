"""Every command the README and docs/ show exists and takes the flags they show (checked with ``--help``).

Commands come from the documents' bash blocks: ``convnext-dense SUB ...`` (run as ``python -m convnext_dense
SUB``) and ``python tools/X.py ...``. One ``--help`` per distinct command; each documented ``--flag`` must be
in its help text. The commands run in this process (``cli.main.main`` and the tools/ shims through runpy):
what is checked is their argument parsers.
"""
import re
import runpy
import sys
from pathlib import Path
from typing import Dict, List, Set, Tuple

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
DOCS = [REPO_ROOT / 'README.md', *sorted((REPO_ROOT / 'docs').glob('*.md'))]
FLAG = re.compile(r'(?<![\w-])(--[a-z][a-z0-9-]*)')


def command_lines() -> List[str]:
    lines = []
    for doc in DOCS:
        for block in re.findall(r'^```(?:bash|sh)\n(.*?)^```', doc.read_text(encoding='utf-8'), re.S | re.M):
            for line in block.replace('\\\n', ' ').splitlines():
                line = line.split(' #')[0].strip()
                lines.extend(part.strip() for part in re.split(r'&&|;', line) if part.strip())
    return lines


def documented_flags() -> Dict[Tuple[str, ...], Set[str]]:
    """``{help command: flags the documents pass to it}``."""
    flags: Dict[Tuple[str, ...], Set[str]] = {}
    for line in command_lines():
        words = line.replace('[', ' ').replace(']', ' ').split()
        if 'convnext-dense' in words:
            args = words[words.index('convnext-dense') + 1:]
            if not args or args[0].startswith('-'):
                continue
            # benchmark's flags belong to its mode (backbone / model / layernorm)
            key = ('-m', 'convnext_dense', *args[:2]) if args[0] == 'benchmark' else ('-m', 'convnext_dense', args[0])
        elif len(words) > 1 and words[0] == 'python' and re.fullmatch(r'tools/[\w/]+\.py', words[1]):
            args = words[2:]
            key = (words[1], *args[:1]) if words[1].endswith('benchmark.py') else (words[1],)
        else:
            continue
        flags.setdefault(key, set()).update(f.split('=')[0] for f in FLAG.findall(' '.join(args)))
    return flags


FLAGS = documented_flags()


def test_documents_show_commands():
    assert any(key[0] == '-m' for key in FLAGS) and any(key[0].startswith('tools/') for key in FLAGS), FLAGS


def run_help(key: Tuple[str, ...], capsys, monkeypatch) -> Tuple[int, str]:
    """``KEY --help`` in this process: ``(exit status, stdout)``."""
    if key[0] == '-m':
        from convnext_dense.cli.main import main
        monkeypatch.setattr(sys, 'argv', ['convnext-dense'])
        run = lambda: main([*key[2:], '--help'])  # noqa: E731
    else:
        monkeypatch.setattr(sys, 'argv', [str(REPO_ROOT / key[0]), *key[1:], '--help'])
        run = lambda: runpy.run_path(str(REPO_ROOT / key[0]), run_name='__main__')  # noqa: E731
    try:
        status = run()
    except SystemExit as exited:
        status = exited.code
    return int(status or 0), capsys.readouterr().out


@pytest.mark.parametrize('key', sorted(FLAGS), ids=' '.join)
def test_documented_command_takes_its_flags(key, capsys, monkeypatch):
    if key[0] == '-m' and not (REPO_ROOT / 'convnext_dense' / '__main__.py').is_file():
        pytest.skip('no convnext_dense/__main__.py in this tree')
    status, out = run_help(key, capsys, monkeypatch)
    assert status == 0, out[-2000:]
    missing = sorted(FLAGS[key] - set(FLAG.findall(out)))
    assert not missing, f'{" ".join(key)} --help does not list {missing}'
