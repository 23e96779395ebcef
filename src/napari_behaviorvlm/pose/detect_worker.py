"""Candidate detection (stage 0) in a helper process, beside the labeling.

Stages 1-4 are Python-bound and hold the GIL. Decoding and detection take about as long again
(2-3 ms per view-frame), yet in a thread of the labeling process they only slow the labeling
down: on the 2-core benchmark a prefetch thread made a 1-mouse run 15 % slower, not faster.
A helper process has its own interpreter, so on a second core it detects the candidates of
the next block of frames while the labeling works through the current one.

The helper is a plain ``python -m napari_behaviorvlm.pose.detect_worker`` child (no
``multiprocessing``: a user's script is never re-imported, and nothing is forked from a
threaded GUI). Parent and child exchange pickled messages over the child's stdin/stdout:

- parent -> child: ``(session, params)`` once; then lists of session frames; then ``None``.
- child -> parent: per list, ``("ok", {(camera, frame): (xy, peak, area)})`` with every
  camera's candidates of those frames, or ``("error", message)``.

It opens the session's videos itself and runs the same :func:`detect_candidates`, so its
candidates are the ones the labeling process would find. Anything that goes wrong (the child
cannot start, a video error, a broken pipe) ends the helper; the labeling then detects in
its own process, as without a helper, and a video error is raised there with its message.
"""

from __future__ import annotations

import logging
import os
import pickle
import subprocess
import sys
from collections.abc import Sequence
from typing import Any, BinaryIO

from napari_behaviorvlm.pose.candidates import (
    CandidateParams,
    Candidates,
    detect_candidates,
    detection_image,
)

__all__ = ["DetectionWorker"]

log = logging.getLogger(__name__)


class DetectionWorker:
    """A helper process that detects the candidates of a session's frames.

    Args:
        session: The session (its videos are opened by the helper).
        params: Detection parameters.

    Raises:
        OSError: the helper process cannot be started.
        pickle.PicklingError: the session cannot be sent (the helper is ended).
    """

    def __init__(self, session: Any, params: CandidateParams) -> None:
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "napari_behaviorvlm.pose.detect_worker"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        try:
            self._send((session, params))
        except BaseException:
            self._proc.kill()
            self.close()
            raise

    def _send(self, message: Any) -> None:
        assert self._proc.stdin is not None
        pickle.dump(message, self._proc.stdin, protocol=pickle.HIGHEST_PROTOCOL)
        self._proc.stdin.flush()

    def detect(self, frames: Sequence[int]) -> dict[tuple[int, int], Candidates] | None:
        """Every camera's candidates of ``frames``, keyed ``(camera, frame)``; None when the
        helper failed (it is then closed: detect in this process)."""
        try:
            self._send([int(f) for f in frames])
            assert self._proc.stdout is not None
            status, payload = pickle.load(self._proc.stdout)
        except (OSError, EOFError, pickle.UnpicklingError, ValueError) as exc:
            status, payload = "error", f"the helper process stopped ({exc!r})"
        if status != "ok":
            log.info("candidate detection continues in the labeling process: %s", payload)
            self.close()
            return None
        return {key: Candidates(*arrays) for key, arrays in payload.items()}

    def close(self) -> None:
        """End the helper process (waits a moment, then kills it)."""
        if self._proc.poll() is None:
            try:
                self._send(None)
                self._proc.stdin.close()  # type: ignore[union-attr]
                self._proc.wait(timeout=5)
            except (OSError, ValueError, subprocess.TimeoutExpired):
                self._proc.kill()
                self._proc.wait()
        for stream in (self._proc.stdin, self._proc.stdout):
            if stream is not None and not stream.closed:
                stream.close()

    @property
    def alive(self) -> bool:
        return self._proc.poll() is None


def _serve(requests: BinaryIO, replies: BinaryIO) -> None:
    import cv2

    from napari_behaviorvlm.video.session_io import open_session_videos

    cv2.setNumThreads(1)  # one core: the labeling process has the other
    session, params = pickle.load(requests)
    videos = open_session_videos(session)
    while True:
        frames = pickle.load(requests)
        if frames is None:
            return
        try:
            found = {}
            for c, video in enumerate(videos):
                for f in sorted(frames):
                    cand = detect_candidates(detection_image(video[f]), params)
                    found[(c, f)] = (cand.xy, cand.peak, cand.area)
            reply: tuple[str, Any] = ("ok", found)
        except Exception as exc:  # reported to the parent, which detects in its own process
            reply = ("error", f"{type(exc).__name__}: {exc}")
        pickle.dump(reply, replies, protocol=pickle.HIGHEST_PROTOCOL)
        replies.flush()


def main() -> None:
    """The helper's entry point: serve requests on stdin, reply on stdout (anything else a
    library prints goes to stderr)."""
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    try:
        _serve(sys.stdin.buffer, replies)
    except (EOFError, BrokenPipeError, KeyboardInterrupt):
        pass
    except pickle.UnpicklingError:
        sys.exit("napari_behaviorvlm.pose.detect_worker is the labeling's helper process: it "
                 "reads pickled requests from run_labeling, not input typed by hand")


if __name__ == "__main__":
    main()
