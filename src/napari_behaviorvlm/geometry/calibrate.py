"""Multi-camera calibration from ChArUco or checkerboard views (images or videos).

Steps:

1. **Detection** of the board's inner corners in every frame of every camera
   (``cv2.aruco.CharucoDetector`` for ChArUco, ``cv2.findChessboardCorners`` + sub-pixel
   refinement for a checkerboard). A frame counts when at least ``min_corners`` corners are found.
2. **Intrinsics** per camera with ``cv2.calibrateCamera`` (OpenCV ``k1 k2 p1 p2`` model; ``k3``
   stays 0 unless ``fix_k3=False``, so the radial polynomial does not fold back inside the image).
3. **Extrinsics**: per frame, the board pose in each camera; the relative pose of two cameras is
   averaged over the frames they share, and poses are chained from the first camera over the
   camera graph (maximum spanning tree on the number of shared frames). The world frame is the
   first camera's frame (anipose's convention), in the board's unit (mm).
4. **Bundle adjustment**: robust Levenberg-Marquardt (soft-L1 loss with a 1 px scale; Jacobian
   by central differences grouped over the block structure) over every camera's intrinsics,
   distortion and extrinsics (the first camera's extrinsics stay fixed) and every frame's board
   pose, minimizing the corner reprojection error.
5. **Report** per camera and overall: reprojection error of the board model in px (median, mean,
   p95, max) after adjustment, the number of frames and corners detected, the per-camera
   ``calibrateCamera`` RMS, and the error of corners triangulated from all views that saw them.

Board file (TOML) keys, three accepted layouts (lengths in mm):

- native: ``type`` = ``"charuco"`` | ``"checkerboard"``, ``squares_x``, ``squares_y`` (numbers of
  *squares*, both types), ``square_length``, and for ChArUco ``marker_length``, ``marker_bits``
  (4-7), ``dict_size`` (50, 100, 250, 1000), optional ``legacy`` (OpenCV < 4.6 ChArUco layout).
- anipose ``config.toml`` (top level or its ``[calibration]`` table): ``board_type``,
  ``board_size = [x, y]``, ``board_square_side_length``, ``board_marker_length``,
  ``board_marker_bits``, ``board_marker_dict_number``.
- sleap-anipose ``board.toml``: ``board_x``, ``board_y``, ``square_length``, ``marker_length``,
  ``marker_bits``, ``dict_size`` (ChArUco when ``marker_length`` is present).

In the anipose and sleap-anipose layouts a checkerboard's size counts *inner corners* (as
aniposelib does); ChArUco sizes count squares in every layout.
"""

from __future__ import annotations

import glob as globmod
import re
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import attrs
import cv2
import numpy as np

from napari_behaviorvlm.core.tomlfile import read_toml
from napari_behaviorvlm.geometry.camera import CalibrationError, Camera, CameraGroup
from napari_behaviorvlm.geometry.triangulation import reprojection_errors, triangulate


__all__ = [
    "Board", "CalibrationResult", "CameraDetections", "calibrate", "calibrate_from_detections",
    "detect_board_in_source", "error_stats", "load_board",
]

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"})
_DICT_SIZES = (50, 100, 250, 1000)


