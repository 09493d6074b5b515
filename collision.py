"""Collide: a collision world of our own, re-simulated exactly (FACTS section 7).

The paper's VQA benchmark asks four kinds of questions about videos of colliding objects
(``questions.py``); counterfactual answers come from re-simulating the video with one object
removed. This file is the world:

- A top-down 512 x 512 pymunk arena (y down, the walls are the frame's border), zero
  gravity, light damping, near-elastic contacts; 3-6 objects, each a unique (shape, color)
  pair out of {circle, square, triangle} x 8 colors, some at rest and some launched, most
  of those aimed at another object. Every object-object contact that begins is logged as
  (frame, a, b) with a < b; contacts with the walls are not logged.
- ``simulate(scene, remove=k)`` rebuilds the world from the scene's initial spec in a
  fixed creation order, so it is bit-exact: the same scene gives the same trajectory
  every time. Removing object k takes it out of every contact (it stays behind as a
  ghost, see ``simulate``), so removing an object that touches nothing changes nothing.
- ``render_video`` draws a trajectory, anti-aliased, with the ground-truth object ids.

Datasets of videos and questions are made and loaded by ``collide_data.py``.
"""

import math
from dataclasses import dataclass

import numpy as np
import pymunk
from PIL import Image, ImageDraw


# ---------------------------------------------------------------------------------------
# The world's constants
# ---------------------------------------------------------------------------------------
WORLD_SIZE = 512
DT = 0.01                       # physics step (s); a frame is ``frame_substeps`` of them
DAMPING = 0.8                   # share of its velocity a body keeps after one second
ELASTICITY, FRICTION = 0.95, 0.2
WALL_RADIUS = 4                 # wall segments just outside the frame: the border is a wall
WALLS = [((-4, -4), (516, -4)), ((516, -4), (516, 516)),
         ((516, 516), (-4, 516)), ((-4, 516), (-4, -4))]
CIRCLE_RADIUS = 32
SQUARE_HALF = 28
TRIANGLE_RADIUS = 40            # circumradius of the equilateral triangle
BOUND_RADIUS = 40               # no part of any shape is farther than this from its centre
MIN_GAP = 2 * BOUND_RADIUS + 8  # minimum distance between the centres of two objects
SPEED = (180.0, 320.0)          # launch speed (units / s), uniform
AIM_PROB, AIM_NOISE = 0.7, 0.2  # a launched object is aimed at another one (+/- 0.2 rad)

SHAPES = ("circle", "square", "triangle")
COLORS = {
    "gray": (128, 128, 128), "red": (220, 40, 40), "blue": (40, 80, 230),
    "green": (30, 160, 60), "brown": (140, 85, 40), "purple": (140, 60, 200),
    "cyan": (40, 200, 210), "yellow": (240, 205, 30),
}
BACKGROUND = (240, 240, 240)
OBJECT_TYPE, WALL_TYPE = 1, 2   # pymunk collision types
OBJECT_BIT, GHOST_BIT, WALL_BIT = 1, 2, 4   # pymunk collision-filter categories



def _local_outline(shape):
    """Polygon vertices of a square or triangle in body coordinates (centroid at 0)."""
    if shape == "square":
        h = SQUARE_HALF
        return [(-h, -h), (h, -h), (h, h), (-h, h)]
    angles = (-math.pi / 2, math.pi / 6, 5 * math.pi / 6)
    return [(TRIANGLE_RADIUS * math.cos(a), TRIANGLE_RADIUS * math.sin(a)) for a in angles]


