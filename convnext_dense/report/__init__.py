"""``convnext-dense report``: one HTML page that shows how a model trained and where it fails.

Modules, by concern:

- ``workdir``: what an mmengine work dir holds (runs, scalars, logs, the dumped config);
- ``results``: the results of ``test --out`` and the note it writes beside them;
- ``facts``: the run's config and its differences from its ``_base_``, params / FLOPs, weights, time;
- ``schedule``: the lr schedule a config declares, replayed with mmengine's schedulers;
- ``curves``: training curves of one or more runs and their metric deltas;
- ``detection``, ``error_analysis``: pycocotools per-class AP, PR curves, confusion, the COCO error breakdown;
- ``segmentation``: pixel confusion, per-class IoU / accuracy (as mmseg's IoUMetric), per-image mIoU;
- ``painting``: images painted by mmdet's / mmseg's visualizer, ground truth | prediction;
- ``figures``, ``html``: the pictures and the page; ``det_section``, ``seg_section``, ``page``: the page's parts.

Entry points: :func:`convnext_dense.report.page.write_report` (the command) and
:func:`convnext_dense.report.results.write_results_info` (called by ``test --out``). This file imports
nothing, so that ``test`` loads the small results module only, not matplotlib and the page's modules.
"""