@attrs.define(frozen=True)
class Board:
    """A calibration board.

    Attributes:
        type: ``"charuco"`` or ``"checkerboard"``.
        squares_x, squares_y: Number of squares along x and y (inner corners: one fewer each).
        square_length: Side of a square, mm.
        marker_length: Side of a ChArUco marker, mm (None for a checkerboard).
        marker_bits: ArUco marker size in bits (4-7).
        dict_size: ArUco dictionary size (50, 100, 250 or 1000).
        legacy: Use OpenCV's pre-4.6 ChArUco layout (boards printed with old OpenCV versions).
    """

    type: str = attrs.field(validator=attrs.validators.in_(("charuco", "checkerboard")))
    squares_x: int = attrs.field(converter=int)
    squares_y: int = attrs.field(converter=int)
    square_length: float = attrs.field(converter=float)
    marker_length: float | None = attrs.field(
        default=None, converter=lambda v: None if v is None else float(v))
    marker_bits: int = attrs.field(default=4, converter=int)
    dict_size: int = attrs.field(default=1000, converter=int)
    legacy: bool = attrs.field(default=False, converter=bool)

    def __attrs_post_init__(self) -> None:
        if self.squares_x < 2 or self.squares_y < 2:
            raise CalibrationError(f"a board needs at least 2 x 2 squares, got "
                                   f"{self.squares_x} x {self.squares_y}")
        if not self.square_length > 0:
            raise CalibrationError(f"square_length must be > 0 mm, got {self.square_length}")
        if self.type == "charuco":
            if self.marker_length is None or not 0 < self.marker_length < self.square_length:
                raise CalibrationError("a ChArUco board needs 0 < marker_length < square_length, "
                                       f"got {self.marker_length} and {self.square_length}")
            if self.marker_bits not in (4, 5, 6, 7) or self.dict_size not in _DICT_SIZES:
                raise CalibrationError(
                    f"no ArUco dictionary {self.marker_bits}x{self.marker_bits}_{self.dict_size}: "
                    f"marker_bits must be 4-7 and dict_size one of {_DICT_SIZES}")

    @property
    def inner_corners(self) -> tuple[int, int]:
        """Inner corners along x and y."""
        return self.squares_x - 1, self.squares_y - 1

    @property
    def n_corners(self) -> int:
        return (self.squares_x - 1) * (self.squares_y - 1)

    def object_points(self) -> np.ndarray:
        """(n_corners, 3) corner positions on the board plane (z = 0), mm, indexed by corner id."""
        if self.type == "charuco":
            return np.asarray(self._charuco().getChessboardCorners(), dtype=np.float64)
        nx, ny = self.inner_corners
        grid = np.mgrid[0:nx, 0:ny].T.reshape(-1, 2) * self.square_length
        return np.hstack([grid, np.zeros((grid.shape[0], 1))])

    def _charuco(self):
        name = f"DICT_{self.marker_bits}X{self.marker_bits}_{self.dict_size}"
        dictionary = cv2.aruco.getPredefinedDictionary(getattr(cv2.aruco, name))
        board = cv2.aruco.CharucoBoard((self.squares_x, self.squares_y), self.square_length,
                                       self.marker_length, dictionary)
        board.setLegacyPattern(self.legacy)
        return board

    def detector(self) -> Callable[[np.ndarray], tuple[np.ndarray, np.ndarray] | None]:
        """A function ``gray image (H, W) uint8 -> (ids (k,), corners (k, 2) px)`` or None."""
        if self.type == "charuco":
            detector = cv2.aruco.CharucoDetector(self._charuco())

            def detect(image: np.ndarray):
                corners, ids, _, _ = detector.detectBoard(image)
                if ids is None or len(ids) == 0:
                    return None
                return ids.reshape(-1).astype(np.int64), corners.reshape(-1, 2).astype(np.float64)

            return detect

        pattern = self.inner_corners
        criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_MAX_ITER, 50, 1e-3)

        def detect_checker(image: np.ndarray):
            found, corners = cv2.findChessboardCorners(
                image, pattern, flags=cv2.CALIB_CB_ADAPTIVE_THRESH | cv2.CALIB_CB_NORMALIZE_IMAGE)
            if not found:
                return None
            corners = cv2.cornerSubPix(image, corners, (5, 5), (-1, -1), criteria)
            return np.arange(len(corners)), corners.reshape(-1, 2).astype(np.float64)

        return detect_checker

    def to_dict(self) -> dict[str, Any]:
        data = attrs.asdict(self)
        return {k: v for k, v in data.items() if v is not None}


def load_board(path: str | Path) -> Board:
    """Read a board file (see the module docstring for the accepted keys).

    Raises:
        CalibrationError: missing file, not TOML, or missing/invalid keys (named in the message).
    """
    path = Path(path)
    data = read_toml(path, "board", CalibrationError)
    if "calibration" in data and isinstance(data["calibration"], dict):
        data = {**data, **data["calibration"]}
    try:
        return _board_from_dict(data)
    except KeyError as exc:
        raise CalibrationError(
            f"{path}: missing key {exc.args[0]!r}; a board file needs type, squares_x, squares_y, "
            "square_length (+ marker_length, marker_bits, dict_size for ChArUco), or anipose's "
            "board_type, board_size, board_square_side_length, ... keys") from None
    except (CalibrationError, ValueError, TypeError) as exc:
        raise CalibrationError(f"{path}: {exc}") from None