# ---------------------------------------------------------------------------------------
# Scenes and exact re-simulation
# ---------------------------------------------------------------------------------------
def sample_scene(rng, n_objects, n_frames, frame_substeps):
    """Draw a scene spec: the objects' initial state plus the video's timing.

    Returns {"objects": [{"shape", "color", "position": [x, y], "velocity": [vx, vy],
    "angle", "angular_velocity"}], "n_frames", "frame_substeps"}, plain JSON values.
    """
    if not 2 <= n_objects <= len(SHAPES) * len(COLORS):
        raise ValueError(f"expected 2 to {len(SHAPES) * len(COLORS)} objects, got {n_objects}")
    kinds = rng.choice(len(SHAPES) * len(COLORS), n_objects, replace=False)
    positions = []
    for _ in range(10_000):
        p = rng.uniform(BOUND_RADIUS + 8, WORLD_SIZE - BOUND_RADIUS - 8, 2)
        if all(np.hypot(*(p - q)) >= MIN_GAP for q in positions):
            positions.append(p)
            if len(positions) == n_objects:
                break
    else:
        raise ValueError(f"could not place {n_objects} objects {MIN_GAP} units apart")
    velocities = np.zeros((n_objects, 2))
    for k in rng.choice(n_objects, int(rng.integers(1, n_objects)), replace=False):
        if rng.random() < AIM_PROB:
            target = rng.choice([j for j in range(n_objects) if j != k])
            dx, dy = positions[target] - positions[k]
            heading = math.atan2(dy, dx) + rng.uniform(-AIM_NOISE, AIM_NOISE)
        else:
            heading = rng.uniform(0, 2 * math.pi)
        velocities[k] = rng.uniform(*SPEED) * np.array([math.cos(heading), math.sin(heading)])
    colors = list(COLORS)
    objects = [{"shape": SHAPES[int(kind) // len(colors)], "color": colors[int(kind) % len(colors)],
                "position": [float(v) for v in p], "velocity": [float(v) for v in vel],
                "angle": float(rng.uniform(0, 2 * math.pi)), "angular_velocity": 0.0}
               for kind, p, vel in zip(kinds, positions, velocities)]
    return {"objects": objects, "n_frames": int(n_frames), "frame_substeps": int(frame_substeps)}


@dataclass
class Trajectory:
    """One simulation of a scene over its T frames, K = number of objects in the spec.

    position float64 (T, K, 2), angle float64 (T, K), velocity float64 (T, K, 2); the rows
    of a removed object are NaN. collisions: [(frame, a, b)] with a < b indices into the
    spec's object list, in the order the contacts began; a contact that begins while
    stepping from frame t - 1 to frame t is logged at frame t.
    """
    position: np.ndarray
    angle: np.ndarray
    velocity: np.ndarray
    collisions: list


def _log_begin(arbiter, space, log):
    a, b = sorted(log["index"][s] for s in arbiter.shapes)
    event = (log["frame"], a, b)
    if event not in log["seen"]:
        log["seen"].add(event)
        log["events"].append(event)


def simulate(scene, remove=None):
    """Run a scene spec from its initial state; ``remove``: index of an object to take out.

    The space is rebuilt from scratch every call (walls, then the objects in spec order),
    so two calls with the same arguments give bit-identical trajectories.

    A removed object stays in the space as a ghost that collides with the walls only: it
    pushes nothing and is not reported, but it keeps its place in pymunk's broadphase, so
    the order in which the solver visits the other contacts is the factual run's. Left out
    altogether, that order can change, and the round-off of a reordered solve grows
    chaotically: in a sample of 300 videos, 4 of the 513 objects that touch nothing then
    appeared to change other trajectories. With the ghost, removing an object that touches
    no other object changes nothing, bit for bit.
    """
    for key in ("objects", "n_frames", "frame_substeps"):
        if key not in scene:
            raise ValueError(f"scene spec is missing {key!r}; found keys {sorted(scene)}")
    objects, n_frames = scene["objects"], scene["n_frames"]
    if remove is not None and not 0 <= remove < len(objects):
        raise ValueError(f"remove must index one of the {len(objects)} objects, got {remove}")
    space = pymunk.Space()
    space.gravity = (0, 0)
    space.damping = DAMPING
    for a, b in WALLS:
        wall = pymunk.Segment(space.static_body, a, b, WALL_RADIUS)
        wall.elasticity, wall.friction, wall.collision_type = ELASTICITY, FRICTION, WALL_TYPE
        wall.filter = pymunk.ShapeFilter(categories=WALL_BIT, mask=OBJECT_BIT | GHOST_BIT)
        space.add(wall)
    log = {"frame": 0, "index": {}, "seen": set(), "events": []}
    bodies = {}
    for k, obj in enumerate(objects):
        if obj["shape"] == "circle":
            body = pymunk.Body(1.0, pymunk.moment_for_circle(1.0, 0, CIRCLE_RADIUS))
            shape = pymunk.Circle(body, CIRCLE_RADIUS)
        elif obj["shape"] in SHAPES:
            outline = _local_outline(obj["shape"])
            body = pymunk.Body(1.0, pymunk.moment_for_poly(1.0, outline))
            shape = pymunk.Poly(body, outline)
        else:
            raise ValueError(f"object {k}: expected a shape in {SHAPES}, got {obj['shape']!r}")
        body.angle = obj["angle"]
        body.position = tuple(obj["position"])
        body.velocity = tuple(obj["velocity"])
        body.angular_velocity = obj["angular_velocity"]
        shape.elasticity, shape.friction, shape.collision_type = ELASTICITY, FRICTION, OBJECT_TYPE
        if k == remove:
            shape.filter = pymunk.ShapeFilter(categories=GHOST_BIT, mask=WALL_BIT)
        else:
            shape.filter = pymunk.ShapeFilter(categories=OBJECT_BIT, mask=OBJECT_BIT | WALL_BIT)
            bodies[k], log["index"][shape] = body, k
        space.add(body, shape)
    space.on_collision(OBJECT_TYPE, OBJECT_TYPE, begin=_log_begin, data=log)

    shape3 = (n_frames, len(objects))
    position, velocity = np.full((*shape3, 2), np.nan), np.full((*shape3, 2), np.nan)
    angle = np.full(shape3, np.nan)
    for t in range(n_frames):
        if t > 0:
            log["frame"] = t
            for _ in range(scene["frame_substeps"]):
                space.step(DT)
        for k, body in bodies.items():
            position[t, k] = body.position
            velocity[t, k] = body.velocity
            angle[t, k] = body.angle
    return Trajectory(position, angle, velocity, log["events"])


# ---------------------------------------------------------------------------------------
# Rendering: pillow on a supersampled canvas, box-filtered down (anti-aliased)
# ---------------------------------------------------------------------------------------
def render_frame(objects, position, angle, size=64, supersample=4):
    """Draw one frame: pixels uint8 (size, size, 3) and object ids uint8 (size, size).

    objects: the spec's object list; position (K, 2) and angle (K,) at this frame (NaN
    rows, removed objects, are skipped). Ids: 0 background, k + 1 for object k. Both are
    drawn on the same canvas; pixels are box-filtered down, ids sampled nearest.
    """
    canvas = size * supersample
    scale = canvas / WORLD_SIZE
    rgb = Image.new("RGB", (canvas, canvas), BACKGROUND)
    ids = Image.new("L", (canvas, canvas), 0)
    draws = (ImageDraw.Draw(rgb), ImageDraw.Draw(ids))
    for k, obj in enumerate(objects):
        x, y = position[k]
        if math.isnan(x):
            continue
        fills = (COLORS[obj["color"]], k + 1)
        if obj["shape"] == "circle":
            r = CIRCLE_RADIUS
            box = [(x - r) * scale, (y - r) * scale, (x + r) * scale, (y + r) * scale]
            for draw, fill in zip(draws, fills):
                draw.ellipse(box, fill=fill)
        else:
            c, s = math.cos(angle[k]), math.sin(angle[k])
            outline = [((x + c * px - s * py) * scale, (y + s * px + c * py) * scale)
                       for px, py in _local_outline(obj["shape"])]
            for draw, fill in zip(draws, fills):
                draw.polygon(outline, fill=fill)
    return (np.asarray(rgb.reduce(supersample)),
            np.asarray(ids.resize((size, size), Image.NEAREST)))


def render_video(scene, trajectory, size=64):
    """Every frame of a trajectory: pixels uint8 (T, H, W, 3), ids uint8 (T, H, W)."""
    frames = [render_frame(scene["objects"], p, a, size)
              for p, a in zip(trajectory.position, trajectory.angle)]
    return np.stack([f[0] for f in frames]), np.stack([f[1] for f in frames])
