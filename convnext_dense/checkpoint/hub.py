"""Hugging Face Hub names as checkpoint sources: ``hf-hub:ORG/NAME[@REVISION]``.

``init_cfg=dict(type='Pretrained', checkpoint='hf-hub:timm/convnext_base.dinov3_lvd1689m')`` and
``convnext-dense convert hf-hub:ORG/NAME out.pth`` fetch the repository's weights through ``huggingface_hub``
(the optional ``hub`` extra), so its cache (``HF_HUB_CACHE`` / ``HF_HOME``), offline mode
(``HF_HUB_OFFLINE=1``), token (``HF_TOKEN``, ``hf auth login``) and endpoint settings all apply: a cached file
loads without the network. The first of :data:`WEIGHT_FILES` the repository holds is taken: timm's and
transformers' ``model.safetensors``, then their torch pickle, then open_clip's files. ``hf_hub:`` (timm's
older spelling) is accepted too.
"""
import re
from typing import Any, Optional, Tuple

from convnext_dense.errors import CheckpointAccessError, CheckpointNotFoundError, ConfigError, MissingDependencyError

HUB_PREFIXES = ('hf-hub:', 'hf_hub:')
#: Weight files looked for in a repository, in this order.
WEIGHT_FILES = ('model.safetensors', 'pytorch_model.bin', 'open_clip_model.safetensors',
                'open_clip_pytorch_model.bin')
HUB_URL = 'https://huggingface.co'
_REPO_ID = re.compile(r'^[\w.-]+/[\w.-]+$')


def is_hub_name(source: Any) -> bool:
    """Whether a checkpoint source is a Hugging Face Hub name (``hf-hub:ORG/NAME[@REVISION]``).

    Args:
        source: A checkpoint path, URL or hub name.
    """
    return isinstance(source, str) and source.startswith(HUB_PREFIXES)


def parse_hub_name(source: str) -> Tuple[str, Optional[str]]:
    """Splits ``hf-hub:ORG/NAME[@REVISION]`` into the repository id and the revision (None: the default branch).

    Args:
        source: A hub name.

    Raises:
        ConfigError: ``source`` is not of that form.
    """
    name = source.split(':', 1)[1]
    repo_id, at, revision = name.partition('@')
    if not _REPO_ID.match(repo_id) or (at and not revision):
        raise ConfigError(f'checkpoint {source!r} is not a Hugging Face Hub name: write hf-hub:ORG/NAME or '
                          f'hf-hub:ORG/NAME@REVISION, e.g. hf-hub:timm/convnext_tiny.dinov3_lvd1689m.')
    return repo_id, revision or None


def hub_page(source: str) -> str:
    """The web page of a hub name's repository (``https://huggingface.co/ORG/NAME``), where its licence is
    read and accepted; any other source is returned as it is.

    Args:
        source: A checkpoint path, URL or hub name.
    """
    return f'{HUB_URL}/{parse_hub_name(source)[0]}' if is_hub_name(source) else source


def _huggingface_hub() -> Tuple[Any, Any, Any]:
    """huggingface_hub's ``hf_hub_download``, ``errors`` and ``constants``, imported when first needed: an
    optional package, whose settings (cache, offline mode) are read from the environment as it is imported."""
    try:
        from huggingface_hub import constants, errors, hf_hub_download
    except ImportError as error:
        raise MissingDependencyError(
            "hf-hub: checkpoint names need the huggingface_hub package: pip install 'convnext_dense[hub]' (or "
            'pip install huggingface_hub), or download the file and pass its path.') from error
    return hf_hub_download, errors, constants


def resolve_hub_name(source: str) -> str:
    """The local path of a hub name's weights: from the Hugging Face cache, downloaded into it when missing.

    Args:
        source: ``hf-hub:ORG/NAME[@REVISION]``.

    Returns:
        The path of the first of :data:`WEIGHT_FILES` the repository holds, inside the Hugging Face cache.

    Raises:
        MissingDependencyError: huggingface_hub is not installed.
        CheckpointAccessError: The repository is gated (its licence must be accepted first) or private.
        CheckpointNotFoundError: No such repository, revision or weight file; or the file is not cached and
            the Hub cannot be reached (offline mode or no network).
    """
    repo_id, revision = parse_hub_name(source)
    hf_hub_download, errors, constants = _huggingface_hub()

    page = hub_page(source)
    not_cached = []
    for filename in WEIGHT_FILES:
        try:
            return hf_hub_download(repo_id, filename, revision=revision)
        except errors.GatedRepoError as error:
            raise CheckpointAccessError(
                f'{source} is a gated repository: its weights come under a licence you must accept first. Open '
                f'{page} while logged in, accept the licence, then log in here (hf auth login, or set HF_TOKEN) '
                f'and run again.') from error
        except errors.RevisionNotFoundError as error:
            raise CheckpointNotFoundError(f'{source}: {repo_id} has no revision {revision!r}; see the branches, '
                                          f'tags and commits at {page}.') from error
        except errors.RepositoryNotFoundError as error:
            raise CheckpointNotFoundError(
                f'{source}: no repository {repo_id} on the Hugging Face Hub, or it is private (then log in: hf '
                f'auth login, or set HF_TOKEN). Check the name at {page}.') from error
        except errors.LocalEntryNotFoundError:  # not cached, and offline or unreachable
            not_cached.append(filename)
        except errors.EntryNotFoundError:  # the repository has no such file: try the next one
            continue
    if not_cached:
        offline = bool(getattr(constants, 'HF_HUB_OFFLINE', False))
        reason = 'HF_HUB_OFFLINE is set' if offline else 'the Hub could not be reached'
        raise CheckpointNotFoundError(
            f'{source} is not in the Hugging Face cache ({constants.HF_HUB_CACHE}) and {reason}: run once '
            f'with network access to cache it, or download {page} yourself and pass the file path.')
    raise CheckpointNotFoundError(f'{source}: {repo_id} holds none of {", ".join(WEIGHT_FILES)}; pass the path '
                                  f'of its weights file after downloading it from {page}.')