def _board_from_dict(data: Mapping[str, Any]) -> Board:
    if "board_size" in data or "board_type" in data:  # anipose config
        kind = str(data["board_type"]).lower()
        size = data["board_size"]
        kind = "checkerboard" if kind == "checkerboard" else "charuco"
        if kind == "charuco" and str(data["board_type"]).lower() != "charuco":
            raise CalibrationError(f"unsupported board_type {data['board_type']!r} "
                                   "(charuco or checkerboard)")
        extra = 1 if kind == "checkerboard" else 0
        return Board(kind, int(size[0]) + extra, int(size[1]) + extra,
                     data["board_square_side_length"], data.get("board_marker_length"),
                     data.get("board_marker_bits", 4), data.get("board_marker_dict_number", 1000))
    if "board_x" in data:  # sleap-anipose
        kind = "charuco" if "marker_length" in data else "checkerboard"
        extra = 1 if kind == "checkerboard" else 0
        return Board(kind, int(data["board_x"]) + extra, int(data["board_y"]) + extra,
                     data["square_length"], data.get("marker_length"), data.get("marker_bits", 4),
                     data.get("dict_size", 1000))
    return Board(str(data["type"]).lower(), data["squares_x"], data["squares_y"],
                 data["square_length"], data.get("marker_length"), data.get("marker_bits", 4),
                 data.get("dict_size", 1000), data.get("legacy", False))


# ------------------------------------------------------------------------------------------
# Detection
# ------------------------------------------------------------------------------------------

@attrs.define(eq=False)
class CameraDetections:
    """Board corners found in one camera's frames.

    Attributes:
        name: Camera name.
        size: Image ``(width, height)`` px.
        frames: Frame key -> ``(ids (k,) int, corners (k, 2) px)``; keys match across cameras
            (the same key = the same instant).
        n_read: Number of frames read.
        source: The images/video they came from (for messages).
    """

    name: str
    size: tuple[int, int]
    frames: dict[int, tuple[np.ndarray, np.ndarray]]
    n_read: int
    source: str


def _natural_key(path: Path) -> list:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path.name)]


def _image_files(spec: str) -> list[Path] | None:
    path = Path(spec)
    if path.is_dir():
        files = [p for p in path.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS]
    elif any(ch in spec for ch in "*?["):
        files = [Path(p) for p in globmod.glob(spec) if Path(p).suffix.lower() in IMAGE_EXTENSIONS]
    else:
        return None
    return sorted(files, key=_natural_key)


def _iter_frames(spec: str, every: int) -> Iterator[tuple[int, np.ndarray]]:
    """(frame key, gray image) for a folder of images, a glob or a video.

    Image keys are the number at the end of each file name when those numbers are distinct within
    the camera (``back-...-15.jpg`` -> 15, so the cameras' images pair up by number), else the
    position in natural sort order. Video keys are frame indices.
    """
    files = _image_files(spec)
    if files is not None:
        if not files:
            raise FileNotFoundError(f"no images ({', '.join(sorted(IMAGE_EXTENSIONS))}) match {spec}")
        tails = [re.findall(r"(\d+)", p.stem) for p in files]
        numbers = [int(t[-1]) if t else None for t in tails]
        use_numbers = None not in numbers and len(set(numbers)) == len(numbers)
        for pos, path in enumerate(files):
            if pos % every:
                continue
            image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
            if image is None:
                raise CalibrationError(f"cannot read image {path} (corrupt or unsupported format)")
            yield (numbers[pos] if use_numbers else pos), image
        return
    path = Path(spec)
    if not path.is_file():
        raise FileNotFoundError(f"{spec} is neither a folder of images, a glob nor a video file")
    from napari_behaviorvlm.video.reader import VideoReader

    with VideoReader(path, grayscale=True, cache_frames=0) as reader:
        for index in range(0, reader.n_frames, every):
            yield index, np.ascontiguousarray(reader[index])


