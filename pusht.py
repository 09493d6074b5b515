"""The Push-T world (FACTS section 4): the environment the paper evaluated on, as gymnasium's
``PushT-cjepa-v0``.

A 512 x 512 pymunk world (y down) with a kinematic disk agent driven by a PD controller toward
``agent + 100 * action`` and a T-shaped block that only moves while pushed (space damping 0).
One env step is 10 physics substeps of 0.01 s. Pixels are a pure function of the 7-d state, so
every frame, and its ground-truth object-id map, can be rebuilt from the stored state. Datasets
of it are collected by ``data.py``.
"""

import math

import gymnasium as gym
import numpy as np
import pymunk
from PIL import Image, ImageDraw

# ---------------------------------------------------------------------------------------
# The world's constants (FACTS section 4)
# ---------------------------------------------------------------------------------------
WORLD_SIZE = 512
SUBSTEPS, DT = 10, 0.01          # 10 Hz control, 100 Hz physics
K_P, K_V = 100.0, 20.0           # PD gains of the agent
ACTION_SCALE = 100.0             # target = agent position + 100 * action
AGENT_RADIUS = 15
WALLS = [((5, 506), (5, 5)), ((5, 5), (506, 5)), ((506, 5), (506, 506)), ((5, 506), (506, 506))]
WALL_RADIUS = 2
INNER_LOW, INNER_HIGH = 5 + WALL_RADIUS, 506 - WALL_RADIUS     # the walls' inner faces
AGENT_LOW, AGENT_HIGH = INNER_LOW + AGENT_RADIUS, INNER_HIGH - AGENT_RADIUS  # agent centres inside
BAR = [(-60, 30), (60, 30), (60, 0), (-60, 0)]                 # T-block, local coordinates
STEM = [(-15, 30), (-15, 120), (15, 120), (15, 30)]
TEE_OUTLINE = [(-60, 0), (60, 0), (60, 30), (15, 30), (15, 120), (-15, 120), (-15, 30), (-60, 30)]
GOAL_POSE = (256.0, 256.0, math.pi / 4)                        # drawn in every frame
DEFAULT_GOAL_STATE = np.array([256, 400, *GOAL_POSE, 0, 0], dtype=np.float64)
SUCCESS_DIST, SUCCESS_ANGLE = 20.0, math.pi / 9

COLORS = {
    "background": (255, 255, 255), "goal": (144, 238, 144), "wall": (211, 211, 211),
    "block": (142, 163, 183), "block_edge": (119, 136, 153),
    "agent": (65, 105, 225), "agent_inner": (78, 126, 255),
}
# Ground-truth object ids of ``render_ids``; walls count as background.
OBJECT_IDS = {"background": 0, "goal": 1, "block": 2, "agent": 3}

STATE_DIM, PROPRIO_DIM, ACTION_DIM = 7, 4, 2


def wrap_angle(a):
    """Angle difference folded into [-pi, pi)."""
    return (np.asarray(a) + np.pi) % (2 * np.pi) - np.pi


def is_success(state, goal_state):
    """FACTS section 4: ||(ax, ay, bx, by) - goal||_2 < 20 and |wrapped angle error| < pi/9.

    state, goal_state: (..., 7) arrays that broadcast against each other. Returns bool (...).
    """
    state, goal_state = np.asarray(state, np.float64), np.asarray(goal_state, np.float64)
    dist = np.linalg.norm(state[..., :4] - goal_state[..., :4], axis=-1)
    angle = np.abs(wrap_angle(state[..., 4] - goal_state[..., 4]))
    return (dist < SUCCESS_DIST) & (angle < SUCCESS_ANGLE)


# ---------------------------------------------------------------------------------------
# Rendering: pillow on a supersampled canvas, box-filtered down (anti-aliased)
# ---------------------------------------------------------------------------------------
def tee_polygon(x, y, angle, scale):
    """World outline of the T-block whose body origin is at (x, y), in canvas pixels."""
    c, s = math.cos(angle), math.sin(angle)
    return [((x + c * px - s * py) * scale, (y + s * px + c * py) * scale) for px, py in TEE_OUTLINE]


def _draw(draw, state, scale, palette, edge_width):
    """Paint one frame: goal, walls, agent, block (the order pymunk created the bodies)."""
    ax, ay, bx, by, angle = (float(v) for v in state[:5])
    draw.polygon(tee_polygon(*GOAL_POSE, scale), fill=palette["goal"])
    for a, b in WALLS:
        draw.line([(a[0] * scale, a[1] * scale), (b[0] * scale, b[1] * scale)],
                  fill=palette["wall"], width=max(1, round(2 * WALL_RADIUS * scale)))

    def disk(r, color):
        draw.ellipse([(ax - r) * scale, (ay - r) * scale, (ax + r) * scale, (ay + r) * scale],
                     fill=color)

    disk(AGENT_RADIUS, palette["agent"])
    disk(11, palette["agent_inner"])
    draw.polygon(tee_polygon(bx, by, angle, scale), fill=palette["block"],
                 outline=palette["block_edge"], width=edge_width)


