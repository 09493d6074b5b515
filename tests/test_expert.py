import numpy as np
import pytest

import expert
from data import PushTDataConfig, collect, collect_episode, load_dataset
from expert import ScriptedExpert, contact_scores, outline_inside, pose_error, sample_target
from pusht import PushTEnv, wrap_angle


def block_motion(states):
    """Per step: did the block move (more than 0.5 px or 0.005 rad)?"""
    shift = np.linalg.norm(np.diff(states[:, 2:4], axis=0), axis=1)
    turn = np.abs(wrap_angle(np.diff(states[:, 4])))
    return (shift > 0.5) | (turn > 0.005)


def test_targets_fit_inside_the_walls():
    rng = np.random.default_rng(0)
    for _ in range(50):
        x, y, angle = sample_target(rng)
        assert outline_inside(x, y, angle, expert.TARGET_MARGIN)
    assert not outline_inside(30.0, 256.0, 0.0, 0.0)   # the bar would cross the left wall


def test_the_best_contact_pushes_toward_the_target():
    state = np.array([100.0, 100.0, 256.0, 256.0, 0.3, 0.0, 0.0])
    rot = expert._rotation(state[4])
    pushes = -(expert.NORMALS @ rot.T)   # every contact's push direction, world
    for direction in ([1.0, 0.0], [0.0, -1.0], [-0.6, 0.8]):   # pure translations
        target = np.array([*(state[2:4] + 60 * np.array(direction)), state[4]])
        best = np.argmax(contact_scores(state, target))
        # the faces push along four directions: the chosen one is the nearest to the shift
        assert pushes[best] @ direction > 0.85 and pushes[best] @ direction >= (pushes @ direction).max() - 1e-9
        assert pose_error(state, target)[0] @ direction > 59   # the error is the centre's shift
    # a pure turn about the centre of mass: the best push has a long lever arm (a tip of the
    # bar or the stem's end)
    cog = state[2:4] + rot @ expert.COG
    target = np.array([*(cog - expert._rotation(1.3) @ expert.COG), 1.3])
    assert np.linalg.norm(pose_error(state, target)[0]) < 1e-9
    best = np.argmax(contact_scores(state, target))
    assert np.linalg.norm(expert.CONTACTS[best] - expert.COG) > 50


def test_the_expert_reaches_its_first_target_on_most_seeds():
    reached = []
    for seed in range(10):
        rng = np.random.default_rng(seed)
        env = PushTEnv(16)
        env.reset(seed=int(rng.integers(2**31)))
        policy = ScriptedExpert(noise=0.03)
        first = None
        for t in range(200):
            action = policy(env, t, rng)
            first = policy.target if first is None else first
            if policy.target is not first:   # reached: a new target was drawn
                break
            env.step(action)
        reached.append(policy.target is not first)
    assert sum(reached) >= 8, reached   # 30 of 30 seeds within 166 steps when tuned


def test_the_expert_moves_the_block_in_most_steps():
    expert_moves = [block_motion(collect_episode(100, seed, 16, "expert", 0.03)["state"]).mean()
                    for seed in range(8)]
    weak_moves = [block_motion(collect_episode(100, seed, 16, "weak")["state"]).mean() for seed in range(8)]
    assert np.mean(expert_moves) >= 0.7 and np.mean(weak_moves) < 0.5, (expert_moves, weak_moves)


def test_expert_collection_is_deterministic_and_loads(tmp_path):
    cfg = PushTDataConfig(episodes=3, min_steps=30, max_steps=30, render_size=16, policy="expert")
    a = collect(cfg, tmp_path / "a", workers=1, progress=False)
    b = collect(cfg, tmp_path / "b", workers=2, progress=False)
    assert np.array_equal(a.state, b.state) and np.array_equal(a.action, b.action, equal_nan=True)
    loaded = load_dataset(tmp_path / "a", expect=cfg)
    assert loaded.config.policy == "expert" and np.array_equal(loaded.pixels, a.pixels)
    quiet = collect(PushTDataConfig(episodes=3, min_steps=30, max_steps=30, render_size=16, policy="expert",
                                    expert_noise=0.0), tmp_path / "c", workers=1, progress=False)
    assert not np.array_equal(quiet.action, a.action, equal_nan=True)   # the noise is in the actions
    with pytest.raises(ValueError, match="--expert-noise is a standard deviation"):
        collect(PushTDataConfig(episodes=3, policy="expert", expert_noise=-0.1), tmp_path / "d", workers=1)
