"""A scripted Push-T expert: expert-like data without a download (``data.py --policy expert``).

The paper trained on expert demonstrations (FACTS section 9); the weak expert we collect with
otherwise moves the block in a third of its steps. This pusher uses only the state and the
block's geometry, no learned model:

1. it picks a target pose for the T, inside the walls;
2. it scores contact points on the block's outline by how well a push there, along the inward
   normal, moves the pose toward the target: the push's translation along the normal, and its
   turn from the lever arm about the centre of mass (r x d / rho, rho the block's radius of
   gyration), against the pose error (position, and angle times rho);
3. it walks the agent to a staging point off that face, around the block when the straight
   way would hit it, then pushes through the contact point; it re-plans the contact every few
   steps as the block moves, and picks a new target when the block reaches the current one.

``ScriptedExpert(noise)`` is one episode's policy: ``expert(env, t, rng)`` returns the action,
Gaussian noise of std ``noise`` added (the paper's data was expert motion with noise).
"""

import numpy as np

from pusht import (ACTION_SCALE, AGENT_HIGH, AGENT_LOW, AGENT_RADIUS, BAR, INNER_HIGH, INNER_LOW, STEM,
                   TEE_OUTLINE, wrap_angle)

COG = np.array([0.0, 45.0])     # the block's centre of mass, local (bar and stem weigh the same)
RHO = 54.8                      # its radius of gyration: sqrt(I / m), I = 2 x the bar's moment
# Values tuned on 50 episodes of 100 steps (docs/expert.md): the block moves in ~79 % of steps.
TARGET_MARGIN = 25.0            # target outlines keep this far from the walls
REACHED_PX, REACHED_RAD = 15.0, 0.2   # a target counts as reached within these (success: 20, 0.35)
TARGET_CHOICES = 12             # a new target is the most pushable of this many samples
STAGING = AGENT_RADIUS + 6.0    # staging point: this far off the contact point, along the normal
CLEARANCE = AGENT_RADIUS + 6.0  # the agent's centre keeps this far from the block while walking
WALK_GAIN = 2.0                 # walking aims this many times as far as the point (the PD lags)
WALK_COST = 0.6                 # a contact's score loses this per 100 px of walk to its staging point
MAX_WALK = 20                   # steps to reach a staging point before choosing again
PUSH_DEPTH = 10.0               # pushing aims this far past the contact: ~4 px of block a step
SLIDE = 50.0                    # while pushing, the agent slides to the best contact this near,
                                # as long as that contact's score is not negative
PATIENCE = 12                   # pushing steps without a new best pose error before choosing again


def _outline_contacts(step=8.0, corner_gap=AGENT_RADIUS + 2.0):
    """Candidate contact points on the T's outline and their outward normals, local frame.

    Points every ``step`` px along each edge, none within ``corner_gap`` of the two concave
    corners (the agent would touch the other face first) or 4 px of a convex one."""
    outline = np.array(TEE_OUTLINE, float)
    area = 0.5 * np.sum(outline[:, 0] * np.roll(outline[:, 1], -1) - np.roll(outline[:, 0], -1) * outline[:, 1])
    concave = [np.array(p, float) for p in [(15, 30), (-15, 30)]]
    points, normals = [], []
    for a, b in zip(outline, np.roll(outline, -1, axis=0)):
        edge = b - a
        length = np.linalg.norm(edge)
        tangent = edge / length
        normal = np.array([tangent[1], -tangent[0]]) * (1 if area > 0 else -1)   # outward
        for s in np.arange(4.0, length - 4.0 + 1e-9, step):
            p = a + s * tangent
            if min(np.linalg.norm(p - c) for c in concave) >= corner_gap:
                points.append(p)
                normals.append(normal)
    return np.array(points), np.array(normals)


CONTACTS, NORMALS = _outline_contacts()


def _rotation(angle):
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s], [s, c]])


def block_frame(state):
    """(origin, rotation) of the block in state (7,): world = origin + rotation @ local."""
    return np.asarray(state[2:4], float), _rotation(state[4])


