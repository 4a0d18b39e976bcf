"""The documentation describes the repository as it is.

- Every relative link (and ``#anchor``) in README.md, CHANGELOG.md and docs/*.md resolves.
- Every config in the README's model-zoo tables exists, loads the pretrained weights its row links (a Hugging
  Face Hub name as its repository's page), and its
  params / FLOPs / paper metrics agree with the task's metafile (or, without one, with the FLOPs tool's
  table of the paper's values).
- Every script a document tells users to run exists, and every ``convnext-dense`` subcommand it names is one
  the command line dispatches.
- The repository speaks of the product only: no notes about how it was developed.
"""
import ast
import re
import unicodedata
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Tuple

import pytest
import yaml

from convnext_dense.checkpoint.hub import hub_page

REPO_ROOT = Path(__file__).resolve().parents[2]
README = REPO_ROOT / 'README.md'
DOCS = sorted([README, REPO_ROOT / 'CHANGELOG.md', *(REPO_ROOT / 'docs').glob('*.md')])
# Measured params / FLOPs may differ from the paper's rounded figures by this much.
PAPER_TOLERANCE = 0.01

FENCE = re.compile(r'^```.*?^```', re.S | re.M)
INLINE_CODE = re.compile(r'`[^`\n]*`')
HTML_COMMENT = re.compile(r'<!--.*?-->', re.S)
LINK = re.compile(r'!?\[[^\]\n]*\]\(([^)\s]+)(?:\s+"[^"]*")?\)')
HEADING = re.compile(r'^(#{1,6})\s+(.*?)\s*#*\s*$', re.M)


def prose(text: str) -> str:
    """Markdown without code blocks, inline code and comments, where link syntax is only an example."""
    return INLINE_CODE.sub('', FENCE.sub('', HTML_COMMENT.sub('', text)))


def github_anchor(heading: str) -> str:
    """The id GitHub gives a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r'!?\[([^\]]*)\]\([^)]*\)', r'\1', heading)  # a link in a heading counts by its text
    text = text.strip().lower()
    kept = ''.join(c for c in text if c in ' -_' or unicodedata.category(c)[0] in 'LN')
    return kept.replace(' ', '-')


def anchors(path: Path) -> set:
    """Every heading id of a markdown file, with GitHub's ``-1``, ``-2`` suffixes for repeated headings."""
    seen: Dict[str, int] = {}
    ids = set()
    for match in HEADING.finditer(FENCE.sub('', path.read_text(encoding='utf-8'))):
        anchor = github_anchor(INLINE_CODE.sub(lambda m: m.group(0)[1:-1], match.group(2)))
        count = seen.get(anchor, 0)
        seen[anchor] = count + 1
        ids.add(anchor if count == 0 else f'{anchor}-{count}')
    return ids


def relative_links(path: Path) -> Iterator[str]:
    for target in LINK.findall(prose(path.read_text(encoding='utf-8'))):
        if not re.match(r'[a-z][a-z0-9+.-]*:', target):  # http:, https:, mailto:
            yield target


