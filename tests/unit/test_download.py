"""Downloads of released weights against an HTTP server on 127.0.0.1: cache, progress bar, mirror, hash check,
and one line per failure (404, mid-file close, wrong hash, unreachable host, DNS, timeout) with nothing left in
the cache that a later call would take for the file."""
import hashlib
import io
import socket
from pathlib import Path

import pytest
import torch
from fixtures.weights_server import SLOW_SECONDS, Server

from convnext_dense.checkpoint import download as dl
from convnext_dense.errors import CheckpointError, ConfigError, DownloadError, HashMismatchError
from convnext_dense.io import safe_torch_load


def checkpoint_bytes(seed: int = 0) -> bytes:
    """A small real checkpoint (the zip format torch writes), big enough to span several reads."""
    generator = torch.Generator().manual_seed(seed)
    buffer = io.BytesIO()
    torch.save({'state_dict': {'w': torch.randn(300, 300, generator=generator)}}, buffer)
    return buffer.getvalue()


PAYLOAD = checkpoint_bytes()
SHA = hashlib.sha256(PAYLOAD).hexdigest()
FILES = {
    'model.pth': PAYLOAD,
    f'model-{SHA[:8]}.pth': PAYLOAD,
    'model-0badc0de.pth': PAYLOAD,
    'convnext/coco/mask_rcnn.pth': PAYLOAD,
}


@pytest.fixture(scope='module')
def server():
    running = Server(FILES)
    yield running
    running.stop()


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch):
    """urllib would send even 127.0.0.1 through a proxy set in the environment."""
    for name in ('http_proxy', 'https_proxy', 'all_proxy', 'HTTP_PROXY', 'HTTPS_PROXY', 'ALL_PROXY'):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv(dl.MIRROR_ENV, raising=False)


@pytest.fixture
def cache(tmp_path):
    return tmp_path / 'cache'


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def leftovers(cache: Path):
    return sorted(p.name for p in cache.iterdir()) if cache.exists() else []


def test_downloads_once_with_a_progress_bar_then_uses_the_cache(server, cache):
    url = f'{server.base}/files/model.pth'
    bar = io.StringIO()
    path = dl.download(url, cache=cache, progress=True, stream=bar)
    assert path == cache / 'model.pth' and path.read_bytes() == PAYLOAD
    assert leftovers(cache) == ['model.pth']  # no temporary beside it
    shown = bar.getvalue()
    assert shown.startswith('\rdownloading model.pth:') and shown.endswith('\n')
    last = shown.strip().split('\r')[-1]
    assert f'100% {len(PAYLOAD) / 1024:.1f} KiB of {len(PAYLOAD) / 1024:.1f} KiB' in last and last.endswith('/s')
    assert dl.download(url, cache=cache, progress=True, stream=bar) == path
    assert server.requests['/files/model.pth'] == 1
    assert safe_torch_load(str(path))['state_dict']['w'].shape == (300, 300)


def test_progress_is_quiet_when_not_a_terminal_or_asked(server, cache):
    quiet, asked = io.StringIO(), io.StringIO()
    dl.download(f'{server.base}/files/model.pth', cache=cache / 'a', stream=quiet)  # StringIO: not a tty
    dl.download(f'{server.base}/files/model.pth', cache=cache / 'b', progress=False, stream=asked)
    assert quiet.getvalue() == asked.getvalue() == ''


def test_a_cached_file_is_used_with_the_server_stopped(cache):
    own = Server(FILES)
    url = f'{own.base}/files/model.pth'
    path = dl.download(url, cache=cache)
    own.stop()
    assert dl.download(url, cache=cache) == path  # no connection attempted: the server is gone
    with pytest.raises(DownloadError, match='connection refused'):
        dl.download(f'{own.base}/files/model-{SHA[:8]}.pth', cache=cache)


@pytest.mark.parametrize('path, reason, text', [
    ('/half/model.pth', 'incomplete', 'closed the connection mid-file'),
    ('/files/absent.pth', 'http', 'HTTP 404 Not Found'),
    ('/html/model.pth', 'not-a-checkpoint', "starts with '<!DOCTYPE html>"),
])
def test_a_failed_download_is_one_line_and_leaves_nothing(server, cache, path, reason, text):
    url = server.base + path
    with pytest.raises(DownloadError) as error:
        dl.download(url, cache=cache)
    message = str(error.value)
    assert error.value.reason == reason and error.value.url == url and isinstance(error.value, CheckpointError)
    assert '\n' not in message and message.startswith(f'could not download {url}: ') and text in message
    assert 'download it yourself and pass the local path' in message and dl.MIRROR_ENV in message
    assert leftovers(cache) == []  # nothing a later call would take for the file


def test_wrong_hash_is_refused_and_the_right_one_kept(server, cache):
    with pytest.raises(HashMismatchError) as error:
        dl.download(f'{server.base}/files/model-0badc0de.pth', cache=cache)
    assert 'not 0badc0de as its file name says' in str(error.value) and '\n' not in str(error.value)
    assert error.value.reason == 'hash' and leftovers(cache) == []
    with pytest.raises(HashMismatchError, match='as the metafile says'):
        dl.download(f'{server.base}/files/model.pth', sha256='0123456789abcdef', cache=cache)
    assert leftovers(cache) == []
    assert dl.download(f'{server.base}/files/model-{SHA[:8]}.pth', cache=cache).read_bytes() == PAYLOAD
    assert dl.download(f'{server.base}/files/model.pth', sha256=SHA.upper(), cache=cache).is_file()
    with pytest.raises(ConfigError, match='hexadecimal'):
        dl.download(f'{server.base}/files/model.pth', sha256='abc', cache=cache / 'other')