def distance_to_block(point, state):
    """Distance from a world point to the block (0 inside it): the nearer of bar and stem."""
    origin, rot = block_frame(state)
    local = rot.T @ (np.asarray(point, float) - origin)
    best = np.inf
    for rect in (BAR, STEM):
        lo, hi = np.min(rect, axis=0), np.max(rect, axis=0)
        best = min(best, np.linalg.norm(np.maximum(0, np.maximum(lo - local, local - hi))))
    return best


def outline_inside(x, y, angle, margin):
    """Whether the T at pose (x, y, angle) keeps ``margin`` px from the walls."""
    world = np.array(TEE_OUTLINE, float) @ _rotation(angle).T + [x, y]
    return world.min() >= INNER_LOW + margin and world.max() <= INNER_HIGH - margin


def sample_target(rng):
    """A target pose (x, y, angle) of the block's origin whose outline fits inside the walls."""
    while True:
        x, y = rng.uniform(INNER_LOW, INNER_HIGH, 2)
        angle = rng.uniform(-np.pi, np.pi)
        if outline_inside(x, y, angle, TARGET_MARGIN):
            return np.array([x, y, angle])


def pose_error(state, target):
    """(error of the centre of mass in px (2,), angle error in rad) from state to target."""
    origin, rot = block_frame(state)
    goal_cog = target[:2] + _rotation(target[2]) @ COG
    return goal_cog - (origin + rot @ COG), float(wrap_angle(target[2] - state[4]))


def contact_scores(state, target):
    """How well pushing at each candidate contact moves the block toward ``target``: the
    cosine between the push's (translation, rho x turn) and the error's (position, rho x angle)."""
    _, rot = block_frame(state)
    e_pos, e_ang = pose_error(state, target)
    goal = np.concatenate([e_pos, [RHO * e_ang]])
    push = -(NORMALS @ rot.T)                          # (K, 2) push directions, world
    lever = (CONTACTS - COG) @ rot.T                   # (K, 2) from the centre of mass
    turn = (lever[:, 0] * push[:, 1] - lever[:, 1] * push[:, 0]) / RHO
    motion = np.concatenate([push, turn[:, None]], axis=1)
    motion /= np.linalg.norm(motion, axis=1, keepdims=True)
    return motion @ goal / max(np.linalg.norm(goal), 1e-9)