@pytest.mark.parametrize('doc', DOCS, ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_relative_links_resolve(doc):
    broken = []
    for target in relative_links(doc):
        file_part, _, anchor = target.partition('#')
        linked = (doc.parent / file_part).resolve() if file_part else doc
        if not linked.exists():
            broken.append(f'{target} (no such file)')
        elif anchor and linked.suffix == '.md' and anchor not in anchors(linked):
            broken.append(f'{target} (no heading #{anchor} in {linked.name})')
    assert not broken, f'{doc.name}: broken links: {broken}'


def test_anchor_ids_follow_github():
    assert github_anchor('mmcv 2.1.0 has to be compiled') == 'mmcv-210-has-to-be-compiled'
    assert github_anchor('Resuming a checkpoint on torch ≥ 2.6') == 'resuming-a-checkpoint-on-torch--26'
    assert github_anchor('mmdet:: base configs, channels_last') == 'mmdet-base-configs-channels_last'


# ---------------------------------------------------------------------------------------------- model zoo

def markdown_tables(text: str) -> Iterator[List[Dict[str, str]]]:
    """Each pipe table of ``text`` as a list of rows, a row mapping header cell to cell."""
    lines = text.splitlines()
    i = 0
    while i < len(lines) - 1:
        if lines[i].startswith('|') and re.match(r'^\|(\s*:?-+:?\s*\|)+\s*$', lines[i + 1]):
            header = [cell.strip() for cell in lines[i].strip('|').split('|')]
            rows, i = [], i + 2
            while i < len(lines) and lines[i].startswith('|'):
                rows.append(dict(zip(header, (cell.strip() for cell in lines[i].strip('|').split('|')))))
                i += 1
            yield rows
        else:
            i += 1


def zoo_rows() -> List[Dict[str, str]]:
    """Rows of the README's model-zoo tables (tables whose first column links a config)."""
    rows = []
    for table in markdown_tables(README.read_text(encoding='utf-8')):
        if table and 'config' in table[0] and '](configs/' in table[0]['config']:
            rows.extend(table)
    return rows


def link_target(cell: str) -> str:
    match = re.search(r'\]\(([^)]+)\)', cell)
    assert match, f'no link in {cell!r}'
    return match.group(1)


def number(cell: str, unit: str) -> float:
    match = re.fullmatch(r'([\d.]+)' + unit, cell.replace('**', ''))
    assert match, f'{cell!r} is not a number in {unit}'
    return float(match.group(1)) * {'M': 1e6, 'G': 1e9}[unit]


def paper_column(row: Dict[str, str]) -> Tuple[str, List[float]]:
    """The header and the values of the row's paper-metrics column (empty when not published)."""
    header = next(h for h in row if '(paper)' in h)
    return header, [float(v) for v in re.findall(r'\d+\.\d+', row[header])]


def metafile_records() -> Optional[Dict[str, dict]]:
    """``{config path: record}`` from ``configs/*/metafile.yml`` (OpenMMLab model-index), or None."""
    paths = sorted((REPO_ROOT / 'configs').glob('*/metafile.yml'))
    if not paths:
        return None
    records = {}
    for path in paths:
        for model in yaml.safe_load(path.read_text(encoding='utf-8'))['Models']:
            metrics = {}
            for result in model.get('Results') or ():
                metrics.update(result['Metrics'])
            records[model['Config']] = dict(model.get('Metadata') or {}, metrics=metrics,
                                            weights=model.get('Weights') or [])
    return records


def flops_tool_paper_values() -> Dict[str, Tuple[float, float]]:
    """``{config stem: (params, FLOPs)}`` from the FLOPs tool's tables of the paper's values, read without
    importing it (it imports mmdet / mmseg)."""
    values = {}
    for name in ('det_flops.py', 'seg_flops.py'):
        for path in (*(REPO_ROOT / 'tools').rglob(name), *(REPO_ROOT / 'convnext_dense').rglob(name)):
            for node in ast.parse(path.read_text(encoding='utf-8')).body:
                if isinstance(node, ast.AnnAssign) and isinstance(node.value, ast.Dict):
                    literal = ast.literal_eval(node.value)
                    if all(isinstance(v, tuple) and len(v) == 2 for v in literal.values()):
                        values.update(literal)
    return values


ZOO_ROWS = zoo_rows()


def test_readme_has_both_zoo_tables():
    configs = [link_target(row['config']) for row in ZOO_ROWS]
    assert sum(c.startswith('configs/det/') for c in configs) >= 7, configs
    assert sum(c.startswith('configs/seg/') for c in configs) >= 6, configs


@pytest.mark.parametrize('row', ZOO_ROWS, ids=lambda row: link_target(row['config']))
def test_zoo_row_matches_its_config(row):
    from mmengine.config import Config
    config = link_target(row['config'])
    assert (REPO_ROOT / config).is_file(), f'{config} does not exist'
    cfg = Config.fromfile(str(REPO_ROOT / config), import_custom_modules=False)
    # A Hugging Face Hub name is linked as its repository's page.
    assert hub_page(cfg.model.backbone.init_cfg.checkpoint) == link_target(row['pre-training'])


# "**COCO instance segmentation** (3x schedule, 16 images per iteration (V2: 32), AMP):" above a zoo table.
STATED_BATCH = re.compile(r'^\*\*.*?\((?:[^()]*?, )?(\d+) images per iteration(?: \(V2: (\d+)\))?')
# The paper recipes' GPUs: a config's batch_size is per GPU.
PAPER_GPUS = 8


def stated_images_per_iteration() -> Dict[str, int]:
    """``{config path: images per iteration}`` as the sentence above each README zoo table states them."""
    stated, current = {}, None
    for line in README.read_text(encoding='utf-8').splitlines():
        heading = STATED_BATCH.match(line)
        if heading:
            current = (int(heading.group(1)), int(heading.group(2) or heading.group(1)))
        elif line.startswith('| [') and '](configs/' in line and current:
            config = link_target(line.split('|')[1])
            stated[config] = current[1] if 'convnextv2' in config and config.startswith('configs/det/') else \
                current[0]
    return stated


def test_stated_images_per_iteration_match_the_configs():
    """The README's batch sizes are each config's: 8 GPUs x batch_size, and what --auto-scale-lr scales from."""
    from mmengine.config import Config
    stated = stated_images_per_iteration()
    assert set(stated) == {link_target(row['config']) for row in ZOO_ROWS}
    for config, images in stated.items():
        cfg = Config.fromfile(str(REPO_ROOT / config), import_custom_modules=False)
        assert (PAPER_GPUS * cfg.train_dataloader.batch_size, cfg.auto_scale_lr.base_batch_size) == (images, images), \
            config


@pytest.mark.parametrize('row', ZOO_ROWS, ids=lambda row: link_target(row['config']))
def test_zoo_row_matches_the_paper(row):
    config = link_target(row['config'])
    params, flops = number(row['params'], 'M'), number(row['FLOPs'], 'G')
    header, paper_metrics = paper_column(row)
    records = metafile_records()
    if records is None:
        paper = flops_tool_paper_values().get(Path(config).stem)
        if paper is None:
            pytest.skip(f'no metafile and no FLOPs-tool value for {config}')
        paper_params, paper_flops = paper
    else:
        record = records.get(config)
        assert record is not None, f'{config} has no entry in configs/*/metafile.yml'
        metrics = [float(record['metrics'][key]) for key in record['metrics']]
        assert paper_metrics == metrics, f'{config}: README {header} {paper_metrics}, metafile {record["metrics"]}'
        assert hub_page(record['Pretrained Weights']) == link_target(row['pre-training'])
        if 'Parameters' not in record or 'FLOPs' not in record:
            return
        paper_params, paper_flops = float(record['Parameters']), float(record['FLOPs'])
    assert abs(params - paper_params) <= PAPER_TOLERANCE * paper_params, (config, params, paper_params)
    assert abs(flops - paper_flops) <= PAPER_TOLERANCE * paper_flops, (config, flops, paper_flops)


@pytest.mark.parametrize('row', ZOO_ROWS, ids=lambda row: link_target(row['config']))
def test_zoo_row_links_the_metafiles_trained_weights(row):
    records = metafile_records()
    if records is None:
        pytest.skip('no metafile')
    config = link_target(row['config'])
    weights = records[config]['weights']
    cell = row.get('trained weights', '')
    assert re.findall(r'\]\(([^)]+)\)', cell) == [entry['URL'] for entry in weights], config
    if not weights:
        assert cell == '–', config


# ------------------------------------------------------------------------------------------------ commands

def documented_commands() -> List[Tuple[str, str]]:
    """``(document, command line)`` for every command in the bash blocks of the README and docs/."""
    commands = []
    for doc in DOCS:
        for block in re.findall(r'^```(?:bash|sh|console)\n(.*?)^```', doc.read_text(encoding='utf-8'), re.S | re.M):
            for line in block.replace('\\\n', ' ').splitlines():
                line = line.split(' #')[0].strip()
                if line and not line.startswith('#'):
                    commands.extend((doc.name, part.strip()) for part in re.split(r'&&|;', line))
    return commands


COMMANDS = documented_commands()


def test_documented_scripts_exist():
    missing = set()
    for doc in DOCS:
        for script in re.findall(r'(?<![\w/.:])(tools/[\w/]+\.(?:py|sh))', doc.read_text(encoding='utf-8')):
            if not (REPO_ROOT / script).is_file():
                missing.add(f'{doc.name}: {script}')
    assert not missing, sorted(missing)


def subcommands() -> Optional[set]:
    """The subcommands ``convnext-dense`` dispatches: one module per subcommand in ``convnext_dense/cli/``."""
    cli = REPO_ROOT / 'convnext_dense' / 'cli'
    if not cli.is_dir():
        return None
    names = {p.stem.replace('_', '-') for p in cli.glob('*.py') if not p.stem.startswith('_')}
    return names | {'benchmark'}  # dispatched to convnext_dense.benchmark.main


def test_documented_subcommands_exist():
    known = subcommands()
    if known is None:
        pytest.skip('convnext_dense/cli/ is not in this tree')
    used = {(doc, m.group(1)) for doc, command in COMMANDS
            for m in re.finditer(r'(?:^|\s)convnext-dense\s+([a-z][\w-]*)', command)}
    unknown = sorted(f'{doc}: convnext-dense {name}' for doc, name in used if name not in known)
    assert not unknown, unknown


# --------------------------------------------------------------------------------------- development talk

DEVELOPMENT_TALK = re.compile(
    r"\bsession\s[0-9]|\brun\s[0-9]+\b|\btarget\s(?:met|missed)\b|\bthis\sVM\b|this\sproject's\smachine|DESIGN\.md §",
    re.I)
SCANNED = ('README.md', 'CHANGELOG.md', 'docs', 'configs', 'tests', 'convnext_dense', 'tools')


def scanned_files() -> Iterator[Path]:
    for name in SCANNED:
        path = REPO_ROOT / name
        candidates = [path] if path.is_file() else sorted(p for p in path.rglob('*') if p.is_file())
        for candidate in candidates:
            if candidate.suffix in ('.png', '.jpg', '.pth', '.so', '.pyc') or candidate == Path(__file__).resolve():
                continue
            yield candidate


def test_repository_speaks_of_the_product_only():
    hits = []
    for path in scanned_files():
        for number_, line in enumerate(path.read_text(encoding='utf-8', errors='replace').splitlines(), 1):
            if DEVELOPMENT_TALK.search(line):
                hits.append(f'{path.relative_to(REPO_ROOT)}:{number_}: {line.strip()[:100]}')
    assert not hits, 'notes about development (they belong in git log / CHANGELOG.md):\n' + '\n'.join(hits)


def test_citation_names_both_papers_and_the_package_version():
    """GitHub's citation button shows only ``preferred-citation``: the message names both papers."""
    from convnext_dense.version import __version__
    citation = yaml.safe_load((REPO_ROOT / 'CITATION.cff').read_text(encoding='utf-8'))
    assert citation['version'] == __version__
    assert citation['preferred-citation']['title'] == 'A ConvNet for the 2020s'
    v2 = 'ConvNeXt V2: Co-designing and Scaling ConvNets with Masked Autoencoders'
    assert {'A ConvNet for the 2020s', v2} <= {work['title'] for work in citation['references']}
    assert all(arxiv in citation['message'] for arxiv in ('2201.03545', '2301.00808')), citation['message']