def detect_board_in_source(name: str, spec: str | Path, board: Board, every: int = 1,
                           min_corners: int = 6,
                           progress: Callable[[str], None] | None = None) -> CameraDetections:
    """Detect the board in every ``every``-th frame of a folder of images, a glob or a video.

    Args:
        name: Camera name.
        spec: Folder of images, glob pattern, or video file.
        board: The board.
        every: Use every n-th image/frame.
        min_corners: Frames with fewer corners are ignored.
        progress: Optional callback receiving one line per frame read.
    """
    if every < 1:
        raise ValueError(f"every must be >= 1, got {every}")
    detect = board.detector()
    frames: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    size = None
    n_read = 0
    for key, image in _iter_frames(str(spec), every):
        shape = (int(image.shape[1]), int(image.shape[0]))
        if size is None:
            size = shape
        elif shape != size:
            raise CalibrationError(f"camera {name}: frame {key} of {spec} is {shape[0]}x{shape[1]} "
                                   f"px but earlier frames are {size[0]}x{size[1]} px")
        n_read += 1
        found = detect(image)
        if found is not None and len(found[0]) >= min_corners:
            frames[key] = found
        if progress is not None:
            progress(f"{name}: frame {key}: {0 if found is None else len(found[0])} corners")
    if size is None:
        raise CalibrationError(f"camera {name}: no frames read from {spec}")
    return CameraDetections(name, size, frames, n_read, str(spec))


# ------------------------------------------------------------------------------------------
# Geometry helpers
# ------------------------------------------------------------------------------------------

def _rodrigues(rvecs: np.ndarray) -> np.ndarray:
    """(M, 3) rotation vectors -> (M, 3, 3) matrices, vectorized."""
    theta = np.linalg.norm(rvecs, axis=1)
    small = theta < 1e-12
    k = rvecs / np.where(small, 1.0, theta)[:, None]
    kx, ky, kz = k[:, 0], k[:, 1], k[:, 2]
    zero = np.zeros_like(kx)
    kmat = np.stack([np.stack([zero, -kz, ky], -1), np.stack([kz, zero, -kx], -1),
                     np.stack([-ky, kx, zero], -1)], axis=1)
    sin, cos = np.sin(theta)[:, None, None], np.cos(theta)[:, None, None]
    return np.eye(3) + sin * kmat + (1 - cos) * (kmat @ kmat)


def _to_rt(rvec: np.ndarray, tvec: np.ndarray) -> np.ndarray:
    out = np.eye(4)
    out[:3, :3] = cv2.Rodrigues(np.asarray(rvec, dtype=np.float64).reshape(3))[0]
    out[:3, 3] = np.asarray(tvec, dtype=np.float64).reshape(3)
    return out


def _from_rt(mat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return cv2.Rodrigues(mat[:3, :3])[0].reshape(3), mat[:3, 3].copy()


def _mean_pose(mats: list[np.ndarray]) -> np.ndarray:
    """Robust mean of rigid transforms: chordal mean rotation, median translation."""
    rots = np.stack([m[:3, :3] for m in mats])
    u, _, vt = np.linalg.svd(rots.mean(axis=0))
    rot = u @ vt
    if np.linalg.det(rot) < 0:
        u[:, -1] *= -1
        rot = u @ vt
    out = np.eye(4)
    out[:3, :3] = rot
    out[:3, 3] = np.median(np.stack([m[:3, 3] for m in mats]), axis=0)
    return out


def _project_model(cams: np.ndarray, boards: np.ndarray, obs_cam: np.ndarray,
                   obs_frame: np.ndarray, objp: np.ndarray) -> np.ndarray:
    """OpenCV projection of board corners, vectorized over observations.

    Args:
        cams: (C, 15) ``fx fy cx cy k1 k2 p1 p2 k3 rvec(3) tvec(3)`` per camera (world -> camera).
        boards: (F, 6) board -> world ``rvec tvec`` per frame.
        obs_cam, obs_frame: (M,) camera and frame index of each observation.
        objp: (M, 3) board-frame corner positions, mm.

    Returns:
        (M, 2) distorted px.
    """
    rot_board = _rodrigues(boards[:, :3])[obs_frame]
    world = np.einsum("mij,mj->mi", rot_board, objp) + boards[obs_frame, 3:]
    rot_cam = _rodrigues(cams[:, 9:12])[obs_cam]
    p = cams[obs_cam]
    cam = np.einsum("mij,mj->mi", rot_cam, world) + p[:, 12:15]
    x, y = cam[:, 0] / cam[:, 2], cam[:, 1] / cam[:, 2]
    k1, k2, p1, p2, k3 = (p[:, i] for i in range(4, 9))
    r2 = x * x + y * y
    radial = 1 + r2 * (k1 + r2 * (k2 + r2 * k3))
    xd = x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x)
    yd = y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y
    return np.stack([p[:, 0] * xd + p[:, 2], p[:, 1] * yd + p[:, 3]], axis=1)