def render_pixels(state, size=64, supersample=4):
    """RGB frame of a 7-d state: uint8 (size, size, 3), anti-aliased by supersampling."""
    canvas = size * supersample
    img = Image.new("RGB", (canvas, canvas), COLORS["background"])
    scale = canvas / WORLD_SIZE
    _draw(ImageDraw.Draw(img), state, scale, COLORS, edge_width=max(1, round(4 * scale)))
    return np.asarray(img.reduce(supersample))


def render_ids(state, size=64, supersample=4):
    """Ground-truth object ids of a 7-d state: uint8 (size, size), ids as in OBJECT_IDS.

    Drawn on the same supersampled canvas as ``render_pixels`` and sampled at pixel
    centres, so object boundaries agree with the RGB frame to within a pixel.
    """
    canvas = size * supersample
    img = Image.new("L", (canvas, canvas), OBJECT_IDS["background"])
    palette = {"goal": OBJECT_IDS["goal"], "wall": OBJECT_IDS["background"],
               "agent": OBJECT_IDS["agent"], "agent_inner": OBJECT_IDS["agent"],
               "block": OBJECT_IDS["block"], "block_edge": OBJECT_IDS["block"]}
    scale = canvas / WORLD_SIZE
    _draw(ImageDraw.Draw(img), state, scale, palette, edge_width=max(1, round(4 * scale)))
    return np.asarray(img.resize((size, size), Image.NEAREST))


