"""The report page: sections of paragraphs, tables and pictures, written as one HTML file that opens from
disk (pictures are PNG files beside it in ``figures/``; inline CSS, no script, nothing fetched).
"""
import html
from dataclasses import dataclass, field
from typing import List, Sequence, Union

from convnext_dense.report.figures import Picture

FIGURES_DIR = 'figures'

STYLE = '''
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2em auto; max-width: 1400px;
       padding: 0 1em; color: #222; line-height: 1.45; }
h1 { font-size: 1.6em; } h2 { font-size: 1.3em; border-bottom: 1px solid #ccc; margin-top: 2em; }
h3 { font-size: 1.1em; margin-top: 1.5em; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 0.88em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
th { background: #f3f3f3; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
figure { margin: 0.8em 0; display: inline-block; vertical-align: top; }
figcaption { font-size: 0.85em; color: #555; max-width: 100%; }
img { max-width: 100%; height: auto; border: 1px solid #eee; }
.note { background: #fff7e0; border-left: 4px solid #e0a800; padding: 0.4em 0.8em; margin: 0.4em 0; }
code { background: #f3f3f3; padding: 0 0.2em; }
'''


@dataclass
class Table:
    """A table; cells that parse as numbers are right-aligned."""
    header: Sequence[str]
    rows: Sequence[Sequence[str]]
    caption: str = ''


@dataclass
class Details:
    """A table folded under a one-line summary (``<details>``: opens without any script)."""
    summary: str
    table: Table


@dataclass
class Note:
    """Something that could not be drawn or read, and why."""
    text: str


Block = Union[str, Table, Details, Note, Picture]


@dataclass
class Section:
    """A titled part of the page; ``level`` 2 or 3."""
    title: str
    blocks: List[Block] = field(default_factory=list)
    level: int = 2


def _is_number(text: str) -> bool:
    try:
        float(text.replace('%', '').replace('+', '', 1))
    except ValueError:
        return False
    return True


def _table(table: Table) -> str:
    parts = ['<table>']
    if table.caption:
        parts.append(f'<caption>{html.escape(table.caption)}</caption>')
    parts.append('<tr>' + ''.join(f'<th>{html.escape(str(h))}</th>' for h in table.header) + '</tr>')
    for row in table.rows:
        cells = []
        for cell in row:
            text = str(cell)
            css = ' class="num"' if _is_number(text) else ''
            cells.append(f'<td{css}>{html.escape(text)}</td>')
        parts.append('<tr>' + ''.join(cells) + '</tr>')
    parts.append('</table>')
    return '\n'.join(parts)


def _picture(picture: Picture) -> str:
    caption = html.escape(picture.caption)
    return (f'<figure><img src="{FIGURES_DIR}/{html.escape(picture.name)}" width="{picture.width}" '
            f'height="{picture.height}" alt="{caption}"><figcaption>{caption}</figcaption></figure>')


def _block(block: Block) -> str:
    if isinstance(block, Picture):
        return _picture(block)
    if isinstance(block, Table):
        return _table(block)
    if isinstance(block, Details):
        return f'<details><summary>{html.escape(block.summary)}</summary>\n{_table(block.table)}\n</details>'
    if isinstance(block, Note):
        return f'<p class="note">{html.escape(block.text)}</p>'
    return f'<p>{html.escape(block)}</p>'


def render_page(title: str, sections: Sequence[Section]) -> str:
    """The whole page as HTML text."""
    body = [f'<h1>{html.escape(title)}</h1>']
    contents = [f'<li><a href="#s{i}">{html.escape(s.title)}</a></li>' for i, s in enumerate(sections)
                if s.level == 2]
    if len(contents) > 2:
        body.append('<ul>' + ''.join(contents) + '</ul>')
    for index, section in enumerate(sections):
        body.append(f'<h{section.level} id="s{index}">{html.escape(section.title)}</h{section.level}>')
        body.extend(_block(block) for block in section.blocks)
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>{html.escape(title)}'
            f'</title>\n<style>{STYLE}</style>\n</head>\n<body>\n' + '\n'.join(body) + '\n</body>\n</html>\n')


def pictures_of(sections: Sequence[Section]) -> List[Picture]:
    """Every picture the sections show, in page order."""
    return [block for section in sections for block in section.blocks if isinstance(block, Picture)]
