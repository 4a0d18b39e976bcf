"""Released weights from a URL into a local cache, safe against dead hosts, broken connections and kills.

- **Cache.** ``$CONVNEXT_DENSE_WEIGHTS_DIR`` when set, else torch.hub's checkpoint folder
  (``$TORCH_HOME/hub/checkpoints``, by default ``~/.cache/torch/hub/checkpoints``), which mmengine and
  torch.hub fill too. A file is cached under the last part of its URL's path; a cached file is used as it is,
  without touching the network, so an offline node runs from a cache filled elsewhere.
- **Mirror.** ``$CONVNEXT_DENSE_WEIGHTS_MIRROR`` (or the commands' ``--weights-mirror``) rewrites the host of
  every download: ``https://mirror.example.org/weights`` for all hosts, ``HOST=BASE`` for one host
  (``dl.fbaipublicfiles.com=https://mirror.example.org``), several rules separated by commas, or a local or
  shared folder (``/data/weights``) holding the files under their URL paths, for air-gapped sites.
- **Atomic and verified.** Bytes go to a temporary file beside the target (``io.atomic_output``) that is
  renamed only after the size matches ``Content-Length``, the file starts like a checkpoint (zip, pickle or
  safetensors, not an HTML error page) and its SHA-256 matches the one given by the metafile or by the file
  name (``NAME-<first 8+ hex digits of the SHA-256>.pth``, the torch.hub and OpenMMLab convention). A killed
  or broken download leaves no file under the cached name.
- **One line on failure.** :class:`~convnext_dense.errors.DownloadError` names the URL, the reason (DNS, TLS,
  HTTP status, timeout, connection refused or closed mid-file, wrong hash) and the fallback.

Standard library only (urllib); no mmdet or mmseg import.
"""
import errno
import hashlib
import http.client
import os
import re
import shutil
import socket
import ssl
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import BinaryIO, List, Optional, TextIO, Tuple, Union

from convnext_dense.errors import ConfigError, DownloadError, HashMismatchError
from convnext_dense.io import atomic_output
from convnext_dense.version import __version__

#: Folder of downloaded weights; unset: torch.hub's ``checkpoints`` folder.
CACHE_ENV = 'CONVNEXT_DENSE_WEIGHTS_DIR'
#: Host rewrite of every download (see the module docstring).
MIRROR_ENV = 'CONVNEXT_DENSE_WEIGHTS_MIRROR'
URL_SCHEMES = ('http', 'https', 'file')
#: Seconds without data before a download is given up.
DEFAULT_TIMEOUT = 60.0

_NAME_HASH = re.compile(r'-([0-9a-f]{8,64})\.[A-Za-z0-9]+$')
_CHUNK = 1 << 20
# zip (torch >= 1.6), pickle protocol >= 2 (torch's legacy format), safetensors (8-byte length, then JSON).
_ZIP_MAGIC, _PICKLE_MAGIC = b'PK\x03\x04', b'\x80'


def is_url(source: str) -> bool:
    """Whether ``source`` is a URL this module downloads (http, https or file)."""
    return urllib.parse.urlparse(str(source)).scheme in URL_SCHEMES and '://' in str(source)


def cache_dir() -> Path:
    """The folder downloads are cached in: ``$CONVNEXT_DENSE_WEIGHTS_DIR``, else torch.hub's ``checkpoints``."""
    folder = os.environ.get(CACHE_ENV)
    if folder:
        return Path(folder).expanduser()
    import torch.hub  # honours TORCH_HOME, XDG_CACHE_HOME and torch.hub.set_dir, as mmengine's downloads do
    return Path(torch.hub.get_dir()) / 'checkpoints'


def file_name(url: str) -> str:
    """The name a URL's file is cached under: the last part of its path."""
    name = os.path.basename(urllib.parse.unquote(urllib.parse.urlparse(url).path))
    if not name:
        raise ConfigError(f'weights URL {url} names no file (its path ends with "/"); give the URL of the file.')
    return name


def cached_path(url: str, cache: Union[str, Path, None] = None) -> Path:
    """Where :func:`download` keeps ``url`` (whether or not it is there yet).

    Args:
        url: The file's URL (before any mirror rewrite: the cache does not depend on the host).
        cache: The cache folder; defaults to :func:`cache_dir`.
    """
    return Path(cache or cache_dir()) / file_name(url)


def sha256_in_name(url: str) -> Optional[str]:
    """The SHA-256 prefix a file name carries (``mask_rcnn_..._20220426_154953-050731f4.pth``), or None."""
    match = _NAME_HASH.search(file_name(url))
    return match.group(1) if match else None


