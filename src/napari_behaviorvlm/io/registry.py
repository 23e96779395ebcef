"""Export formats by name, and :func:`export_project` that runs one (or all) of them.

Each format writes into an output folder and returns the files it wrote::

    report = export_project(project, "dlc", "out/dlc")
    print(report.summary())     # files written, and how many labels are still flagged

Formats: ``slp`` (SLEAP labels + analysis HDF5 per camera), ``dlc`` (DeepLabCut project),
``anipose`` (anipose project with 2D, calibration and 3D), ``segments`` (bout CSV + BORIS
table). ``all`` runs every format into ``<out>/<format>/``. Exporting never blocks on labels
still flagged for review: the report counts them and says so.

:func:`import_labels` takes labels in: a SLEAP ``.slp`` or DeepLabCut CollectedData as seed
labels or as reviewed (human) truth.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import attrs
import numpy as np

from napari_behaviorvlm.core.pose import PoseTable, Source
from napari_behaviorvlm.core.project import Project
from napari_behaviorvlm.io._common import check_all_writable, count_unreviewed_flags, project_stem

__all__ = [
    "FORMATS", "ExportFormat", "ExportReport", "export_project", "import_labels", "read_labels",
    "register_format",
]


@attrs.frozen
class ExportFormat:
    """A named exporter: ``export(project, out_dir, overwrite, **options) -> files``."""

    name: str
    description: str
    export: Callable[..., list[Path]]
    needs_calibration: bool = False


@attrs.define
class ExportReport:
    """What an export did.

    Attributes:
        formats: Formats run. out: output folder. files: every file written.
        unreviewed_flags: Labels still flagged for review at export time (exported as they are).
        warnings: Human-readable notes (flagged labels, formats skipped and why).
    """

    formats: list[str]
    out: Path
    files: list[Path] = attrs.field(factory=list)
    unreviewed_flags: int = 0
    warnings: list[str] = attrs.field(factory=list)

    def summary(self) -> str:
        lines = [f"exported {', '.join(self.formats)} to {self.out}: {len(self.files)} files"]
        lines += [f"  {p}" for p in self.files]
        lines += [f"warning: {w}" for w in self.warnings]
        return "\n".join(lines)


def _export_slp(project: Project, out: Path, overwrite: bool, embed_frames: bool = False,
                **_: object) -> list[Path]:
    from napari_behaviorvlm.io.sleap import export_sleap_analysis_h5, export_slp

    stem = project_stem(project)
    slp = out / f"{stem}.slp"
    analysis = [out / f"{stem}.{c}.analysis.h5" for c in project.poses.camera_names]
    check_all_writable([slp, *analysis], overwrite)
    return [export_slp(project, slp, embed_frames=embed_frames, overwrite=overwrite),
            *export_sleap_analysis_h5(project, out, overwrite=overwrite, stem=stem)]


def _export_dlc(project: Project, out: Path, overwrite: bool, images: bool = True,
                **_: object) -> list[Path]:
    from napari_behaviorvlm.io.dlc import export_dlc_project

    return export_dlc_project(project, out, images=images, overwrite=overwrite)


def _export_anipose(project: Project, out: Path, overwrite: bool, **_: object) -> list[Path]:
    from napari_behaviorvlm.io.anipose import export_anipose

    return export_anipose(project, out, overwrite=overwrite)


def _export_segments(project: Project, out: Path, overwrite: bool, **_: object) -> list[Path]:
    from napari_behaviorvlm.io.segments_io import write_boris_table, write_segments_csv

    stem = project_stem(project)
    csv, boris = out / f"{stem}.segments.csv", out / f"{stem}.boris.csv"
    check_all_writable([csv, boris], overwrite)
    session = project.session
    media = str(session.video_paths()[0]) if session.cameras else ""
    return [
        write_segments_csv(project.segments, csv, session.fps, overwrite=overwrite),
        write_boris_table(project.segments, boris, session.fps, media_file=media,
                          observation_id=stem, n_frames=session.n_frames, overwrite=overwrite),
    ]


FORMATS: dict[str, ExportFormat] = {}


def register_format(fmt: ExportFormat) -> None:
    """Add (or replace) an export format."""
    FORMATS[fmt.name] = fmt


register_format(ExportFormat("slp", "SLEAP labels (.slp) and one analysis HDF5 per camera",
                             _export_slp))
register_format(ExportFormat("dlc", "DeepLabCut project: config.yaml, labeled-data images, "
                                    "CollectedData, machine labels", _export_dlc))
register_format(ExportFormat("anipose", "anipose project: calibration.toml, 2D per camera, "
                                        "3D CSV", _export_anipose, needs_calibration=True))
register_format(ExportFormat("segments", "behavior bouts: CSV and a BORIS tabular table",
                             _export_segments))


def export_project(project: Project, to: str, out: str | Path, overwrite: bool = False,
                   **options: object) -> ExportReport:
    """Export ``project`` in format ``to`` (a name in :data:`FORMATS`, or ``all``) into ``out``.

    Args:
        options: Passed to the format: ``embed_frames`` (slp), ``images`` (dlc).

    Returns:
        An :class:`ExportReport`; labels still flagged for review are counted and warned about,
        never a reason to refuse.

    Raises:
        ValueError: unknown format. FileExistsError: an output exists and ``overwrite`` is False.
    """
    out = Path(out)
    if to == "all":
        names = list(FORMATS)
    elif to in FORMATS:
        names = [to]
    else:
        raise ValueError(f"unknown export format {to!r}; choose one of {[*FORMATS, 'all']}")
    report = ExportReport(formats=[], out=out,
                          unreviewed_flags=count_unreviewed_flags(project.poses))
    for name in names:
        fmt = FORMATS[name]
        if fmt.needs_calibration and project.session.calibration is None:
            if to != "all":
                raise ValueError(f"{name} export needs a calibrated session; calibrate first")
            report.warnings.append(f"{name} skipped: the session has no calibration")
            continue
        target = out / name if to == "all" else out
        report.files += fmt.export(project, target, overwrite, **options)
        report.formats.append(name)
    if report.unreviewed_flags:
        report.warnings.append(
            f"{report.unreviewed_flags} labels are still flagged for review and were exported "
            "as they are (review them in napari, then export again)")
    return report


def read_labels(path: str | Path, project: Project, source: Source = Source.SEED) -> PoseTable:
    """Labels of another tool in ``project``'s shape: ``.slp`` (user instances) or DeepLabCut
    (``CollectedData`` ``.h5``/``.csv``, or a DLC project folder).

    Raises:
        ValueError: a file type no importer reads.
    """
    path = Path(path)
    if path.suffix == ".slp":
        from napari_behaviorvlm.io.sleap import import_slp

        return import_slp(path, project, source=source)
    if path.is_dir() or path.suffix.lower() in (".h5", ".hdf5", ".csv"):
        from napari_behaviorvlm.io.dlc import import_dlc

        return import_dlc(path, project, source=source)
    raise ValueError(f"{path}: no importer for {path.suffix or 'this'} files; use a SLEAP .slp, "
                     "a DeepLabCut CollectedData .h5/.csv or a DeepLabCut project folder")


def import_labels(project: Project, path: str | Path, source: Source = Source.SEED) -> int:
    """Put another tool's labels into ``project.poses`` (in place) as ``source`` labels
    (``SEED`` to start from them, ``HUMAN`` as reviewed truth): every imported point replaces
    what the table held there, with confidence 1 and no flag. Returns the number of points."""
    table = read_labels(path, project, source=source)
    mask = table.labeled_mask() & np.isin(table.source, (Source.SEED, Source.HUMAN))
    poses = project.poses
    poses.points2d[mask] = table.points2d[mask]
    poses.source[mask] = table.source[mask]
    poses.confidence[mask] = 1.0
    poses.flags[mask] = 0
    poses.reproj_error[mask] = np.nan
    return int(mask.sum())
