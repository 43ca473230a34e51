"""The one MJCF scene every backend loads: a palm-up Allegro right hand and a free pen.

The hand is built here from the published kinematics (``allegro.py``) with capsule links and
rounded (capsule) fingertips, because capsule-capsule contacts are the cheapest MuJoCo computes.
Only hand-pen pairs collide (contype/conaffinity), the hand is gravity-compensated, and each joint
has a PD position actuator (force = kp (target - q) - kd qdot on every physics step, clamped).
32 touch sensors sit on sites over the phalanx, palm and fingertip pads.
"""

from __future__ import annotations

import copy
import functools
from dataclasses import dataclass

import mujoco
import numpy as np

from penspin.sim import allegro as A

PEN_BODY = "pen"
PEN_GEOM = "pen"

# Taxel layout: 12 pad sites (phalanges, palm), then 5 per fingertip (index, thumb, middle, ring).
PAD_TAXELS = (
    "index_1", "index_2", "middle_1", "middle_2", "ring_1", "ring_2", "thumb_2", "thumb_3",
    "palm_index", "palm_middle", "palm_ring", "thumb_1",
)
TIP_TAXEL_DIRS = ((0.0, 0.0, 1.0), (1.0, 0.0, 0.0), (0.7, 0.0, 0.7), (0.6, 0.6, 0.3),
                  (0.6, -0.6, 0.3))
NUM_TAXELS = len(PAD_TAXELS) + 5 * len(A.FINGERS)
TIP_SITES = tuple(f"{f}_tip" for f in A.FINGERS)


@dataclass(frozen=True)
class SceneLayout:
    """Where things live in qpos/qvel/sensordata, so task code indexes arrays without lookups."""

    nq: int
    nv: int
    hand_qpos: slice
    pen_qpos: slice
    pen_qvel: slice
    touch: slice
    tip_contact: slice
    tip_pos: slice
    actuator_force: slice
    pen_body: int
    pen_geom: int
    pen_marker_geoms: tuple[int, int]
    taxel_sites: tuple[int, ...]


def _fmt(v) -> str:
    return " ".join(f"{x:.6g}" for x in np.atleast_1d(v))


def _rod_inertial(mass: float, length: float, radius: float) -> str:
    perp = mass * (length**2 / 12 + radius**2 / 4)
    axial = mass * radius**2 / 2
    return (f'<inertial pos="0 0 {length / 2:.6g}" mass="{mass:.6g}" '
            f'diaginertia="{perp:.4g} {perp:.4g} {axial:.4g}"/>')


def _pad_site(name: str, length: float) -> str:
    return (f'<site name="taxel_{name}" class="taxel" type="box" '
            f'pos="{A.LINK_RADIUS * 0.75:.5g} 0 {length / 2:.5g}" '
            f'size="{A.LINK_RADIUS * 0.6:.5g} {A.LINK_RADIUS * 1.1:.5g} {length / 2:.5g}"/>')


def _tip_sites(finger: str, tip_len: float) -> str:
    out = []
    for k, d in enumerate(TIP_TAXEL_DIRS):
        d = np.asarray(d) / np.linalg.norm(d)
        pos = np.array([0.0, 0.0, tip_len]) + d * A.TIP_RADIUS
        out.append(f'<site name="taxel_{finger}_tip{k}" class="taxel" type="sphere" '
                   f'pos="{_fmt(pos)}" size="{A.TIP_RADIUS * 0.55:.5g}"/>')
    return "\n".join(out)


