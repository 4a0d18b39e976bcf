"""The page and its pictures: sizes as stated, text escaped, nothing fetched, files written atomically."""
import io
import re

import numpy as np
import pytest
from PIL import Image

from convnext_dense.errors import ReportError
from convnext_dense.report.figures import (confusion_heatmap, grouped_bars, new_figure, picture_from_array, render,
                                           row_fractions)
from convnext_dense.report.html import Details, Note, Section, Table
from convnext_dense.report.page import write_page, write_report


def size_of(picture):
    image = Image.open(io.BytesIO(picture.data))
    return image.size, np.asarray(image.convert('RGB'))


def test_pictures_are_the_size_they_state_and_not_blank():
    fig = new_figure(4.23, 3.0)
    fig.subplots().plot([0, 1], [1, 0])
    pictures = [render(fig, 'a.png', 'a line'),
                grouped_bars('b.png', 'bars', 'bars', ['circle', 'ring'], {'box': [0.5, np.nan], 'mask': [0.2, 0.9]},
                             'AP'),
                confusion_heatmap('c.png', 'heat', 'heat', row_fractions(np.array([[3, 1], [0, 0]])),
                                  np.array([[3, 1], [0, 0]]), ['a', 'b'], ['a', 'b'], 'pred', 'true'),
                picture_from_array(np.random.default_rng(0).integers(0, 255, (50, 3000, 3)), 'd.png', 'wide', 1000)]
    for picture in pictures:
        (width, height), pixels = size_of(picture)
        assert (width, height) == (picture.width, picture.height), picture.name
        assert pixels.std() > 1.0, f'{picture.name} is blank'
    assert (pictures[0].width, pictures[0].height) == (423, 300)
    assert (pictures[3].width, pictures[3].height) == (1000, 17)  # scaled down, aspect kept


def test_row_fractions_leave_empty_rows_at_zero():
    assert row_fractions(np.array([[1, 3], [0, 0]])).tolist() == [[0.25, 0.75], [0.0, 0.0]]


def test_page_escapes_text_and_links_only_its_own_figures(tmp_path):
    fig = new_figure(2, 2)
    fig.subplots().plot([0, 1])
    picture = render(fig, 'p.png', 'a <b> picture')
    sections = [Section('Runs & facts', ['x < y', Note('no <validation> yet'), picture,
                                         Table(['k', 'v'], [['a', '0.5'], ['<b>', 'text']]),
                                         Details('2 settings', Table(['k'], [['z']]))])]
    report = write_page(tmp_path / 'out', 'A & B', sections, [])
    text = report.page.read_text()
    assert '<b>' not in text.replace('<body>', '') and '&lt;b&gt;' in text and 'Runs &amp; facts' in text
    assert '<td class="num">0.5</td>' in text and '<details><summary>2 settings</summary>' in text
    assert re.findall(r'(?:src|href)="([^"#]+)"', text) == ['figures/p.png']  # no network, no script
    assert '<script' not in text
    assert 'width="200" height="200"' in text
    assert report.pictures == [tmp_path / 'out' / 'figures' / 'p.png']
    assert sorted(p.name for p in (tmp_path / 'out').rglob('*')) == ['figures', 'index.html', 'p.png']


@pytest.mark.parametrize('options, message', [
    ({'num_images': -1}, '--num-images -1: pass 0 or more'),
    ({'score_thr': 1.5}, '--score-thr 1.5: pass a detection score between 0 and 1'),
    ({'results': ('a.pkl', 'b.pkl')}, 'report: 2 --results for 1 work dirs; give at most one per work dir')])
def test_bad_options_are_one_line(tmp_path, options, message):
    with pytest.raises(ReportError) as error:
        write_report([tmp_path], **options)
    assert str(error.value).startswith(message) and '\n' not in str(error.value)