def test_unreachable_hosts_name_the_reason(cache):
    with pytest.raises(DownloadError) as refused:
        dl.download(f'http://127.0.0.1:{closed_port()}/files/model.pth', cache=cache)
    assert refused.value.reason == 'refused' and 'connection refused by 127.0.0.1:' in str(refused.value)
    with pytest.raises(DownloadError) as dns:
        dl.download('https://weights.invalid/convnext/model.pth', cache=cache)
    assert dns.value.reason == 'dns' and 'the host name weights.invalid could not be resolved' in str(dns.value)
    assert leftovers(cache) == []


def test_a_stalled_server_times_out(server, cache):
    with pytest.raises(DownloadError) as error:
        dl.download(f'{server.base}/slow/model.pth', cache=cache, timeout=SLOW_SECONDS / 4)
    assert error.value.reason == 'timeout' and f'for {SLOW_SECONDS / 4:g} s (timeout)' in str(error.value)
    assert leftovers(cache) == []


def test_a_file_left_by_a_killed_download_is_not_taken_for_the_file(server, cache):
    cache.mkdir()
    (cache / '.model.pth.k2j8s1.tmp').write_bytes(PAYLOAD[:100])  # what a kill before the rename leaves
    path = dl.download(f'{server.base}/files/model.pth', cache=cache)
    assert path.read_bytes() == PAYLOAD


def test_not_enough_space_is_said_before_downloading(server, cache, monkeypatch):
    monkeypatch.setattr(dl.shutil, 'disk_usage', lambda path: type('Usage', (), {'free': 10})())
    with pytest.raises(DownloadError) as error:
        dl.download(f'{server.base}/files/model.pth', cache=cache)
    assert error.value.reason == 'disk-full' and dl.CACHE_ENV in str(error.value)
    assert leftovers(cache) == []


def test_the_mirror_rewrites_the_host(server, cache, monkeypatch, tmp_path):
    published = 'https://dl.fbaipublicfiles.com/convnext/coco/mask_rcnn.pth'
    assert dl.apply_mirror(published, '') == published
    rewritten = dl.apply_mirror(published, 'https://m.example.org/w/')
    assert rewritten == 'https://m.example.org/w/convnext/coco/mask_rcnn.pth'
    assert dl.apply_mirror(published, 'download.openmmlab.com=https://m.example.org') == published
    rules = 'download.openmmlab.com=https://a.example, dl.fbaipublicfiles.com=http://b.example'
    assert dl.apply_mirror(published, rules) == 'http://b.example/convnext/coco/mask_rcnn.pth'
    folder = tmp_path / 'weights'
    assert dl.apply_mirror(published, str(folder)) == (folder / 'convnext/coco/mask_rcnn.pth').as_uri()
    with pytest.raises(ConfigError, match='--weights-mirror: mirror .ftp://x. has scheme'):
        dl.apply_mirror(published, 'ftp://x')

    monkeypatch.setenv(dl.MIRROR_ENV, f'dl.fbaipublicfiles.com={server.base}/files')
    path = dl.download(published, cache=cache)
    assert path == cache / 'mask_rcnn.pth' and path.read_bytes() == PAYLOAD
    assert server.requests['/files/convnext/coco/mask_rcnn.pth'] >= 1
    monkeypatch.setenv(dl.MIRROR_ENV, f'{server.base}/nowhere')
    with pytest.raises(DownloadError) as error:
        dl.download(published, cache=cache / 'other')
    assert f'(mirror of {published})' in str(error.value) and 'HTTP 404' in str(error.value)


def test_a_folder_mirror_serves_air_gapped_sites(cache, tmp_path):
    folder = tmp_path / 'shared'
    (folder / 'convnext' / 'coco').mkdir(parents=True)
    (folder / 'convnext' / 'coco' / 'mask_rcnn.pth').write_bytes(PAYLOAD)
    url = 'https://dl.fbaipublicfiles.com/convnext/coco/mask_rcnn.pth'
    assert dl.download(url, mirror=str(folder), cache=cache).read_bytes() == PAYLOAD
    with pytest.raises(DownloadError) as error:
        dl.download('https://dl.fbaipublicfiles.com/convnext/coco/other.pth', mirror=str(folder), cache=cache)
    assert error.value.reason == 'not-found' and 'convnext/coco/other.pth' in str(error.value)


def test_cache_folder_honours_our_variable_then_torch_home(monkeypatch, tmp_path):
    monkeypatch.setenv(dl.CACHE_ENV, str(tmp_path / 'ours'))
    assert dl.cache_dir() == tmp_path / 'ours'
    monkeypatch.delenv(dl.CACHE_ENV)
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch'))
    assert dl.cache_dir() == tmp_path / 'torch' / 'hub' / 'checkpoints'
    assert dl.cached_path('https://h.example/a/b/c-1234abcd.pth') == tmp_path / 'torch/hub/checkpoints/c-1234abcd.pth'


def test_names_and_urls():
    assert dl.sha256_in_name('https://h.example/x/m_20220426_154953-050731f4.pth') == '050731f4'
    assert dl.sha256_in_name('https://dl.fbaipublicfiles.com/convnext/coco/mask_rcnn_convnext_tiny_1k_3x.pth') is None
    assert dl.sha256_in_name('https://h.example/model-1.5.pth') is None  # a version, not a hash
    assert dl.is_url('file:///data/w.pth') and dl.is_url('https://h/w.pth') and not dl.is_url('/data/w.pth')
    with pytest.raises(ConfigError, match='names no file'):
        dl.file_name('https://h.example/folder/')
    with pytest.raises(ConfigError, match='is not a URL'):
        dl.download('weights.pth')
