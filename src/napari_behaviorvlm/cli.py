"""The ``behaviorvlm`` command.

Each area of the package contributes its subcommands from its own ``commands`` module, which
defines ``register(subparsers)`` (top-level subcommands) and optionally
``register_bench(bench_subparsers)`` (``behaviorvlm bench ...`` targets). A handler is a function
``(args) -> int`` stored with ``parser.set_defaults(func=...)``; what an interrupted command
kept is said by its ``on_interrupt`` default (a text, or a function of the arguments that
returns one).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from napari_behaviorvlm import __version__

__all__ = ["build_parser", "main"]

COMMAND_MODULES: list[str] = [
    "napari_behaviorvlm.synth.commands",
    "napari_behaviorvlm.geometry.commands",
    "napari_behaviorvlm.video.commands",
    "napari_behaviorvlm.vlm.commands",
    "napari_behaviorvlm.io.commands",
    "napari_behaviorvlm.behavior.commands",
    "napari_behaviorvlm.pose.commands",
    "napari_behaviorvlm.demo",
    "napari_behaviorvlm.napari.commands",
]


class CommandError(Exception):
    """An error the user can fix; printed without a traceback, exit status 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="behaviorvlm",
        description="Few-shot multi-camera keypoints and behavior segments for mice.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    bench = subparsers.add_parser(
        "bench", help="measure speed and accuracy (video, triangulate, pose, behavior)",
        description="Benchmarks: each prints a table and can write --json FILE.",
    )
    bench_subparsers = bench.add_subparsers(dest="bench_target", metavar="TARGET")
    bench.set_defaults(func=lambda args: _print_help(bench))
    for module_name in COMMAND_MODULES:
        module = importlib.import_module(module_name)
        module.register(subparsers)
        if hasattr(module, "register_bench"):
            module.register_bench(bench_subparsers)
    return parser


def _print_help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 0


def _interrupt_note(args: argparse.Namespace) -> str:
    """What an interrupted command kept (its ``on_interrupt`` default)."""
    note = getattr(args, "on_interrupt", None)
    if callable(note):
        note = note(args)
    return note or "the command did not finish; rerun it."


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print(f"\ninterrupted: {_interrupt_note(args)}", file=sys.stderr)
        return 130
    except (CommandError, FileNotFoundError, FileExistsError, ValueError, OSError) as exc:
        print(f"behaviorvlm {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
