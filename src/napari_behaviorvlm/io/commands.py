"""``behaviorvlm export``: hand a project to SLEAP, DeepLabCut, anipose or a behavior table."""

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


def _run_export(args: argparse.Namespace) -> int:
    project = load_project(args.project)
    report = export_project(project, args.to, args.out, overwrite=args.overwrite,
                            embed_frames=args.embed_frames, images=not args.no_images)
    print(report.summary())
    return 0
