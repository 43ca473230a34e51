"""From an RGB-D frame and a pen mask to the pen's two end points, as the ``proprio-ends`` student
observes them (``obj_ends``: both ends relative to the palm, world axes).

The pipeline follows the original PenSpin's real-robot one (Azure Kinect depth plus a SAM mask):
masked depth pixels -> world points -> crop box around the hand -> resample to a fixed count ->
radius outlier removal -> the two mutually furthest points -> a z offset. ``SceneCamera`` makes
the same kind of frame from the MuJoCo scene, so the pipeline runs unchanged in the proxy-real
world.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

# Imported for its side effect: it picks a headless GL backend, which must precede mujoco's import.
from penspin.sim import gl as _headless_gl  # noqa: F401

# isort: split
import mujoco
import numpy as np

from penspin.sim import scene
from penspin.sim.allegro import PALM_POS

if TYPE_CHECKING:
    from penspin.robot.interface import CameraFrame, HandRobot

PALM = np.asarray(PALM_POS, dtype=np.float64)


@dataclass(frozen=True)
class EndsPipelineConfig:
    """Settings of the ends pipeline; lengths in metres, the crop box relative to the palm.

    The original used 16 neighbours within 5 cm at the Kinect's density on a real pen; 8 within
    2 cm suits 512 points on a pen of 10-15 cm and still drops stray pixels off the pen's edge.
    """

    # m, palm frame: lower corner of the crop box
    crop_min: tuple[float, float, float] = (-0.12, -0.12, 0.02)
    # m, palm frame: upper corner of the crop box
    crop_max: tuple[float, float, float] = (0.12, 0.12, 0.25)
    num_points: int = 512  # points the cloud is resampled to
    outlier_radius: float = 0.02  # m, neighbourhood of the outlier test
    outlier_min_neighbours: int = 8  # fewer neighbours: an outlier
    # Added to both ends' z. The original corrected its Kinect's depth bias by about 1.25 cm in its
    # own frame; simulated depth has no such bias. Both see only the pen's near side, which puts
    # the ends up to a pen radius towards the camera; that error is kept, as on the real hand.
    z_offset: float = 0.0
    seed: int = 0  # seeds the resampling when the caller passes no generator


class PenEnds(NamedTuple):
    """The pipeline's result, relative to the palm (world axes).

    ``points`` [num_points, 3] is the cropped cloud resampled to a fixed size (before outlier
    removal); ``ends`` [2, 3] are the pen's ends. Where nothing survives (pen out of view or
    dropped) ``ok`` is False and ``ends`` is NaN (``points`` too when the crop box is empty): a
    control loop decides what to do then (hold the last estimate, stop), rather than catching an
    exception every lost frame.
    """

    points: np.ndarray
    ends: np.ndarray
    ok: bool


def depth_to_points(depth: np.ndarray, mask: np.ndarray, fovy_deg: float, cam_pos: np.ndarray,
                    cam_rot: np.ndarray) -> np.ndarray:
    """World points [K, 3] of the masked pixels of a pinhole depth image (MuJoCo convention).

    ``depth`` [H, W] is the distance along the optical axis (m), row 0 is the image's top,
    ``cam_rot``'s columns are the camera's x (right), y (up) and z (backwards) axes in the world.
    Pixels without a valid depth are skipped.
    """
    depth = np.asarray(depth, dtype=np.float64)
    h, w = depth.shape
    focal = 0.5 * h / np.tan(np.radians(fovy_deg) / 2)  # pixels; square pixels
    rows, cols = np.nonzero(np.asarray(mask, bool) & np.isfinite(depth) & (depth > 0))
    d = depth[rows, cols]
    local = np.stack([(cols + 0.5 - w / 2) / focal * d, -(rows + 0.5 - h / 2) / focal * d, -d],
                     axis=1)
    return np.asarray(cam_pos, dtype=np.float64) + local @ np.asarray(cam_rot, np.float64).T


def pen_ends_from_points(points: np.ndarray, cfg: EndsPipelineConfig = EndsPipelineConfig(),
                         rng: np.random.Generator | None = None,
                         previous: np.ndarray | None = None) -> PenEnds:
    """The pen's ends from its world points [K, 3]: crop, resample, drop outliers, furthest pair.

    Fewer points than ``num_points`` are resampled with replacement; the outlier test counts
    distinct points only, so that a few stray pixels copied many times cannot pass it. A camera
    cannot tell the ends apart, so they are ordered: to match ``previous`` ends (palm frame) when
    given and finite, which keeps each end's identity while the pen spins; else the end with the
    larger x first.
    """
    rng = np.random.default_rng(cfg.seed) if rng is None else rng
    rel = np.asarray(points, dtype=np.float64).reshape(-1, 3) - PALM
    rel = rel[np.all((rel > cfg.crop_min) & (rel < cfg.crop_max), axis=1)]
    if len(rel) == 0:
        return PenEnds(np.full((cfg.num_points, 3), np.nan), np.full((2, 3), np.nan), False)
    sample = rng.choice(len(rel), cfg.num_points, replace=len(rel) < cfg.num_points)
    pc = rel[sample]
    cloud = rel[np.unique(sample)]
    dist2 = ((cloud[:, None] - cloud[None]) ** 2).sum(-1)
    neighbours = (dist2 < cfg.outlier_radius**2).sum(1) - 1  # not counting the point itself
    keep = np.flatnonzero(neighbours >= cfg.outlier_min_neighbours)
    if len(keep) < 2:
        return PenEnds(pc, np.full((2, 3), np.nan), False)
    i, j = np.unravel_index(np.argmax(dist2[np.ix_(keep, keep)]), (len(keep), len(keep)))
    ends = cloud[keep[[i, j]]]
    if previous is not None and np.isfinite(previous).all():
        swap = (np.linalg.norm(ends - previous[::-1], axis=1).sum()
                < np.linalg.norm(ends - previous, axis=1).sum())
    else:
        swap = ends[0, 0] < ends[1, 0]
    if swap:
        ends = ends[::-1].copy()
    ends[:, 2] += cfg.z_offset
    return PenEnds(pc, ends, True)


def pen_ends_from_frame(frame: CameraFrame, index: int,
                        cfg: EndsPipelineConfig = EndsPipelineConfig(),
                        rng: np.random.Generator | None = None,
                        previous: np.ndarray | None = None) -> PenEnds:
    """The pen's ends seen by hand ``index``'s camera (see :func:`pen_ends_from_points`)."""
    points = depth_to_points(frame.depth[index], frame.mask[index], frame.fovy_deg,
                             frame.cam_pos, frame.cam_rot)
    return pen_ends_from_points(points, cfg, rng, previous)


class SceneCamera:
    """An RGB-D camera with a pen mask in the MuJoCo scene, beside and in front of the hand the
    way a table-mounted Kinect would be; a free camera, so the scene's XML stays unchanged.

    Depth and mask come from casting one ray per pixel into the scene (``mj_multiRay``): the
    same image as OpenGL's depth and segmentation passes (the mask and all but edge depths agree
    to float32 precision; tested), several times faster than the three software-GL passes
    (``benchmarks/bench_replay.py``, docs/benchmarks.md), and with no GL at all. Colour, wanted
    only for logs and videos, is rendered with OpenGL on request.

    ``render`` takes any copy of ``model`` (per-env pen sizes included) that keeps its extent.
    """

    def __init__(self, model: mujoco.MjModel, width: int = 160, height: int = 120,
                 lookat: tuple[float, float, float] = (0.0, 0.0, 0.58), distance: float = 0.45,
                 azimuth: float = 120.0, elevation: float = -45.0):
        self.model, self.width, self.height = model, width, height
        self.camera = mujoco.MjvCamera()
        self.camera.type = mujoco.mjtCamera.mjCAMERA_FREE
        self.camera.lookat[:] = lookat
        self.camera.distance = distance
        self.camera.azimuth = azimuth
        self.camera.elevation = elevation
        self.option = mujoco.MjvOption()
        self.scene = mujoco.MjvScene(model, maxgeom=1000)
        self.far = model.vis.map.zfar * model.stat.extent  # what GL gives pixels that hit nothing
        lay = scene.layout(model)
        self.pen_geoms = np.array([lay.pen_geom, *lay.pen_marker_geoms])
        self._geom = np.empty(width * height, np.int32)
        self._dist = np.empty(width * height, np.float64)
        self._renderer: mujoco.Renderer | None = None
        self._rays: tuple[float, np.ndarray, np.ndarray] | None = None

    def render(self, model: mujoco.MjModel, data: mujoco.MjData, rgb: bool = True):
        """``(rgb [H,W,3] uint8 or None, depth [H,W] m, mask [H,W] bool, fovy_deg, cam_pos [3],
        cam_rot [3,3])`` of ``data``'s current state (call ``mj_forward`` first)."""
        if model.stat.extent != self.model.stat.extent:
            raise ValueError("SceneCamera renders copies of the model it was built with; this "
                             f"one's extent is {model.stat.extent}, not {self.model.stat.extent}")
        mujoco.mjv_updateScene(model, data, self.option, None, self.camera,
                               mujoco.mjtCatBit.mjCAT_ALL, self.scene)
        # The scene holds a stereo pair even for mono rendering, which draws from their average.
        left, right = self.scene.camera[0], self.scene.camera[1]
        pos = (np.asarray(left.pos, np.float64) + np.asarray(right.pos, np.float64)) / 2
        forward, up = np.asarray(left.forward, np.float64), np.asarray(left.up, np.float64)
        rot = np.column_stack([np.cross(forward, up), up, -forward])
        fovy = float(2 * np.degrees(np.arctan(left.frustum_top / left.frustum_near)))
        unit, norm = self._pixel_rays(fovy)
        h, w = self.height, self.width
        mujoco.mj_multiRay(model, data, pos, (unit @ rot.T).ravel(),
                           np.asarray(self.option.geomgroup, np.uint8), True, -1, self._geom,
                           self._dist, None, h * w, self.far)
        hit = self._geom >= 0
        depth = np.where(hit, self._dist / norm, self.far).reshape(h, w)  # along the axis
        mask = np.isin(self._geom, self.pen_geoms).reshape(h, w)
        return (self._colour(model, data) if rgb else None), depth, mask, fovy, pos, rot

    def _pixel_rays(self, fovy: float) -> tuple[np.ndarray, np.ndarray]:
        """Unit rays through the pixel centres in the camera frame and the length of each
        before normalising (z = -1), as depth_to_points maps them back; kept per fovy."""
        if self._rays is None or self._rays[0] != fovy:
            h, w = self.height, self.width
            focal = 0.5 * h / np.tan(np.radians(fovy) / 2)
            cols, rows = np.meshgrid(np.arange(w), np.arange(h))
            local = np.stack([(cols + 0.5 - w / 2) / focal, -(rows + 0.5 - h / 2) / focal,
                              -np.ones((h, w))], -1).reshape(-1, 3)
            norm = np.linalg.norm(local, axis=1)
            self._rays = (fovy, local / norm[:, None], norm)
        return self._rays[1], self._rays[2]

    def _colour(self, model: mujoco.MjModel, data: mujoco.MjData) -> np.ndarray:
        if self._renderer is None:
            vis = self.model.vis.global_
            vis.offwidth = max(vis.offwidth, self.width)
            vis.offheight = max(vis.offheight, self.height)
            self._renderer = mujoco.Renderer(self.model, self.height, self.width)
            # Shadows triple a frame's cost on software GL.
            self._renderer.scene.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = False
        mujoco.mjv_updateScene(model, data, self.option, None, self.camera,
                               mujoco.mjtCatBit.mjCAT_ALL, self._renderer.scene)
        return self._renderer.render()

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None


class EndsTracker:
    """Pen ends (palm frame) from the robot's camera, each end keeping its identity from frame
    to frame; a lost frame repeats the last estimate, as a tracker would. ``frame`` and
    ``points`` keep the last frame and clouds for the replay's full log (``rgb`` asks the camera
    for colour too, which the ends do not need)."""

    def __init__(self, cfg: EndsPipelineConfig, num_hands: int, rgb: bool = False):
        self.cfg = cfg
        self.rgb = rgb
        self.rng = np.random.default_rng(cfg.seed)
        self.last = np.full((num_hands, 2, 3), np.nan)
        self.frame: CameraFrame | None = None
        self.points: np.ndarray | None = None

    def __call__(self, robot: HandRobot) -> np.ndarray:
        """Ends [n, 6] relative to the palm, the student's ``obj_ends`` entry."""
        frame = self.frame = robot.camera(rgb=self.rgb)
        pcs = []
        for i in range(robot.num_hands):
            got = pen_ends_from_frame(frame, i, self.cfg, self.rng, self.last[i])
            if got.ok:
                self.last[i] = got.ends
            pcs.append(got.points)
        self.points = np.stack(pcs)
        return np.nan_to_num(self.last).reshape(robot.num_hands, 6)
