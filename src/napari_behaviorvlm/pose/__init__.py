"""Few-shot QD keypoint labeling (see ``docs/pose-pipeline.md``).

- :mod:`.candidates`: stage 0, QD dot detection (``detect_candidates``).
- :mod:`.reasoner`: stages 1-3 (``Reasoner``, ``LocalReasoner``, ``harmonize``);
  :mod:`.vlm_reasoner`: ``VLMReasoner`` and ``HybridReasoner``.
- :mod:`.refine`: stage 4, confidence and flags.
- :mod:`.pipeline`: ``LabelingConfig``, ``run_labeling``, ``retriangulate_frame``.
- :mod:`.metrics`, :mod:`.benchmark`, :mod:`.commands`: scoring, ``bench pose``, ``label``.

Nothing heavy is imported here; import the submodules.
"""