def _finger_xml(finger: str) -> str:
    base_pos, base_quat = A.FINGER_BASES[finger]
    thumb = finger == "thumb"
    segs = A.THUMB_SEGMENTS if thumb else A.FINGER_SEGMENTS
    axes = A.THUMB_AXES if thumb else A.FINGER_AXES
    masses = A.THUMB_MASSES if thumb else A.FINGER_MASSES
    offset = A.FINGERS.index(finger) * 4
    lo, hi = A.JOINT_LOWER[offset:offset + 4], A.JOINT_UPPER[offset:offset + 4]
    # Positions of bodies 1..3 relative to their parent, and each link's own length.
    child_pos = []
    for seg in segs[:3]:
        child_pos.append(np.asarray(seg, float) if isinstance(seg, tuple) else
                         np.array([0.0, 0.0, seg]))
    lengths = [float(np.linalg.norm(child_pos[0])), float(segs[1]), float(segs[2]), float(segs[3])]
    xml = []
    for j in range(4):
        name = f"{finger}_{j}"
        pos = base_pos if j == 0 else child_pos[j - 1]
        quat = f' quat="{_fmt(base_quat)}"' if j == 0 else ""
        xml.append(f'<body name="{name}" pos="{_fmt(pos)}"{quat} gravcomp="1">')
        xml.append(_rod_inertial(masses[j], lengths[j], A.LINK_RADIUS))
        xml.append(f'<joint name="{name}" axis="{_fmt(axes[j])}" range="{lo[j]:.6g} {hi[j]:.6g}"/>')
        if j == 0:
            # Knuckle links sit inside the palm's footprint: visual only.
            end = child_pos[0]
            xml.append(f'<geom class="visual" type="capsule" size="{A.LINK_RADIUS}" '
                       f'fromto="0 0 0 {_fmt(end)}"/>')
        elif j < 3:
            xml.append(f'<geom class="link" fromto="0 0 0 0 0 {lengths[j]:.6g}"/>')
        else:
            xml.append(f'<geom class="tip" fromto="0 0 0 0 0 {lengths[j]:.6g}"/>')
            xml.append(f'<site name="{finger}_tip" class="marker" pos="0 0 {lengths[j]:.6g}"/>')
            xml.append(f'<site name="{finger}_tip_contact" class="taxel" type="capsule" '
                       f'fromto="0 0 0 0 0 {lengths[j]:.6g}" size="{A.TIP_RADIUS * 1.3:.5g}"/>')
            xml.append(_tip_sites(finger, lengths[j]))
        if name in PAD_TAXELS:
            xml.append(_pad_site(name, lengths[j] if j else float(np.linalg.norm(child_pos[0]))))
    xml.append("</body>" * 4)
    return "\n".join(xml)


def _palm_pads() -> str:
    out = []
    for name, y in (("palm_index", 0.0435), ("palm_middle", 0.0), ("palm_ring", -0.0435)):
        out.append(f'<site name="taxel_{name}" class="taxel" type="box" pos="0.0111 {y} -0.025" '
                   f'size="0.004 0.016 0.022"/>')
    return "\n".join(out)


