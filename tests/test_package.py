"""The package as a whole: plugin manifest, CLI help, and the core's independence from Qt."""

from __future__ import annotations

import argparse
import pkgutil
import subprocess
import sys

import pytest

import napari_behaviorvlm
from napari_behaviorvlm.cli import build_parser, main

CORE_PACKAGES = ["core", "video", "geometry", "pose", "vlm", "behavior", "io", "synth"]


def test_npe2_manifest_validates():
    result = subprocess.run(
        ["npe2", "validate", "napari-behaviorvlm"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "valid" in result.stdout


def test_manifest_is_registered_and_shipped():
    from importlib.metadata import distribution

    dist = distribution("napari-behaviorvlm")
    eps = [ep for ep in dist.entry_points if ep.group == "napari.manifest"]
    assert [ep.value for ep in eps] == ["napari_behaviorvlm:napari.yaml"]
    assert "Framework :: napari" in dist.metadata.get_all("Classifier")
    requires = " ".join(dist.requires or [])
    for qt in ("PyQt5", "PySide", "PyQt6"):
        core_reqs = [r for r in (dist.requires or []) if "extra ==" not in r]
        assert not any(r.startswith(qt) for r in core_reqs), f"{qt} must be an extra, not core"
    assert "sleap-io" in requires and "av" in requires


def _subcommand_paths(parser: argparse.ArgumentParser, prefix=()):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield prefix + (name,)
                yield from _subcommand_paths(sub, prefix + (name,))


def test_every_subcommand_has_help(capsys):
    paths = list(_subcommand_paths(build_parser()))
    assert ("bench",) in paths
    for path in paths:
        with pytest.raises(SystemExit) as exc:
            main([*path, "--help"])
        assert exc.value.code == 0
        out = capsys.readouterr().out
        assert "usage: behaviorvlm " + " ".join(path) in out


def test_core_never_imports_qt_or_napari():
    modules = ["napari_behaviorvlm.cli"]  # the CLI must start without a display
    for name in CORE_PACKAGES:
        pkg = __import__(f"napari_behaviorvlm.{name}", fromlist=["_"])
        modules.append(pkg.__name__)
        modules += [m.name for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + ".")]
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}:\n"
        "    importlib.import_module(m)\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('napari', 'qtpy', 'PyQt5', 'PyQt6', 'PySide2', 'PySide6', 'magicgui'))\n"
        "print(','.join(bad))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "", f"core imports Qt/napari: {result.stdout}"


def test_cli_entry_point_runs():
    result = subprocess.run(["behaviorvlm", "--version"], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0
    assert napari_behaviorvlm.__version__ in result.stdout


def test_every_core_module_imports_on_its_own():
    """No import cycle: each module imports first, in a clean package state."""
    modules = []
    for name in CORE_PACKAGES:
        pkg = __import__(f"napari_behaviorvlm.{name}", fromlist=["_"])
        modules += [m.name for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + ".")]
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}:\n"
        "    for k in [k for k in sys.modules if k.startswith('napari_behaviorvlm')]:\n"
        "        del sys.modules[k]\n"
        "    importlib.import_module(m)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
