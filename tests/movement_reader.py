"""Read an exported file with movement, the independent reader of the export tests."""

from __future__ import annotations

from pathlib import Path

import xarray as xr

try:
    from movement.io import load_dataset

    MOVEMENT_READS_LABEL_FILES = True
except ImportError:  # movement < 0.14
    from movement.io.load_poses import from_file as load_dataset

    MOVEMENT_READS_LABEL_FILES = False
# Whether the installed movement reads DeepLabCut label files (``CollectedData_*.h5``, without
# a likelihood column): the movement with ``load_dataset`` does; 0.0.23, the newest for
# Python 3.10, reads prediction files only.


def read_with_movement(path: str | Path, source_software: str) -> xr.Dataset:
    """movement's poses dataset for ``path``, with ``position`` as ``(time, space, keypoints,
    individuals)`` and ``confidence`` as ``(time, keypoints, individuals)`` whatever movement is
    installed: ``movement.io.load_dataset`` from 0.14 on, ``load_poses.from_file`` before (the
    newest movement for Python 3.10 is 0.0.23, whose arrays put ``space`` last); movement 0.17's
    ``keypoint`` / ``individual`` dimensions renamed to the plural."""
    ds = load_dataset(path, source_software=source_software)
    plural = {"keypoint": "keypoints", "individual": "individuals"}  # movement 0.17's names
    ds = ds.rename({old: new for old, new in plural.items() if old in ds.dims})
    return ds.transpose("time", "space", "keypoints", "individuals", missing_dims="ignore")