# ---------------------------------------------------------------------------------------
# The environment
# ---------------------------------------------------------------------------------------
class PushTEnv(gym.Env):
    """Push-T as evaluated in the paper.

    reset(seed, options): ``options={"state": 7-vector}`` starts from that state,
    ``options={"goal_state": 7-vector}`` sets the goal (default: the drawn goal pose with
    the agent at (256, 400)). Otherwise the state is drawn as in FACTS: agent U[50, 450]^2,
    block U[100, 400]^2, angle U[-2 pi, 2 pi], at rest.
    step(action in [-1, 1]^2) -> obs {"pixels": uint8 (H, W, 3), "proprio": float32 (4,)},
    reward (1.0 on success), terminated (= success), truncated (False), info with the
    7-d "state", "is_success" and "goal_state".

    restore_substep: setting a state runs one physics substep afterwards, as SWM does and
    the paper's protocol therefore did (FACTS section 4); the agent then starts v * 0.01 s
    ahead of the state given. False sets the state exactly (``diagnostics/replay_check.py``
    measures what that substep does to replaying a dataset's actions).
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(self, render_size=64, render_mode=None, restore_substep=True):
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        if int(render_size) < 8:
            raise ValueError(f"render_size must be at least 8 pixels, got {render_size}")
        self.render_size = int(render_size)
        self.render_mode = render_mode
        self.restore_substep = restore_substep
        self.action_space = gym.spaces.Box(-1.0, 1.0, (ACTION_DIM,), np.float32)
        self.observation_space = gym.spaces.Dict({
            "pixels": gym.spaces.Box(0, 255, (self.render_size, self.render_size, 3), np.uint8),
            "proprio": gym.spaces.Box(-np.inf, np.inf, (PROPRIO_DIM,), np.float32),
        })
        self.goal_state = DEFAULT_GOAL_STATE.copy()
        self._build_world()

    def _build_world(self):
        """A fresh pymunk space; bodies in the order walls, agent, block (bar, then stem)."""
        self.space = pymunk.Space()
        self.space.gravity = (0, 0)
        self.space.damping = 0.0                  # dynamic bodies keep no velocity of their own
        for a, b in WALLS:
            self.space.add(pymunk.Segment(self.space.static_body, a, b, WALL_RADIUS))
        self.agent = pymunk.Body(body_type=pymunk.Body.KINEMATIC)
        self.space.add(self.agent, pymunk.Circle(self.agent, AGENT_RADIUS))
        mass = 1.0
        self.block = pymunk.Body(mass, 2 * pymunk.moment_for_poly(mass, BAR))
        bar, stem = pymunk.Poly(self.block, BAR), pymunk.Poly(self.block, STEM)
        self.block.center_of_gravity = (bar.center_of_gravity + stem.center_of_gravity) / 2
        self.space.add(self.block, bar, stem)

    def _set_state(self, state, substep=None):
        """Agent velocity, agent position, block angle, block position, then one substep
        (``substep``: None follows ``restore_substep``)."""
        state = np.asarray(state, dtype=np.float64)
        if state.shape != (STATE_DIM,) or not np.all(np.isfinite(state)):
            raise ValueError(f"expected a finite state of shape (7,), got {state.shape}: {state}")
        if substep is None:
            substep = self.restore_substep
        self.agent.velocity = (float(state[5]), float(state[6]))
        self.agent.position = (float(state[0]), float(state[1]))
        self.block.angle = float(state[4])        # angle first: position is the body origin
        self.block.position = (float(state[2]), float(state[3]))
        if substep:
            self.space.step(DT)

    def drive_block(self, velocity, angular_velocity):
        """Give the block a motion of its own, from now to the next reset: ``velocity``
        (px/s, of its centre of gravity) and ``angular_velocity`` (rad/s).

        The space's damping (0) sets a dynamic body's velocity to zero at every substep,
        before contacts are solved, which is why the block otherwise only moves while pushed.
        Here that velocity is set to this motion instead, so the block slides and turns at
        it wherever the walls and the agent leave it free, and they stop or push it as
        before. Only the "all moving" collection calls it.
        """
        v, w = (float(velocity[0]), float(velocity[1])), float(angular_velocity)

        def own_motion(body, gravity, damping, dt):
            body.velocity, body.angular_velocity = v, w

        self.block.velocity_func = own_motion
        self.block.velocity, self.block.angular_velocity = v, w   # from the next substep on

    def get_state(self):
        """The 7-d state (ax, ay, bx, by, angle mod 2 pi, avx, avy), float64."""
        a, b, v = self.agent.position, self.block.position, self.agent.velocity
        return np.array([a.x, a.y, b.x, b.y, self.block.angle % (2 * np.pi), v.x, v.y])

    def _observe(self):
        state = self.get_state()
        obs = {"pixels": render_pixels(state, self.render_size),
               "proprio": state[[0, 1, 5, 6]].astype(np.float32)}
        info = {"state": state, "is_success": bool(is_success(state, self.goal_state)),
                "goal_state": self.goal_state.copy()}
        self._last_pixels = obs["pixels"]
        return obs, info

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        options = dict(options or {})
        unknown = sorted(set(options) - {"state", "goal_state"})
        if unknown:
            raise ValueError(f"unknown reset options {unknown}; expected 'state' and/or 'goal_state'")
        if "goal_state" in options:
            goal = np.asarray(options["goal_state"], dtype=np.float64)
            if goal.shape != (STATE_DIM,):
                raise ValueError(f"expected goal_state of shape (7,), got {goal.shape}")
            self.goal_state = goal.copy()
        else:
            self.goal_state = DEFAULT_GOAL_STATE.copy()
        if "state" in options:
            state = options["state"]
        else:
            rng = self.np_random
            state = np.concatenate([rng.uniform(50, 450, 2), rng.uniform(100, 400, 2),
                                    rng.uniform(-2 * np.pi, 2 * np.pi, 1), np.zeros(2)])
        self._build_world()
        self._set_state(state)
        return self._observe()

    def step(self, action):
        action = np.asarray(action, dtype=np.float64)
        if action.shape != (ACTION_DIM,) or not np.all(np.isfinite(action)):
            raise ValueError(f"expected a finite action of shape (2,), got {action.shape}: {action}")
        self._advance(action)
        obs, info = self._observe()
        success = info["is_success"]
        return obs, float(success), success, False, info

    def _advance(self, action):
        """One env step of physics: SUBSTEPS times, the agent's velocity moves by the PD law
        toward agent + 100 * action, then the space steps. Written per coordinate in plain
        floats (the same operations as with pymunk's vectors, bit for bit, in about half the time)."""
        agent, step = self.agent, self.space.step
        px, py = agent.position
        tx, ty = px + ACTION_SCALE * float(action[0]), py + ACTION_SCALE * float(action[1])
        for _ in range(SUBSTEPS):
            (px, py), (vx, vy) = agent.position, agent.velocity
            agent.velocity = (vx + (K_P * (tx - px) - K_V * vx) * DT, vy + (K_P * (ty - py) - K_V * vy) * DT)
            step(DT)

    def simulate(self, state, actions):
        """The state (7,) that ``actions`` (T, 2) lead to from ``state`` (7,), set exactly (no
        extra substep) in a fresh world: physics only, no frames and no success test, so a
        planner can use the simulator as a perfect world model (diagnostics/sim_plan.py). The
        env is left in that state; ``reset`` it before stepping it as an episode."""
        self._build_world()
        self._set_state(state, substep=False)
        for action in np.asarray(actions, dtype=np.float64):
            self._advance(action)
        return self.get_state()

    def render(self):
        return self._last_pixels


gym.register(id="PushT-cjepa-v0", entry_point=PushTEnv, max_episode_steps=300)
