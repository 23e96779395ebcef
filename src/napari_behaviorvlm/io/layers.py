"""Keypoint Points-layer content (napari form) back to a :class:`PoseTable` (no napari import).

A keypoint layer holds ``data`` ``(N, 3)`` = ``[frame, y, x]`` and features ``keypoint``,
``individual`` (categoricals whose categories are the full name lists, in order), ``confidence``
(0..1) and ``source`` (``seed``/``human``/``model``/``none``); see
:func:`napari_behaviorvlm.core.labeling.points_layer_data`, whose inverse this is.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from napari_behaviorvlm.core.pose import PoseTable, Source
from napari_behaviorvlm.io._common import FormatError

__all__ = ["pose_table_from_points"]

_SOURCES = {s.name.lower(): s for s in Source}


def _names(column: pd.Series) -> list[str]:
    if isinstance(column.dtype, pd.CategoricalDtype):
        return [str(c) for c in column.cat.categories]
    return [str(c) for c in dict.fromkeys(column.astype(str))]


def pose_table_from_points(data: np.ndarray, features: pd.DataFrame, camera: str,
                           n_frames: int | None = None) -> PoseTable:
    """A one-camera :class:`PoseTable` from a keypoint layer's ``data`` and ``features``.

    Args:
        data: ``(N, 3)`` ``[frame, y, x]`` (px); frames are rounded to integers.
        features: ``N`` rows with ``keypoint`` (required), ``individual``, ``confidence``,
            ``source`` (missing columns: one individual ``individual0``, confidence 1, source
            human).
        camera: Camera name of the table. n_frames: default ``max frame + 1``.

    Raises:
        FormatError: no ``keypoint`` feature, a negative frame, or an unknown source name.
    """
    data = np.asarray(data, dtype=np.float64).reshape(-1, 3)
    if "keypoint" not in features.columns:
        raise FormatError("the points layer has no 'keypoint' feature: it is not a keypoint layer")
    if len(features) != len(data):
        raise FormatError(f"the layer has {len(data)} points but {len(features)} feature rows")
    frames = np.rint(data[:, 0]).astype(int)
    if (frames < 0).any():
        raise FormatError("the layer has points on negative frames")
    keypoints = _names(features["keypoint"])
    individuals = _names(features["individual"]) if "individual" in features.columns \
        else ["individual0"]
    n_frames = int(frames.max()) + 1 if n_frames is None and len(frames) else int(n_frames or 0)
    table = PoseTable.empty([camera], n_frames, individuals, keypoints)
    k = features["keypoint"].astype(str).map({n: i for i, n in enumerate(keypoints)}).to_numpy(int)
    m = (features["individual"].astype(str).map({n: i for i, n in enumerate(individuals)})
         .to_numpy(int) if "individual" in features.columns else np.zeros(len(data), int))
    if "source" in features.columns:
        names = features["source"].astype(str).str.lower()
        unknown = sorted(set(names) - set(_SOURCES))
        if unknown:
            raise FormatError(f"unknown source names {unknown}; expected {sorted(_SOURCES)}")
        source = names.map(lambda s: int(_SOURCES[s])).to_numpy(np.int8)
    else:
        source = np.full(len(data), int(Source.HUMAN), np.int8)
    conf = features["confidence"].to_numpy(np.float32) if "confidence" in features.columns \
        else np.ones(len(data), np.float32)
    table.points2d[0, frames, m, k] = data[:, [2, 1]]
    table.source[0, frames, m, k] = source
    table.confidence[0, frames, m, k] = np.where(np.isin(source, (Source.SEED, Source.HUMAN)),
                                                 1.0, conf)
    return table