def _mirror_rules(mirror: str, origin: str) -> List[Tuple[Optional[str], str]]:
    """``[(host or None for every host, base URL)]`` from a mirror setting."""
    rules = []
    for entry in (part.strip() for part in mirror.split(',')):
        if not entry:
            continue
        host, base = (None, entry)
        head, sep, tail = entry.partition('=')
        if sep and '/' not in head and ':' not in head:
            host, base = head.lower(), tail.strip()
        if '://' not in base:  # a folder: the files under their URL paths
            base = Path(base).expanduser().resolve().as_uri()
        scheme = urllib.parse.urlparse(base).scheme
        if scheme not in URL_SCHEMES:
            raise ConfigError(f'{origin}: mirror {base!r} has scheme {scheme!r}; give an http(s) URL, a folder or '
                              f'HOST=BASE, e.g. {MIRROR_ENV}=https://mirror.example.org/weights')
        rules.append((host, base.rstrip('/')))
    return rules


def apply_mirror(url: str, mirror: Optional[str] = None) -> str:
    """``url`` with its scheme and host replaced as the mirror setting says (unchanged without one).

    Args:
        url: The file's URL.
        mirror: The setting (``--weights-mirror``); None reads ``$CONVNEXT_DENSE_WEIGHTS_MIRROR``.
    """
    origin = '--weights-mirror' if mirror is not None else MIRROR_ENV
    setting = os.environ.get(MIRROR_ENV, '') if mirror is None else mirror
    parsed = urllib.parse.urlparse(url)
    for host, base in _mirror_rules(setting, origin):
        if host is None or host == (parsed.hostname or ''):
            return base + parsed.path + (f'?{parsed.query}' if parsed.query else '')
    return url


def download(url: str, sha256: Optional[str] = None, *, mirror: Optional[str] = None,
             cache: Union[str, Path, None] = None, progress: Optional[bool] = None,
             timeout: float = DEFAULT_TIMEOUT, stream: Optional[TextIO] = None) -> Path:
    """The local path of ``url``'s file: the cached copy, else downloaded into the cache first.

    Args:
        url: An http(s) or file URL (as the metafile or the user gives it).
        sha256: Expected SHA-256 (full or a prefix of at least 8 hex digits), e.g. from the metafile; None
            checks the prefix in the file name when it carries one.
        mirror: Mirror setting (``--weights-mirror``); None reads ``$CONVNEXT_DENSE_WEIGHTS_MIRROR``.
        cache: Cache folder; defaults to :func:`cache_dir`.
        progress: Show a progress bar with size and speed; None shows it when ``stream`` is a terminal.
        timeout: Seconds without data (connecting or reading) before giving up.
        stream: Where the progress bar goes; defaults to stderr.

    Raises:
        DownloadError: The file could not be fetched or is not a checkpoint; nothing is left in the cache.
        HashMismatchError: Its SHA-256 differs from the expected one; nothing is left in the cache.
    """
    if not is_url(url):
        raise ConfigError(f'{url!r} is not a URL; weights are downloaded from http://, https:// or file:// URLs.')
    target = cached_path(url, cache)
    if target.is_file():
        return target
    source = apply_mirror(url, mirror)
    expected, expected_from = _expected_hash(url, sha256)
    stream = stream or sys.stderr
    show = progress if progress is not None else bool(getattr(stream, 'isatty', lambda: False)())
    request = urllib.request.Request(source, headers={'User-Agent': f'convnext_dense/{__version__}'})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            total = _content_length(response)
            _check_space(target, total, url, source)
            with atomic_output(target) as tmp, open(tmp, 'wb') as out:
                digest, received = _copy(response, out, total, _Progress(target.name, total, stream, show))
                if total is not None and received != total:
                    raise http.client.IncompleteRead(b'', total - received)
                out.flush()
                _check_content(tmp, url, source, target)
                _check_hash(digest, expected, expected_from, url, source, target)
    except DownloadError:
        raise
    except (OSError, http.client.HTTPException, ValueError) as error:
        reason, text = _describe(error, source, timeout)
        raise DownloadError(_message(url, source, target, text), url=source, reason=reason) from error
    return target


def _expected_hash(url: str, sha256: Optional[str]) -> Tuple[Optional[str], str]:
    if sha256:
        if not re.fullmatch(r'[0-9a-fA-F]{8,64}', sha256):
            raise ConfigError(f'SHA-256 {sha256!r} for {url} is not 8 to 64 hexadecimal digits.')
        return sha256.lower(), 'the metafile'
    return sha256_in_name(url), 'its file name'


def _content_length(response) -> Optional[int]:
    value = response.headers.get('Content-Length')
    return int(value) if value and value.isdigit() else None


def _copy(response, out: BinaryIO, total: Optional[int], bar: '_Progress') -> Tuple[str, int]:
    digest, received = hashlib.sha256(), 0
    while True:
        chunk = response.read(_CHUNK)
        if not chunk:
            break
        out.write(chunk)
        digest.update(chunk)
        received += len(chunk)
        bar.update(received)
    bar.finish(received)
    return digest.hexdigest(), received


def _fallback(url: str, target: Path) -> str:
    return (f'download it yourself and pass the local path (or save it as {target}, where it is found without '
            f'network), or set {MIRROR_ENV} / --weights-mirror to a host or folder that has {file_name(url)}')


