"""``behaviorvlm export`` / ``import-labels``: hand a project to SLEAP, DeepLabCut, anipose or a
behavior table, and take SLEAP / DeepLabCut labels in."""

from __future__ import annotations

import argparse

from napari_behaviorvlm.core.project import load_project
from napari_behaviorvlm.io.registry import FORMATS, export_project

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction) -> None:
    formats = "\n".join(f"  {f.name:9s} {f.description}" for f in FORMATS.values())
    parser = subparsers.add_parser(
        "export",
        help="export a project to SLEAP (.slp), DeepLabCut, anipose or behavior tables",
        description=(
            "Write a project's labels and segments in the formats other tools read.\n\n"
            f"Formats:\n{formats}\n  all       every format, each in OUT/<format>/\n\n"
            "Existing files are never replaced unless --overwrite is given. Labels still "
            "flagged for review are exported as they are, with a warning that counts them."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("project", help="project file (.bvlm)")
    parser.add_argument("--to", required=True, choices=[*FORMATS, "all"],
                        help="format to write")
    parser.add_argument("out", help="output folder")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace files that already exist")
    parser.add_argument("--embed-frames", action="store_true",
                        help="slp: embed the images of labeled frames in the .slp")
    parser.add_argument("--no-images", action="store_true",
                        help="dlc: do not write labeled-data images (no videos needed)")
    parser.set_defaults(func=_run_export)

    imp = subparsers.add_parser(
        "import-labels",
        help="take SLEAP (.slp) or DeepLabCut (CollectedData) labels into a project",
        description=(
            "Read another tool's labels (SLEAP .slp user instances, DeepLabCut CollectedData "
            ".h5/.csv or a DLC project folder) into a project, as seed labels (default) or as "
            "reviewed human labels (truth). Cameras, individuals and keypoints are matched by "
            "name; video frames are shifted by each camera's frame offset."
        ),
    )
    imp.add_argument("project", help="project file (.bvlm)")
    imp.add_argument("labels", help=".slp file, CollectedData .h5/.csv, or DLC project folder")
    imp.add_argument("--as", dest="as_", choices=["seed", "human"], default="seed",
                     help="source given to the imported labels (default: seed)")
    imp.add_argument("--out", help="write the updated project here")
    imp.add_argument("--in-place", action="store_true", help="update PROJECT itself")
    imp.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    imp.set_defaults(func=_run_import)


def _run_export(args: argparse.Namespace) -> int:
    project = load_project(args.project)
    report = export_project(project, args.to, args.out, overwrite=args.overwrite,
                            embed_frames=args.embed_frames, images=not args.no_images)
    print(report.summary())
    return 0


def _run_import(args: argparse.Namespace) -> int:
    from napari_behaviorvlm.core.atomic import check_overwrite
    from napari_behaviorvlm.core.pose import Source
    from napari_behaviorvlm.io.registry import import_labels

    if args.out is None and not args.in_place:
        raise ValueError("give --out NEW.bvlm, or --in-place to update PROJECT itself")
    out = args.project if args.in_place else args.out
    if not args.in_place:
        check_overwrite(out, args.overwrite)
    project = load_project(args.project)
    source = Source.SEED if args.as_ == "seed" else Source.HUMAN
    n = import_labels(project, args.labels, source=source)
    project.save(out)
    print(f"imported {n} labels from {args.labels} as {args.as_} labels into {out}")
    return 0
