"""Edits of model configs shared by the analysis tools (FLOPs counters, benchmark).

They build a config's model in one process, often on the CPU, where SyncBN cannot run: it needs a process
group. Plain BN has the same parameters, FLOPs and per-device cost.
"""
from typing import Any

#: Norm types that need a process group, replaced by ``'BN'`` in single-process builds.
SYNC_BN_TYPES = ('SyncBN', 'MMSyncBN')


def syncbn_to_bn(node: Any) -> Any:
    """Returns a copy of a config node with every SyncBN ``type`` replaced by ``'BN'``.

    Args:
        node: A (nested) model config: dicts, lists and tuples are copied, other values kept as they are.
    """
    if isinstance(node, dict):
        return {key: ('BN' if key == 'type' and value in SYNC_BN_TYPES else syncbn_to_bn(value))
                for key, value in node.items()}
    if isinstance(node, (list, tuple)):
        return type(node)(syncbn_to_bn(item) for item in node)
    return node
