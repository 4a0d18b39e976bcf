"""Every command the README and docs/ show exists and takes the flags they show (checked with ``--help``).

Commands come from the documents' bash blocks: ``convnext-dense SUB ...`` (run as ``python -m convnext_dense
SUB``) and ``python tools/X.py ...``. One ``--help`` per distinct command; each documented ``--flag`` must be
in its help text. The commands run in this process (``cli.main.main`` and the tools/ shims through runpy):
what is checked is their argument parsers.

Every documented ``convnext-dense train|test`` line parses as written, and a ``train --resume`` without a path
continues a run an earlier line of the same document started (same config, same work directory).
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


def run_lines(doc: Path) -> List[List[str]]:
    """The ``convnext-dense train|test`` commands of one document, in order, as argument lists (optional parts
    in square brackets left out)."""
    commands = []
    for block in re.findall(r'^```(?:bash|sh)\n(.*?)^```', doc.read_text(encoding='utf-8'), re.S | re.M):
        for line in block.replace('\\\n', ' ').splitlines():
            words = re.sub(r'\[[^\]]*\]', ' ', line.split(' #')[0]).split()
            if words[:1] == ['convnext-dense'] and words[1:2] in (['train'], ['test']):
                commands.append(words[1:])
    return commands


def parsed(command: List[str]):
    from convnext_dense.cli import test, train
    return (train if command[0] == 'train' else test).parse_args(command[1:])


def work_dir(args) -> str:
    """The work directory a run uses: ``--work-dir``, else ``work_dirs/<config name>`` (what these configs
    leave it to)."""
    return args.work_dir or str(Path('work_dirs') / Path(args.config).stem)


@pytest.mark.parametrize('doc', [doc for doc in DOCS if run_lines(doc)], ids=lambda doc: doc.name)
def test_documented_train_and_test_commands_parse(doc):
    for command in run_lines(doc):
        try:
            parsed(command)
        except SystemExit:
            pytest.fail(f'{doc.name}: convnext-dense {" ".join(command)} does not parse')


@pytest.mark.parametrize('doc', [doc for doc in DOCS if any('--resume' in c for c in run_lines(doc))],
                         ids=lambda doc: doc.name)
def test_documented_resume_continues_a_run_the_document_started(doc):
    """A ``--resume`` without a path looks in its own work dir: the run it follows must have written there."""
    started = []
    for command in run_lines(doc):
        args = parsed(command)
        if command[0] != 'train':
            continue
        if args.resume == 'auto':
            assert (args.config, work_dir(args)) in started, (
                f'{doc.name}: convnext-dense {" ".join(command)} resumes from {work_dir(args)}, where no earlier '
                f'command of the document trains {args.config}')
        started.append((args.config, work_dir(args)))
