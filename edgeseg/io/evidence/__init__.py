"""Evidence for every alarm (#24): a clip with pre-roll and post-roll, a clean and an annotated
snapshot, and retention that keeps the disk within bounds without deleting evidence still
awaiting review (#37: it raises ``evidence_at_risk`` instead).

- :mod:`~edgeseg.io.evidence.ring`: the per-camera pre-roll (decoded frames, bounded by ``pre_s``),
- :mod:`~edgeseg.io.evidence.clipfile`: one MP4 (H.264, PyAV) under a temporary name, renamed when complete,
- :mod:`~edgeseg.io.evidence.recorder`: the per-camera :class:`Recorder` (alarm events in, evidence
  fields out) and its writer thread (never the camera's or the inference thread),
- :mod:`~edgeseg.io.evidence.retention`: age / total size / free-space clean-up (never of evidence
  younger than ``clips.keep_min_hours``), temporaries of a killed run.

:class:`edgeseg.streaming.unit.StreamUnit` calls the recorder at two marked call sites, so ``edgeseg watch``
and ``edgeseg detect --clips`` write the same evidence.
"""
from __future__ import annotations

from edgeseg.io.evidence.recorder import Recorder

__all__ = ["Recorder"]
