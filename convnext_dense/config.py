"""Configs: where ours are, how a config argument (a path or a name) becomes a loaded config, which task a
config is for, and the edits single-process tools make to it.

The configs ship inside the installed package (``convnext_dense/configs/``); in a clone or an editable
install they are the repository's ``configs/`` folder. Every config argument of the command line and of
:func:`convnext_dense.apis.init_model` takes either a file path or a name relative to that folder, with or
without ``configs/`` and ``.py``: ``det/cascade_convnext_t_3x``.

A config of your own inherits one of ours through its absolute path, which ``convnext-dense config-path NAME``
prints (or :func:`config_path` returns)::

    _base_ = ['/.../site-packages/convnext_dense/configs/det/mask_rcnn_convnext_t_3x.py']
"""
import ast
import difflib
import os.path as osp
from pathlib import Path
from typing import Any, List, Optional, Tuple, Union

from mmengine.config import Config

from convnext_dense.errors import ConfigError

PACKAGE_DIR = Path(__file__).resolve().parent
#: Config file kinds mmengine reads.
CONFIG_SUFFIXES = ('.py', '.json', '.yaml', '.yml')
#: ``default_scope`` -> task: the scope decides which of mmdet and mmseg builds and runs the config.
TASKS = {'mmdet': 'det', 'mmseg': 'seg'}
#: Norm types that need a process group, replaced by ``'BN'`` in single-process builds.
SYNC_BN_TYPES = ('SyncBN', 'MMSyncBN')


def config_root() -> Path:
    """The folder holding ``_base_/``, ``det/``, ``seg/``: shipped in the package, else the clone's."""
    for root in (PACKAGE_DIR / 'configs', PACKAGE_DIR.parent / 'configs'):
        if (root / '_base_').is_dir():
            return root
    raise ConfigError(f'no configs found in {PACKAGE_DIR / "configs"} or {PACKAGE_DIR.parent / "configs"}; '
                      f'reinstall convnext_dense from a wheel or a clone')


def config_names() -> List[str]:
    """Names of the shipped configs (``det/cascade_convnext_t_3x``, ...), ``_base_`` files excluded."""
    root = config_root()
    return sorted(str(path.relative_to(root).with_suffix('')) for path in root.rglob('*.py')
                  if '_base_' not in path.relative_to(root).parts)


def config_path(name_or_path: Union[str, Path]) -> str:
    """Returns the config file a path or a name refers to.

    Args:
        name_or_path: An existing file, or a name such as ``det/cascade_convnext_t_3x`` (``configs/`` prefix
            and ``.py`` suffix optional).

    Raises:
        ConfigError: A folder, a file of a kind mmengine cannot read, or an unknown name (close matches are
            listed).
    """
    text = str(name_or_path)
    path = Path(text).expanduser()
    if path.is_dir():
        raise ConfigError(f'config {text} is a folder; pass a config file or a name such as '
                          f'det/mask_rcnn_convnext_t_3x')
    if path.is_file():
        if path.suffix not in CONFIG_SUFFIXES:
            raise ConfigError(f'config {text} is a {path.suffix or "suffix-less"} file; configs are Python (.py), '
                              f'JSON or YAML files')
        return osp.abspath(path)
    name = text[len('configs/'):] if text.startswith('configs/') else text
    root = config_root()
    for candidate in (root / name, root / f'{name}.py'):
        if candidate.is_file():
            return str(candidate)
    names = config_names()
    close = difflib.get_close_matches(name[:-3] if name.endswith('.py') else name, names, n=3, cutoff=0.4)
    close += [n for n in names if n.split('/')[-1] == Path(name).stem and n not in close]
    hint = f'close matches: {", ".join(close)}' if close else 'list them with: convnext-dense config-path --list'
    raise ConfigError(f'config {text} not found: no such file and no such config name; {hint}')


def _base_files(path: str) -> List[str]:
    """The local ``_base_`` files of a Python config, read without running it."""
    try:
        tree = ast.parse(Path(path).read_text(encoding='utf-8'))
    except (OSError, SyntaxError, ValueError):
        return []
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, 'id', None) == '_base_' for t in node.targets):
            try:
                bases = ast.literal_eval(node.value)
            except ValueError:
                return []
            bases = [bases] if isinstance(bases, str) else list(bases)
            return [osp.join(osp.dirname(path), base) for base in bases if '::' not in base]
    return []


def find_syntax_error(path: str, seen: Optional[set] = None) -> Optional[Tuple[str, int, str]]:
    """``(file, line, message)`` of the first Python syntax error in a config or its ``_base_`` files."""
    seen = set() if seen is None else seen
    if path in seen or not path.endswith('.py') or not osp.isfile(path):
        return None
    seen.add(path)
    try:
        ast.parse(Path(path).read_text(encoding='utf-8'), filename=path)
    except SyntaxError as error:
        return path, int(error.lineno or 0), str(error.msg)
    for base in _base_files(path):
        found = find_syntax_error(base, seen)
        if found:
            return found
    return None


def load_config(name_or_path: Union[str, Path]) -> Config:
    """Resolves ``name_or_path`` (see :func:`config_path`) and reads it with mmengine's ``Config.fromfile``.

    Raises:
        ConfigError: See :func:`config_path`; also a syntax error (file and line named) or a missing
            ``_base_`` file.
    """
    path = config_path(name_or_path)
    try:
        return Config.fromfile(path)
    except SyntaxError as error:
        found = find_syntax_error(path)
        where = f'{found[0]} line {found[1]}: {found[2]}' if found else str(error).splitlines()[0]
        raise ConfigError(f'config {path} has a Python syntax error in {where}; fix that line') from error
    except FileNotFoundError as error:
        raise ConfigError(f'config {path}: {error}; fix its _base_ paths (relative to the file)') from error


def task_of(cfg: Config) -> str:
    """``'det'`` or ``'seg'``, from the config's ``default_scope`` (``mmdet`` or ``mmseg``).

    Raises:
        ConfigError: Any other scope; the message names the config file and the two that work.
    """
    scope = cfg.get('default_scope')
    if scope not in TASKS:
        raise ConfigError(f"{cfg.filename}: default_scope is {scope!r}; set default_scope='mmdet' (detection) "
                          f"or 'mmseg' (segmentation)")
    return TASKS[scope]


def syncbn_to_bn(node: Any) -> Any:
    """Returns a copy of a config node with every SyncBN ``type`` replaced by ``'BN'``.

    Analysis tools build a config's model in one process, often on the CPU, where SyncBN cannot run: it needs
    a process group. Plain BN has the same parameters, FLOPs and per-device cost.

    Args:
        node: A (nested) model config: dicts, lists and tuples are copied, other values kept as they are.
    """
    if isinstance(node, dict):
        return {key: ('BN' if key == 'type' and value in SYNC_BN_TYPES else syncbn_to_bn(value))
                for key, value in node.items()}
    if isinstance(node, (list, tuple)):
        return type(node)(syncbn_to_bn(item) for item in node)
    return node