def _single_blas_thread():
    """Limit BLAS to one thread: the bundle adjustment's matrices are small, and on a busy
    machine multi-threaded BLAS makes them many times slower."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(1, user_api="blas")


def _robust_levenberg_marquardt(residuals: Callable[[np.ndarray], np.ndarray],
                                jacobian: Callable[[np.ndarray], np.ndarray], x0: np.ndarray,
                                f_scale: float = 1.0, max_iter: int = 100, tol: float = 1e-10
                                ) -> tuple[np.ndarray, int, bool]:
    """Levenberg-Marquardt on a soft-L1 robust cost of 2D residuals (pairs = one corner).

    The cost is ``sum f_scale^2 * 2 (sqrt(1 + (e / f_scale)^2) - 1)`` over corner errors ``e``
    (px); each iteration solves the damped, reweighted normal equations (IRLS weights
    ``1 / sqrt(1 + (e / f_scale)^2)``). Normal equations keep the work at one ``J^T W J`` product
    (parameters x parameters) per iteration, cheap even when BLAS threads are oversubscribed.

    Returns:
        (x, iterations, converged)
    """

    def cost_and_weights(res: np.ndarray) -> tuple[float, np.ndarray]:
        sq = (res.reshape(-1, 2) ** 2).sum(axis=1) / f_scale**2
        root = np.sqrt(1.0 + sq)
        return float((2.0 * f_scale**2 * (root - 1.0)).sum()), np.repeat(1.0 / root, 2)

    x = np.asarray(x0, dtype=np.float64).copy()
    res = residuals(x)
    cost, weights = cost_and_weights(res)
    damping = 1e-3
    for iteration in range(1, max_iter + 1):
        jac = jacobian(x)
        jtw = jac.T * weights
        normal = jtw @ jac
        grad = jtw @ res
        diag = np.maximum(np.diag(normal), 1e-12)
        improved = False
        while damping < 1e12:
            try:
                step = np.linalg.solve(normal + damping * np.diag(diag), -grad)
            except np.linalg.LinAlgError:
                damping *= 10.0
                continue
            new_x = x + step
            new_res = residuals(new_x)
            new_cost, new_weights = cost_and_weights(new_res)
            if np.isfinite(new_cost) and new_cost < cost:
                improved = True
                break
            damping *= 10.0
        if not improved:
            return x, iteration, True  # no descent step left: at a minimum
        decrease = (cost - new_cost) / max(cost, 1e-300)
        x, res, cost, weights = new_x, new_res, new_cost, new_weights
        damping = max(damping / 10.0, 1e-12)
        if decrease < tol or np.abs(step).max() < tol * (np.abs(x).max() + tol):
            return x, iteration, True
    return x, max_iter, False


def error_stats(errors: np.ndarray) -> dict[str, float | int]:
    """Median, mean, p95 and max (px) and count of the finite values of ``errors``."""
    errors = np.asarray(errors, dtype=np.float64).reshape(-1)
    errors = errors[np.isfinite(errors)]
    if errors.size == 0:
        return {"n": 0, "median": float("nan"), "mean": float("nan"), "p95": float("nan"),
                "max": float("nan")}
    return {"n": int(errors.size), "median": float(np.median(errors)), "mean": float(errors.mean()),
            "p95": float(np.percentile(errors, 95)), "max": float(errors.max())}


# ------------------------------------------------------------------------------------------
# Calibration
# ------------------------------------------------------------------------------------------

@attrs.define(eq=False)
class CalibrationResult:
    """A calibrated camera group and its report.

    Attributes:
        group: The cameras (world frame = first camera's frame, mm).
        report: JSON-ready dict: ``board``, ``cameras`` (per camera: ``frames_read``,
            ``frames_detected``, ``corners``, ``intrinsic_rms_px``, ``reprojection_px`` stats,
            ``triangulated_px`` stats), ``overall`` (``reprojection_px``, ``triangulated_px``),
            ``shared_frames``, ``bundle_adjustment`` details, ``worst_frames`` (the 5 camera
            frames with the highest median corner error) and ``issues`` (validation of the
            result, strings).
    """

    group: CameraGroup
    report: dict[str, Any]


def calibrate(board: Board, sources: Mapping[str, str | Path], every: int = 1,
              min_corners: int = 6, fix_k3: bool = True,
              progress: Callable[[str], None] | None = None) -> CalibrationResult:
    """Detect the board in every camera's images or video, then calibrate all cameras.

    Args:
        board: The board.
        sources: Camera name -> folder of images, glob, or video (camera order = output order).
        every: Use every n-th image/frame.
        min_corners: Minimum corners for a frame to count.
        fix_k3: Keep ``k3`` at 0 (see :func:`calibrate_from_detections`).
        progress: Optional callback receiving progress lines.
    """
    if len(sources) < 1:
        raise CalibrationError("no cameras given")
    detections = [detect_board_in_source(name, spec, board, every, min_corners, progress)
                  for name, spec in sources.items()]
    return calibrate_from_detections(detections, board, fix_k3=fix_k3, progress=progress)


def calibrate_from_detections(detections: list[CameraDetections], board: Board,
                              fix_k3: bool = True,
                              progress: Callable[[str], None] | None = None) -> CalibrationResult:
    """Intrinsics, chained extrinsics and bundle adjustment from detected corners.

    Args:
        detections: Per camera, in output order (the first is the world reference).
        board: The board.
        fix_k3: Keep the 6th-order radial term ``k3`` at 0 (OpenCV's advice unless the lens is
            close to fisheye): with free ``k3`` the polynomial tends to fold back just outside
            the area the board covered.
        progress: Optional callback receiving progress lines.
    """
    say = progress or (lambda _msg: None)
    objp_all = board.object_points()
    names = [d.name for d in detections]
    if len(set(names)) != len(names):
        raise CalibrationError(f"camera names must be unique, got {names}")
    intrinsics: list[tuple[np.ndarray, np.ndarray, float]] = []
    poses: list[dict[int, np.ndarray]] = []  # per camera: frame key -> board->camera 4x4
    for det in detections:
        keys = sorted(det.frames)
        if len(keys) < 3:
            raise CalibrationError(
                f"camera {det.name}: the board was found in only {len(keys)} of {det.n_read} "
                f"frames of {det.source} (at least 3 needed); check the board file "
                "(squares, marker size, dictionary) and that the board is fully visible")
        obj = [objp_all[det.frames[k][0]].astype(np.float32) for k in keys]
        img = [det.frames[k][1].astype(np.float32) for k in keys]
        rms, matrix, dist, rvecs, tvecs = cv2.calibrateCamera(
            obj, img, det.size, None, None, flags=cv2.CALIB_FIX_K3 if fix_k3 else 0)
        say(f"{det.name}: intrinsics from {len(keys)} frames, RMS {rms:.3f} px")
        intrinsics.append((matrix, dist.reshape(-1)[:5], float(rms)))
        poses.append({k: _to_rt(r, t) for k, r, t in zip(keys, rvecs, tvecs)})

    # extrinsics: maximum spanning tree over shared frames, chained from camera 0
    n_cam = len(detections)
    shared = np.zeros((n_cam, n_cam), dtype=int)
    for a in range(n_cam):
        for b in range(n_cam):
            if a != b:
                shared[a, b] = len(poses[a].keys() & poses[b].keys())
    cam_to_world = {0: np.eye(4)}  # camera a's pose: world -> camera a
    while len(cam_to_world) < n_cam:
        best = max(((shared[a, b], a, b) for a in cam_to_world for b in range(n_cam)
                    if b not in cam_to_world), default=(0, -1, -1))
        count, a, b = best
        if count == 0:
            missing = [names[i] for i in range(n_cam) if i not in cam_to_world]
            raise CalibrationError(
                f"camera(s) {', '.join(missing)} share no board frame with "
                f"{', '.join(names[i] for i in cam_to_world)}; record frames where the board is "
                "seen by these cameras and at least one other at the same time")
        common = sorted(poses[a].keys() & poses[b].keys())
        # world -> b = (board -> b) (board -> a)^-1 (world -> a)
        rel = _mean_pose([poses[b][k] @ np.linalg.inv(poses[a][k]) for k in common])
        cam_to_world[b] = rel @ cam_to_world[a]

    # bundle adjustment --------------------------------------------------------------------
    frame_keys = sorted(set().union(*[p.keys() for p in poses]))
    frame_index = {k: i for i, k in enumerate(frame_keys)}
    board_poses = np.zeros((len(frame_keys), 6))
    for k, i in frame_index.items():
        mats = [np.linalg.inv(cam_to_world[c]) @ poses[c][k] for c in range(n_cam) if k in poses[c]]
        board_poses[i] = np.concatenate(_from_rt(_mean_pose(mats)))
    cam_params = np.zeros((n_cam, 15))
    for c, (matrix, dist, _) in enumerate(intrinsics):
        rvec, tvec = _from_rt(cam_to_world[c])
        cam_params[c] = [matrix[0, 0], matrix[1, 1], matrix[0, 2], matrix[1, 2], *dist, *rvec, *tvec]
    obs_cam, obs_frame, obs_id, obs_xy = [], [], [], []
    for c, det in enumerate(detections):
        for k, (ids, corners) in det.frames.items():
            obs_cam.append(np.full(len(ids), c))
            obs_frame.append(np.full(len(ids), frame_index[k]))
            obs_id.append(ids)
            obs_xy.append(corners)
    obs_cam = np.concatenate(obs_cam)
    obs_frame = np.concatenate(obs_frame)
    obs_obj = objp_all[np.concatenate(obs_id)]
    obs_xy = np.concatenate(obs_xy)
    n_obs = obs_cam.size

    # free parameters: all camera params except camera 0's extrinsics, and all board poses
    free_cam = np.ones((n_cam, 15), dtype=bool)
    free_cam[0, 9:] = False
    if fix_k3:
        free_cam[:, 8] = False
    n_free_cam = int(free_cam.sum())
    col_of_cam = np.full((n_cam, 15), -1)
    col_of_cam[free_cam] = np.arange(n_free_cam)
    rows = np.arange(n_obs)

    def unpack(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        cams = cam_params.copy()
        cams[free_cam] = x[:n_free_cam]
        return cams, x[n_free_cam:].reshape(-1, 6)

    def residuals(x: np.ndarray) -> np.ndarray:
        cams, boards = unpack(x)
        return (_project_model(cams, boards, obs_cam, obs_frame, obs_obj) - obs_xy).reshape(-1)

    def jacobian(x: np.ndarray) -> np.ndarray:
        # central differences, one parameter slot of every camera (or every board pose) at a
        # time: cameras never share an observation, nor do frames, so 2 x (15 + 6) evaluations
        cams, boards = unpack(x)
        jac = np.zeros((n_obs, 2, x.size))
        for j in range(15):
            free = free_cam[:, j]
            if not free.any():
                continue
            step = 1e-6 * np.maximum(np.abs(cams[:, j]), 1e-2) * free
            plus, minus = cams.copy(), cams.copy()
            plus[:, j] += step
            minus[:, j] -= step
            diff = (_project_model(plus, boards, obs_cam, obs_frame, obs_obj)
                    - _project_model(minus, boards, obs_cam, obs_frame, obs_obj))
            cols = col_of_cam[obs_cam, j]
            ok = cols >= 0
            jac[rows[ok], :, cols[ok]] = diff[ok] / (2 * step[obs_cam[ok], None])
        for j in range(6):
            step = 1e-6 * np.maximum(np.abs(boards[:, j]), 1e-2)
            plus, minus = boards.copy(), boards.copy()
            plus[:, j] += step
            minus[:, j] -= step
            diff = (_project_model(cams, plus, obs_cam, obs_frame, obs_obj)
                    - _project_model(cams, minus, obs_cam, obs_frame, obs_obj))
            jac[rows, :, n_free_cam + 6 * obs_frame + j] = diff / (2 * step[obs_frame, None])
        return jac.reshape(2 * n_obs, x.size)

    x0 = np.concatenate([cam_params[free_cam], board_poses.reshape(-1)])
    before = np.linalg.norm(residuals(x0).reshape(-1, 2), axis=1)
    say(f"bundle adjustment: {n_cam} cameras, {len(frame_keys)} board poses, {n_obs} corners, "
        f"median error before {np.median(before):.3f} px")
    with _single_blas_thread():
        x_fit, n_iter, converged = _robust_levenberg_marquardt(residuals, jacobian, x0)
    cams, boards = unpack(x_fit)
    after = np.linalg.norm(residuals(x_fit).reshape(-1, 2), axis=1)
    say(f"bundle adjustment: median error after {np.median(after):.3f} px ({n_iter} iterations)")

    cameras = []
    for c, det in enumerate(detections):
        p = cams[c]
        matrix = np.array([[p[0], 0.0, p[2]], [0.0, p[1], p[3]], [0.0, 0.0, 1.0]])
        cameras.append(Camera(det.name, det.size, matrix, p[4:9], p[9:12], p[12:15]))
    group = CameraGroup(cameras)

    # report: board model reprojection (through Camera.project, independent of the BA model)
    obj_world = (np.einsum("mij,mj->mi", _rodrigues(boards[obs_frame, :3]), obs_obj)
                 + boards[obs_frame, 3:])
    model_err = np.full(n_obs, np.nan)
    for c, cam in enumerate(group):
        sel = obs_cam == c
        model_err[sel] = np.linalg.norm(cam.project(obj_world[sel]) - obs_xy[sel], axis=1)
    tri_err = _triangulated_errors(detections, group, frame_keys, board.n_corners)
    report: dict[str, Any] = {"board": board.to_dict(), "cameras": {}, "overall": {}}
    for c, det in enumerate(detections):
        report["cameras"][det.name] = {
            "source": det.source, "size": list(det.size), "frames_read": det.n_read,
            "frames_detected": len(det.frames), "corners": int((obs_cam == c).sum()),
            "intrinsic_rms_px": intrinsics[c][2],
            "reprojection_px": error_stats(model_err[obs_cam == c]),
            "triangulated_px": error_stats(tri_err[c]),
        }
    report["overall"] = {
        "frames_detected": sum(len(d.frames) for d in detections), "corners": n_obs,
        "reprojection_px": error_stats(model_err), "triangulated_px": error_stats(tri_err),
    }
    report["shared_frames"] = {names[a]: {names[b]: int(shared[a, b]) for b in range(n_cam) if b != a}
                               for a in range(n_cam)}
    report["bundle_adjustment"] = {"median_before_px": float(np.median(before)),
                                   "median_after_px": float(np.median(after)),
                                   "iterations": n_iter, "converged": converged}
    # the frames that fit worst (median corner error per camera and frame), to spot blur or a
    # misdetection
    worst = []
    for c, det in enumerate(detections):
        for key in det.frames:
            sel = (obs_cam == c) & (obs_frame == frame_index[key])
            worst.append((float(np.median(model_err[sel])), det.name, key))
    worst.sort(reverse=True)
    report["worst_frames"] = [{"camera": name, "frame": key, "median_px": err}
                              for err, name, key in worst[:5]]
    group.metadata = {"calibrated_by": "napari-behaviorvlm", "board": board.to_dict(),
                      "error_median_px": report["overall"]["reprojection_px"]["median"],
                      "error_p95_px": report["overall"]["reprojection_px"]["p95"]}
    from napari_behaviorvlm.geometry.validation import validate_calibration

    report["issues"] = [str(issue) for issue in validate_calibration(group)]
    return CalibrationResult(group, report)


def _triangulated_errors(detections: list[CameraDetections], group: CameraGroup,
                         frame_keys: list[int], n_corners: int) -> np.ndarray:
    """(C, F, n_corners) px: corners triangulated from every view that saw them, reprojected."""
    points = np.full((len(detections), len(frame_keys), n_corners, 2), np.nan)
    for c, det in enumerate(detections):
        for f, key in enumerate(frame_keys):
            if key in det.frames:
                ids, corners = det.frames[key]
                points[c, f, ids] = corners
    return reprojection_errors(triangulate(points, group), points, group)