def _message(url: str, source: str, target: Path, text: str) -> str:
    via = f' (mirror of {url})' if source != url else ''
    return f'could not download {source}{via}: {text}; {_fallback(url, target)}.'


def _check_space(target: Path, total: Optional[int], url: str, source: str) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(target.parent).free
    if total is not None and total > free:
        raise DownloadError(_message(url, source, target, f'it needs {_size(total)} and {target.parent} has '
                                     f'{_size(free)} free (set {CACHE_ENV} to a larger disk)'),
                            url=source, reason='disk-full')


def _check_content(tmp: str, url: str, source: str, target: Path) -> None:
    with open(tmp, 'rb') as f:
        head = f.read(16)
    if head.startswith((_ZIP_MAGIC, _PICKLE_MAGIC)) or head[8:9] == b'{':
        return
    shown = head.decode('utf-8', 'replace').strip().splitlines()[0] if head.strip() else 'nothing'
    raise DownloadError(_message(url, source, target, f'the server sent no checkpoint (the file starts with '
                                 f'{shown!r}: an error or login page?)'), url=source, reason='not-a-checkpoint')


def _check_hash(digest: str, expected: Optional[str], origin: str, url: str, source: str, target: Path) -> None:
    if expected is None or digest.startswith(expected):
        return
    raise HashMismatchError(
        f'downloaded {source} but its SHA-256 starts with {digest[:len(expected)]}, not {expected} as '
        f'{origin} says, so the file was not kept (a corrupt transfer or another file under that name); retry, '
        f'or {_fallback(url, target)}.', url=source, reason='hash')


def _describe(error: BaseException, source: str, timeout: float) -> Tuple[str, str]:
    """``(reason, text)`` of a failed transfer, e.g. ``('dns', 'the host name x could not be resolved')``."""
    parsed = urllib.parse.urlparse(source)
    where = parsed.hostname if parsed.port is None else f'{parsed.hostname}:{parsed.port}'
    if isinstance(error, urllib.error.HTTPError):
        return 'http', f'HTTP {error.code} {error.reason}'
    cause = error.reason if isinstance(error, urllib.error.URLError) else error
    if isinstance(cause, socket.gaierror):
        return 'dns', f'the host name {parsed.hostname} could not be resolved (DNS: {cause.strerror})'
    if isinstance(cause, ssl.SSLCertVerificationError):
        return 'tls', f'TLS certificate check of {where} failed ({cause.verify_message})'
    if isinstance(cause, ssl.SSLError):
        return 'tls', f'TLS error with {where} ({cause.reason or cause})'
    if isinstance(cause, TimeoutError):
        return 'timeout', f'no data from {where} for {timeout:g} s (timeout)'
    if isinstance(cause, ConnectionRefusedError):
        return 'refused', f'connection refused by {where} (no server there, or the host is down)'
    if isinstance(cause, (http.client.IncompleteRead, ConnectionResetError, http.client.RemoteDisconnected)):
        return 'incomplete', f'{where} closed the connection mid-file'
    if isinstance(cause, FileNotFoundError) or (isinstance(cause, OSError) and cause.errno == errno.ENOENT):
        return 'not-found', f'no such file {urllib.parse.unquote(parsed.path)}'
    if isinstance(cause, OSError) and cause.errno == errno.ENOSPC:
        return 'disk-full', f'the disk of the cache is full (set {CACHE_ENV} to a larger disk)'
    if isinstance(cause, PermissionError):
        return 'cache', f'permission denied ({cause.filename}; set {CACHE_ENV} to a writable folder)'
    if isinstance(cause, OSError):
        return 'network', f'network error ({cause.strerror or cause})'
    return 'network', str(cause)


def _size(count: float) -> str:
    for unit in ('B', 'KiB', 'MiB', 'GiB'):
        if count < 1024 or unit == 'GiB':
            return f'{count:.0f} {unit}' if unit == 'B' else f'{count:.1f} {unit}'
        count /= 1024
    return f'{count:.1f} GiB'


class _Progress:
    """One progress line (``\\r``-updated) with percentage, size and speed; silent when not shown."""

    def __init__(self, name: str, total: Optional[int], stream: TextIO, show: bool) -> None:
        self.name, self.total, self.stream, self.show = name, total, stream, show
        self.start = self.last = time.monotonic()

    def _line(self, received: int) -> str:
        elapsed = max(time.monotonic() - self.start, 1e-6)
        done = f'{_size(received)}'
        if self.total:
            done = f'{100 * received // self.total:3d}% {done} of {_size(self.total)}'
        return f'\rdownloading {self.name}: {done}, {_size(received / elapsed)}/s'

    def update(self, received: int) -> None:
        now = time.monotonic()
        if self.show and now - self.last >= 0.2:
            self.last = now
            self.stream.write(self._line(received))
            self.stream.flush()

    def finish(self, received: int) -> None:
        if self.show:
            self.stream.write(self._line(received) + '\n')
            self.stream.flush()