class ScriptedExpert:
    """One episode of the scripted pusher; call it as ``expert(env, t, rng)`` for an action."""

    def __init__(self, noise=0.0):
        self.noise = float(noise)
        self.target = None
        self.contact = None       # index into CONTACTS while walking to or pushing there
        self.phase = "choose"
        self.steps_in_phase = 0
        self.best_error, self.since_best = np.inf, 0   # progress toward the target

    def __call__(self, env, t, rng):
        state = env.get_state()
        action = self.act(state, rng)
        if self.noise:
            action = action + self.noise * rng.standard_normal(2)
        return np.clip(action, -1, 1)

    def act(self, state, rng):
        """The action for ``state`` (7,), before noise."""
        if self.target is None or self.reached(state):
            self.target, self.phase, self.best_error = self.next_target(state, rng), "choose", np.inf
        e_pos, e_ang = pose_error(state, self.target)
        error = np.linalg.norm(e_pos) + RHO * abs(e_ang)
        if error < self.best_error:
            self.best_error, self.since_best = error, 0
        else:
            self.since_best += 1
        origin, rot = block_frame(state)
        agent = np.asarray(state[:2], float)
        scores = self.contact_scores(state)
        if self.phase == "push":   # slide along the face to the best contact within reach
            touch = origin + (CONTACTS + AGENT_RADIUS * NORMALS) @ rot.T
            near = np.linalg.norm(touch - agent, axis=1) < SLIDE
            best_near = np.where(near, scores, -np.inf)
            if best_near.max() >= 0 and self.since_best < PATIENCE:
                self.contact = int(np.argmax(best_near))
            else:   # no push from here helps, or pushing from here stopped helping
                self.phase, self.since_best = "choose", 0
        if self.phase == "walk" and self.steps_in_phase > MAX_WALK:
            self.phase = "choose"
        if self.phase == "choose":   # the best push, less the walk to it
            staging = origin + (CONTACTS + STAGING * NORMALS) @ rot.T
            walk = np.linalg.norm(staging - agent, axis=1) / 100.0
            self.contact, self.phase, self.steps_in_phase = int(np.argmax(scores - WALK_COST * walk)), "walk", 0
        self.steps_in_phase += 1
        point, normal = origin + rot @ CONTACTS[self.contact], rot @ NORMALS[self.contact]
        if self.phase == "walk":
            staging = point + STAGING * normal
            if np.linalg.norm(agent - staging) < 8.0:
                self.phase, self.steps_in_phase = "push", 1
            else:
                return self.walk_to(agent, staging, state)
        aim = point + AGENT_RADIUS * normal - PUSH_DEPTH * normal
        if np.linalg.norm(agent - (point + AGENT_RADIUS * normal)) > SLIDE + 10:   # slipped off
            self.phase, self.steps_in_phase = "choose", 0
        return self.towards(agent, aim, 1.0)

    def next_target(self, state, rng):
        """Of TARGET_CHOICES sampled targets, the one the agent can start pushing toward soonest:
        the best contact score, less the walk to it, as a contact is chosen."""
        agent = np.asarray(state[:2], float)
        origin, rot = block_frame(state)
        walk = np.linalg.norm(origin + (CONTACTS + STAGING * NORMALS) @ rot.T - agent, axis=1) / 100.0
        targets = [sample_target(rng) for _ in range(TARGET_CHOICES)]
        return max(targets, key=lambda target: np.max(contact_scores(state, target) - WALK_COST * walk))

    def reached(self, state):
        e_pos, e_ang = pose_error(state, self.target)
        return np.linalg.norm(e_pos) < REACHED_PX and abs(e_ang) < REACHED_RAD

    def contact_scores(self, state):
        """``contact_scores`` toward the target, -inf where the agent cannot stand at the
        staging point (outside the walls)."""
        origin, rot = block_frame(state)
        staging = origin + (CONTACTS + STAGING * NORMALS) @ rot.T
        inside = np.all((staging >= AGENT_LOW + 2) & (staging <= AGENT_HIGH - 2), axis=1)
        return np.where(inside, contact_scores(state, self.target), -np.inf)

    def walk_to(self, agent, goal, state):
        """An action toward ``goal``: straight when the way is clear of the block, otherwise
        around it, one step along the circle about the block's centre of mass."""
        way = np.linspace(agent, goal, 12)
        if min(distance_to_block(p, state) for p in way[1:]) >= CLEARANCE:
            return self.towards(agent, goal, 1.0, WALK_GAIN)
        origin, rot = block_frame(state)
        cog = origin + rot @ COG
        radius = max(np.linalg.norm(agent - cog), 80.0 + CLEARANCE)
        here = np.arctan2(*(agent - cog)[::-1])
        there = np.arctan2(*(goal - cog)[::-1])
        turn = float(wrap_angle(there - here))
        if abs(turn) < 0.35:   # level with the goal (off the face, along its normal): go in
            return self.towards(agent, goal, 1.0, WALK_GAIN)
        step = np.sign(turn) * min(abs(turn), 35.0 / radius)   # about one step's length of arc
        nxt = cog + radius * np.array([np.cos(here + step), np.sin(here + step)])
        nxt = np.clip(nxt, AGENT_LOW, AGENT_HIGH)
        return self.towards(agent, nxt, 1.0, WALK_GAIN)

    @staticmethod
    def towards(agent, point, speed, gain=1.0):
        """The action whose PD target is ``gain`` times as far as ``point``, at most ``speed``
        (of 1) in each axis."""
        return np.clip(gain * (np.asarray(point) - agent) / ACTION_SCALE, -speed, speed)
