"""ConvNeXt checkpoints: reading, the table of layouts, renaming, one report and one fit check.

- :mod:`.read`: :func:`read_checkpoint`, the one reader of checkpoint sources (local files, URLs, Hugging Face
  Hub names, mmengine's schemes), and the hand-over that lets a checked file be read once.
- :mod:`.formats`: safetensors files and torch pickles, read and written (:func:`read_weights_file`).
- :mod:`.hub`: ``hf-hub:ORG/NAME[@REVISION]`` names through huggingface_hub's cache (:func:`resolve_hub_name`).
- :mod:`.layouts`: the one table of layouts (:data:`LAYOUTS`: detect, rename to ours and back, a
  description and an example key per entry); :mod:`.fcmae` and :mod:`.library_layouts` (torchvision,
  Hugging Face transformers) hold the functions of some entries.
- :mod:`.convert`: a checkpoint of any layout as our backbone's tensors (:func:`convert_state_dict`).
- :mod:`.whole_model`: the backbones inside a detector's or segmentor's checkpoint, renamed in place.
- :mod:`.report`: the one :class:`LoadReport`, the one comparison and the one misfit explanation.
- :mod:`.fit`: :func:`check_fit`, used by every load: :func:`load_pretrained` (``init_cfg``),
  ``apis.init_model``, ``test``, ``--resume`` and ``convert``.

The package reads and renames; it never imports the model (it finds a model's backbones by their
parameter names), so ``models/`` imports it and not the other way round.
"""
from convnext_dense.checkpoint.convert import (Conversion, convert_fcmae, convert_state_dict, from_ours, guess_arch,
                                               model_state_dict, select_prefix, strip_wrapper_prefixes,
                                               unwrap_checkpoint)
from convnext_dense.checkpoint.fit import check_fit, load_pretrained, match, rename_foreign_keys_hook
from convnext_dense.checkpoint.formats import read_weights_file, write_safetensors
from convnext_dense.checkpoint.hub import is_hub_name, resolve_hub_name
from convnext_dense.checkpoint.layouts import (LAYOUTS, WRITABLE_LAYOUTS, Layout, detect_layout, to_facebook,
                                              to_mmpretrain, to_timm)
from convnext_dense.checkpoint.read import (check_local_checkpoint, is_remote, keep_for_next_read,
                                            read_checkpoint, read_local_checkpoint)
from convnext_dense.checkpoint.report import LoadReport, compare, explain_misfit, summarize_keys, summarize_mismatches
from convnext_dense.checkpoint.whole_model import (BackboneRename, backbone_prefixes, rename_backbone,
                                                   rename_whole_model)

__all__ = [
    'BackboneRename', 'Conversion', 'LAYOUTS', 'Layout', 'LoadReport', 'WRITABLE_LAYOUTS', 'backbone_prefixes',
    'check_fit', 'check_local_checkpoint', 'compare', 'convert_fcmae', 'convert_state_dict', 'detect_layout',
    'explain_misfit', 'from_ours', 'guess_arch', 'is_hub_name', 'is_remote', 'keep_for_next_read',
    'load_pretrained', 'match', 'model_state_dict', 'read_checkpoint', 'read_local_checkpoint', 'read_weights_file', 'rename_backbone',
    'rename_foreign_keys_hook', 'rename_whole_model', 'resolve_hub_name', 'select_prefix', 'strip_wrapper_prefixes',
    'summarize_keys', 'summarize_mismatches', 'to_facebook', 'to_mmpretrain', 'to_timm', 'unwrap_checkpoint',
    'write_safetensors',
]