def build_scene_xml(pen_radius: float = 0.0116, pen_length: float = 0.13) -> str:
    """MJCF text of the scene; pen size here is only the default, backends set it per env."""
    half = max(pen_length / 2 - pen_radius, 1e-4)
    palm_quat = np.zeros(4)
    mujoco.mju_mat2Quat(palm_quat, A.PALM_ROT.flatten())
    fingers = "\n".join(_finger_xml(f) for f in A.FINGERS)
    actuators = "\n".join(
        f'<position name="{n}" joint="{n}" kp="{A.KP}" kv="{A.KD}" '
        f'forcerange="{-A.TORQUE_LIMIT} {A.TORQUE_LIMIT}"/>' for n in A.JOINT_NAMES
    )
    taxel_names = [f"taxel_{n}" for n in PAD_TAXELS] + [
        f"taxel_{f}_tip{k}" for f in A.FINGERS for k in range(len(TIP_TAXEL_DIRS))
    ]
    sensors = "\n".join(f'<touch site="{s}"/>' for s in taxel_names)
    # Whole-fingertip contact sensors: used to judge grasps, not observed by policies.
    sensors += "\n" + "\n".join(f'<touch site="{s}_contact"/>' for s in TIP_SITES)
    sensors += "\n" + "\n".join(f'<framepos objtype="site" objname="{s}"/>' for s in TIP_SITES)
    sensors += "\n" + "\n".join(f'<actuatorfrc actuator="{n}"/>' for n in A.JOINT_NAMES)
    return f"""<mujoco model="penspin_allegro_right">
  <compiler angle="radian" autolimits="true"/>
  <option timestep="0.005" integrator="implicit" cone="pyramidal" gravity="0 0 -9.81"/>
  <visual><global offwidth="640" offheight="480"/></visual>
  <default>
    <joint armature="{A.ARMATURE}" damping="0"/>
    <geom contype="0" conaffinity="1" friction="0.3 0.005 0.0001" rgba="0.25 0.25 0.28 1"/>
    <default class="link"><geom type="capsule" size="{A.LINK_RADIUS}"/></default>
    <default class="tip"><geom type="capsule" size="{A.TIP_RADIUS}" rgba="0.9 0.9 0.9 1"/></default>
    <default class="visual"><geom contype="0" conaffinity="0" group="1"/></default>
    <default class="taxel"><site group="4" rgba="0.9 0.2 0.2 0.35"/></default>
    <default class="marker"><site size="0.003" group="4" rgba="0 1 0 1"/></default>
  </default>
  <asset>
    <texture name="grid" type="2d" builtin="checker" rgb1="0.3 0.35 0.4" rgb2="0.25 0.3 0.35"
      width="256" height="256"/>
    <material name="grid" texture="grid" texrepeat="8 8"/>
  </asset>
  <worldbody>
    <light pos="0.3 0.3 1.2" dir="-0.3 -0.3 -1" diffuse="0.8 0.8 0.8"/>
    <geom name="floor" class="visual" type="plane" size="1 1 0.01" material="grid"/>
    <camera name="front" pos="0 -0.42 0.78" xyaxes="1 0 0 0 0.55 0.835"/>
    <camera name="top" pos="0 -0.05 0.95" xyaxes="1 0 0 0 1 0"/>
    <camera name="close" pos="0 -0.25 0.73" xyaxes="1 0 0 0 0.55 0.835"/>
    <body name="palm" pos="{_fmt(A.PALM_POS)}" quat="{_fmt(palm_quat)}">
      <inertial pos="-0.0093 0 -0.0475" mass="{A.PALM_MASS}" diaginertia="4e-4 3e-4 2e-4"/>
      <geom name="palm" type="box" size="0.0204 0.0565 0.0475" pos="-0.0093 0 -0.0475"/>
      {_palm_pads()}
      {fingers}
    </body>
    <body name="{PEN_BODY}" pos="0 -0.01 0.62" quat="0.7071068 0 0.7071068 0">
      <freejoint name="pen"/>
      <inertial pos="0 0 0" mass="0.015" diaginertia="2e-5 2e-5 1e-6"/>
      <geom name="{PEN_GEOM}" type="capsule" size="{pen_radius:.6g} {half:.6g}" contype="1"
        conaffinity="0" rgba="0.95 0.75 0.1 1"/>
      <geom name="pen_tip_a" class="visual" type="sphere" size="{pen_radius * 1.05:.6g}"
        pos="0 0 {half:.6g}" rgba="0.85 0.1 0.1 1"/>
      <geom name="pen_tip_b" class="visual" type="sphere" size="{pen_radius * 1.05:.6g}"
        pos="0 0 {-half:.6g}" rgba="0.1 0.3 0.9 1"/>
    </body>
  </worldbody>
  <actuator>
{actuators}
  </actuator>
  <sensor>
{sensors}
  </sensor>
</mujoco>
"""


@functools.lru_cache(maxsize=1)
def _base_model() -> mujoco.MjModel:
    return mujoco.MjModel.from_xml_string(build_scene_xml())


def load_model() -> mujoco.MjModel:
    """A fresh copy of the scene model (each env owns one so its parameters can differ)."""
    return copy.copy(_base_model())


def layout(model: mujoco.MjModel) -> SceneLayout:
    pen_joint = model.joint("pen")
    touch_n = NUM_TAXELS
    return SceneLayout(
        nq=model.nq,
        nv=model.nv,
        hand_qpos=slice(0, A.NUM_JOINTS),
        pen_qpos=slice(pen_joint.qposadr[0], pen_joint.qposadr[0] + 7),
        pen_qvel=slice(pen_joint.dofadr[0], pen_joint.dofadr[0] + 6),
        touch=slice(0, touch_n),
        tip_contact=slice(touch_n, touch_n + 4),
        tip_pos=slice(touch_n + 4, touch_n + 16),
        actuator_force=slice(touch_n + 16, touch_n + 32),
        pen_body=model.body(PEN_BODY).id,
        pen_geom=model.geom(PEN_GEOM).id,
        pen_marker_geoms=(model.geom("pen_tip_a").id, model.geom("pen_tip_b").id),
        taxel_sites=tuple(model.site(f"taxel_{n}").id for n in PAD_TAXELS)
        + tuple(model.site(f"taxel_{f}_tip{k}").id for f in A.FINGERS
                for k in range(len(TIP_TAXEL_DIRS))),
    )
