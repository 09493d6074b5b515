import json
import math
import shutil

import gymnasium
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env

from data import (DATA_PRESETS, DatasetError, FrameClips, INNER_HIGH, INNER_LOW, PushTDataConfig, Windows,
                  collect, collect_episode, load_dataset, sample_eval_pairs)
from pusht import (AGENT_RADIUS, DEFAULT_GOAL_STATE, OBJECT_IDS, PushTEnv, TEE_OUTLINE, is_success,
                   render_ids, render_pixels, wrap_angle)

FAR_STATE = [100.0, 100.0, 350.0, 350.0, 0.5, 0.0, 0.0]


def step_toward(env, target):
    """One env step whose relative action aims at the absolute point ``target``."""
    agent = env.get_state()[:2]
    return env.step((np.asarray(target) - agent) / 100.0)


def test_pd_step_response_matches_facts():
    env = PushTEnv(16)
    env.reset(options={"state": [100.0, 400.0, 350.0, 150.0, 0.0, 0.0, 0.0]})
    start = env.get_state()[:2].copy()
    target = start + [100.0, 0.0]
    distances, speeds = [], []
    for _ in range(5):
        _, _, _, _, info = step_toward(env, target)
        distances.append(info["state"][0] - start[0])
        speeds.append(info["state"][5])
    assert distances[0] == pytest.approx(29.6, abs=0.5)
    assert speeds[0] == pytest.approx(374, abs=1.0)
    assert distances[1] == pytest.approx(61.6, abs=0.5)
    assert distances[4] == pytest.approx(95.6, abs=0.5)


def test_block_body_matches_facts():
    env = PushTEnv(16)
    assert env.block.mass == 1.0
    assert env.block.moment == pytest.approx(3000.0)
    assert tuple(env.block.center_of_gravity) == pytest.approx((0.0, 45.0))


def test_set_state_puts_block_origin_at_position_whatever_the_angle():
    env = PushTEnv(16)
    for angle in (0.0, 1.0, 2.5, -2.0):
        _, info = env.reset(options={"state": [60.0, 60.0, 300.0, 250.0, angle, 0.0, 0.0]})
        assert info["state"][2:4] == pytest.approx([300.0, 250.0], abs=1e-9)
        assert info["state"][4] == pytest.approx(angle % (2 * math.pi), abs=1e-9)


def test_block_does_not_move_unless_pushed():
    env = PushTEnv(16)
    _, info = env.reset(options={"state": FAR_STATE})
    block = info["state"][2:5].copy()
    rng = np.random.default_rng(0)
    for _ in range(20):  # the agent wanders around (100, 100), far from the block
        _, _, _, _, info = step_toward(env, [100, 100] + rng.uniform(-40, 40, 2))
        assert np.array_equal(info["state"][2:5], block)
    for _ in range(20):  # now drive straight through the block
        _, _, _, _, info = step_toward(env, [350.0, 380.0])
    assert np.linalg.norm(info["state"][2:4] - block[:2]) > 1.0


def test_success_criterion_cases():
    goal = np.array([200.0, 200.0, 300.0, 300.0, 0.1, 0.0, 0.0])
    assert is_success(goal, goal)
    near = goal + [10, 0, 0, 10, 0.3, 50, 50]          # 14.1 px, 0.3 rad, velocity ignored
    assert is_success(near, goal)
    assert not is_success(goal + [0, 0, 0, 0, math.pi / 9 + 0.01, 0, 0], goal)
    assert not is_success(goal + [15, 0, 0, 14, 0, 0, 0], goal)  # 20.5 px, agent counts
    wrapped = goal.copy()
    wrapped[4] = 0.1 + 2 * math.pi - 0.05                  # same angle, other side of 2 pi
    assert is_success(wrapped, goal)
    batch = np.stack([goal, goal + [30, 0, 0, 0, 0, 0, 0]])
    assert is_success(batch, goal).tolist() == [True, False]


def test_env_reports_success_at_its_goal():
    env = PushTEnv(16)
    _, info = env.reset(options={"state": FAR_STATE, "goal_state": FAR_STATE})
    assert info["is_success"] and np.array_equal(info["goal_state"], FAR_STATE)
    _, info = env.reset(options={"state": FAR_STATE})
    assert not info["is_success"] and np.array_equal(info["goal_state"], DEFAULT_GOAL_STATE)


def test_same_seed_and_actions_give_identical_states_and_pixels():
    def run():
        env = PushTEnv(32)
        obs, info = env.reset(seed=3)
        rng = np.random.default_rng(1)
        frames, states = [obs["pixels"]], [info["state"]]
        for _ in range(30):
            obs, _, _, _, info = env.step(rng.uniform(-1, 1, 2))
            frames.append(obs["pixels"])
            states.append(info["state"])
        return np.stack(frames), np.stack(states)

    (f1, s1), (f2, s2) = run(), run()
    assert np.array_equal(s1, s2) and np.array_equal(f1, f2)
    assert not np.array_equal(s1[0], s1[-1])


def test_reset_from_state_takes_one_substep_as_swm_does():
    state = np.array([120.0, 130.0, 350.0, 350.0, 1.0, 200.0, -100.0])
    _, info = PushTEnv(16).reset(options={"state": state})
    # the agent keeps its velocity and coasts one 0.01 s substep; the block is untouched
    assert info["state"][:2] == pytest.approx(state[:2] + 0.01 * state[5:7], abs=1e-9)
    assert info["state"][5:7] == pytest.approx(state[5:7], abs=1e-9)
    assert info["state"][2:5] == pytest.approx(state[2:5], abs=1e-9)


@pytest.mark.filterwarnings("ignore:.*infinity")  # proprio is unbounded on purpose
def test_gymnasium_check_env_and_make():
    made = gymnasium.make("PushT-cjepa-v0", render_size=32, render_mode="rgb_array")
    check_env(made.unwrapped, skip_render_check=False)
    env = gymnasium.make("PushT-cjepa-v0", render_size=24)
    obs, _ = env.reset(seed=0)
    assert obs["pixels"].shape == (24, 24, 3) and obs["proprio"].dtype == np.float32


def test_bad_inputs_fail_clearly():
    env = PushTEnv(16)
    env.reset(seed=0)
    with pytest.raises(ValueError, match="shape \\(2,\\)"):
        env.step([0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="unknown reset options"):
        env.reset(options={"stat": FAR_STATE})
    with pytest.raises(ValueError, match="shape \\(7,\\)"):
        env.reset(options={"state": [1.0, 2.0]})


def test_rendering_colours_and_id_map():
    state = np.array([100.0, 400.0, 300.0, 150.0, 0.0, 0.0, 0.0])
    pixels, ids = render_pixels(state, 64), render_ids(state, 64)
    assert pixels.shape == (64, 64, 3) and pixels.dtype == np.uint8
    assert ids.shape == (64, 64)
    assert set(np.unique(ids)) == set(OBJECT_IDS.values())
    assert tuple(pixels[2 * 64 // 4, 32 // 4 + 2]) == (255, 255, 255)        # empty floor
    ay, ax = int(400 / 8), int(100 / 8)
    assert ids[ay, ax] == OBJECT_IDS["agent"]
    assert tuple(pixels[ay, ax]) == (78, 126, 255)                          # inner agent disk
    by, bx = int(165 / 8), int(300 / 8)                                      # inside the bar
    assert ids[by, bx] == OBJECT_IDS["block"] and tuple(pixels[by, bx]) == (142, 163, 183)
    # anti-aliasing: edge pixels take colours that are neither object's
    colours = {tuple(c) for c in pixels.reshape(-1, 3)}
    assert len(colours) > 10
    # the goal pixels sit where the goal T is drawn
    goal_pixels = pixels[ids == OBJECT_IDS["goal"]]
    assert (np.abs(goal_pixels.astype(int) - (144, 238, 144)).sum(1) < 60).mean() > 0.8


def test_dataset_round_trip_and_splits(tiny_dataset):
    data = tiny_dataset
    cfg = DATA_PRESETS["tiny"]
    again = load_dataset(data.path, expect=cfg)
    assert np.array_equal(again.pixels, data.pixels) and np.array_equal(again.state, data.state)
    n = data.episode_starts[-1]
    assert data.pixels.shape == (n, cfg.render_size, cfg.render_size, 3)
    train, val = set(data.splits["train"]), set(data.splits["val"])
    assert train.isdisjoint(val) and train | val == set(range(cfg.episodes))
    # each episode's last frame has no action, every other frame has one
    last = data.episode_starts[1:] - 1
    assert np.isnan(data.action[last]).all()
    assert not np.isnan(np.delete(data.action, last, axis=0)).any()
    # stored pixels are the rendering of the stored state
    assert np.array_equal(render_pixels(data.state[7], cfg.render_size), data.pixels[7])


def test_collection_is_deterministic(tiny_dataset, tmp_path):
    cfg = PushTDataConfig(episodes=3, min_steps=5, max_steps=8, seed=4)
    a = collect(cfg, tmp_path / "a", workers=1, progress=False)
    b = collect(cfg, tmp_path / "b", workers=2, progress=False)
    assert np.array_equal(a.state, b.state) and np.array_equal(a.pixels, b.pixels)


def test_truncated_or_corrupted_dataset_fails_clearly(tiny_dataset, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_dataset.path, broken)
    with open(broken / "pixels.npy", "r+b") as fh:
        fh.truncate(1000)
    with pytest.raises(DatasetError, match="pixels.npy: expected .* bytes"):
        load_dataset(broken)
    (broken / "meta.json").write_text("{not json")
    with pytest.raises(DatasetError, match="not valid JSON"):
        load_dataset(broken)
    (broken / "meta.json").unlink()
    with pytest.raises(DatasetError, match="meta.json is missing"):
        load_dataset(broken)
    with pytest.raises(DatasetError, match="another config"):
        load_dataset(tiny_dataset.path, expect=PushTDataConfig(episodes=99))


def test_interrupted_collection_leaves_nothing_loadable(tmp_path, monkeypatch):
    import files

    def boom(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(files, "atomic_write_json", boom)  # dies writing meta.json
    out = tmp_path / "ds"
    with pytest.raises(KeyboardInterrupt):
        collect(PushTDataConfig(episodes=2, min_steps=3, max_steps=3), out, workers=1,
                progress=False)
    assert not out.exists()
    with pytest.raises(DatasetError, match="interrupted"):
        load_dataset(out)


def test_windows_align_actions_with_frames(tiny_dataset):
    data, fs = tiny_dataset, 5
    windows = Windows(data, "train", n_history=3, n_future=1, frameskip=fs)
    item = windows[len(windows) // 2]
    t0 = int(item["index"][0])
    assert item["index"].tolist() == [t0 + fs * k for k in range(4)]
    assert item["frames"].shape == (4, 3, 64, 64) and item["actions"].shape == (4, 10)
    mean = np.tile(data.stats["action_mean"], fs)
    std = np.tile(data.stats["action_std"], fs)
    raw = item["actions"].numpy() * std + mean
    for k in range(4):  # frame k's action = the 5 env actions taken from frame k on
        expected = data.action[t0 + fs * k:t0 + fs * (k + 1)].reshape(-1)
        assert raw[k] == pytest.approx(expected, abs=1e-5)
    assert torch.allclose(item["frames"][2], torch.tensor(
        data.pixels[t0 + 2 * fs]).permute(2, 0, 1).float() / 255)
    # every window lies inside one episode and has only real actions
    ends = np.searchsorted(data.episode_starts, windows.starts, side="right")
    assert np.all(windows.starts + 4 * fs < data.episode_starts[ends])
    slots = np.random.default_rng(0).normal(size=(len(data.state), 4, 8)).astype(np.float32)
    with_slots = Windows(data, "train", 3, 1, fs, slots=slots)[len(windows) // 2]
    assert np.array_equal(with_slots["slots"].numpy(), slots[item["index"].numpy()])


def test_a_batch_of_windows_equals_its_items_stacked(tiny_dataset):
    slots = np.random.default_rng(0).standard_normal((len(tiny_dataset.pixels), 2, 3)).astype(np.float32)
    for windows in (Windows(tiny_dataset, "train", 3, 1, 5, slots=slots), Windows(tiny_dataset, "val", 2, 2, 3)):
        picked = [len(windows) - 1, 0, len(windows) // 2, 0]
        batch = windows.batch(picked)
        items = [windows[i] for i in picked]
        assert set(batch) == set(items[0])
        for key, value in batch.items():
            expected = torch.stack([item[key] for item in items])
            assert value.dtype == expected.dtype and torch.equal(value, expected), key


def test_frame_clips(tiny_dataset):
    clips = FrameClips(tiny_dataset, "val", clip_len=3, frameskip=5)
    item = clips[0]
    assert item["frames"].shape == (3, 3, 64, 64)
    assert 0.0 <= item["frames"].min() and item["frames"].max() <= 1.0
    with pytest.raises(ValueError, match="no clip"):
        FrameClips(tiny_dataset, "val", clip_len=50, frameskip=5)


def test_eval_pairs_reproducible_and_inside_episodes(tiny_dataset):
    data = tiny_dataset
    a = sample_eval_pairs(data, "val", n_episodes=6, seed=1, goal_offset=25)
    b = sample_eval_pairs(data, "val", n_episodes=6, seed=1, goal_offset=25)
    c = sample_eval_pairs(data, "val", n_episodes=6, seed=2, goal_offset=25)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    episode = np.searchsorted(data.episode_starts, a, side="right") - 1
    assert np.array_equal(episode[:, 0], episode[:, 1])          # goal in the start's episode
    assert set(episode[:, 0]) <= set(data.splits["val"])
    assert np.all(a[:, 1] - a[:, 0] == 25)
    with pytest.raises(ValueError, match="leave room"):
        sample_eval_pairs(data, "val", n_episodes=10_000, seed=0)


def test_id_maps_and_windows_of_both_worlds(tiny_dataset, tmp_path):
    from collide_data import CollideConfig, generate
    index = np.array([[0, 5], [7, 9]])
    maps = tiny_dataset.id_maps(index)
    assert maps.shape == (2, 2, 64, 64)
    assert np.array_equal(maps[1, 0], render_ids(tiny_dataset.state[7], 64))
    collide = generate(CollideConfig(videos=4, n_observed=6, n_future=3, frame_substeps=10, render_size=16,
                                     val_fraction=0.25, test_fraction=0.25), tmp_path / "c", workers=1,
                       progress=False)
    assert np.array_equal(collide.id_maps(index), collide.ids[index])
    windows = Windows(collide, "train", n_history=2, n_future=1, frameskip=4)  # spans 9 frames: 1 per video
    assert len(windows) == len(collide.episodes("train"))
    item = windows[0]
    assert set(item) == {"frames", "index"} and item["frames"].shape == (3, 3, 16, 16)
    assert np.array_equal(np.diff(item["index"].numpy()), [4, 4])
    clips = FrameClips(collide, "val", clip_len=2, frameskip=3)
    assert set(clips[0]) == {"frames", "index"}


def test_restore_substep_moves_the_agent_by_its_velocity_unless_off():
    state = np.array([200.0, 300.0, 350.0, 150.0, 1.0, 120.0, -80.0])
    _, exact = PushTEnv(restore_substep=False).reset(options={"state": state})
    assert np.array_equal(exact["state"], state)
    _, swm = PushTEnv().reset(options={"state": state})
    assert swm["state"][:2] == pytest.approx(state[:2] + 0.01 * state[5:7], abs=1e-9)
    assert np.array_equal(swm["state"][2:5], state[2:5])  # the block, untouched, stays put


# ---------------------------------------------------------------------------------------
# The "all moving" collection policy (App. D.1)
# ---------------------------------------------------------------------------------------
def block_motion(state):
    """Per step: block displacement (px) and |turn| (rad); over the episode: the range of
    the unwrapped angle (rad). state: (L, 7)."""
    state = np.asarray(state, np.float64)
    turn = wrap_angle(np.diff(state[:, 4]))
    shift = np.linalg.norm(np.diff(state[:, 2:4], axis=0), axis=1)
    return shift, np.abs(turn), np.ptp(np.cumsum(turn))


def past_walls(state):
    """How far (px) the T's outline pokes past the walls' inner faces, per frame; 0 inside."""
    state = np.asarray(state, np.float64)
    c, s = np.cos(state[:, 4:5]), np.sin(state[:, 4:5])
    px, py = np.array(TEE_OUTLINE, np.float64).T
    xy = np.concatenate([state[:, 2:3] + c * px - s * py, state[:, 3:4] + s * px + c * py], axis=1)
    return np.maximum(np.maximum(INNER_LOW - xy.min(1), xy.max(1) - INNER_HIGH), 0)


def test_drive_block_moves_the_block_at_its_own_velocity_until_reset():
    env = PushTEnv(16)
    env.reset(options={"state": [100.0, 100.0, 250.0, 250.0, 0.0, 0.0, 0.0]})
    env.drive_block([100.0, -50.0], 0.0)
    _, _, _, _, info = env.step([0.0, 0.0])        # 0.1 s, nothing in the way
    assert info["state"][2:5] == pytest.approx([260.0, 245.0, 0.0], abs=1e-6)
    env.reset(options={"state": [100.0, 100.0, 250.0, 250.0, 0.0, 0.0, 0.0]})
    _, _, _, _, info = env.step([0.0, 0.0])        # a reset gives back the resting block
    assert info["state"][2:5] == pytest.approx([250.0, 250.0, 0.0], abs=1e-9)


def test_all_moving_moves_and_turns_the_block_far_more_than_the_weak_expert():
    weak_shares = []
    for seed in range(3):
        moved, angle_range = {}, {}
        for policy in ("weak", "all_moving"):
            shift, turn, angle_range[policy] = block_motion(
                collect_episode(40, seed, 8, policy)["state"])
            moved[policy] = np.mean((shift > 0.5) | (turn > 0.005))   # share of steps it moves
        assert moved["all_moving"] >= 0.8 and angle_range["all_moving"] > 1.0
        assert moved["weak"] < moved["all_moving"]
        weak_shares.append(moved["weak"])
    assert np.mean(weak_shares) < 0.6


def test_all_moving_keeps_block_and_agent_inside_the_walls_without_jumps():
    # without the agent's back-off, it squeezes the block 14 and 18 px into a wall in
    # seeds 71 and 111; contacts alone let it sink up to ~3 px (a reset can start it
    # overlapping a wall, hence the comparison with frame 0)
    for seed in [*range(12), 71, 111]:
        episode = collect_episode(100, seed, 8, "all_moving")
        state, action = episode["state"], episode["action"]
        depth = past_walls(state)
        assert depth[1:].max() <= depth[0] + 5.0, f"seed {seed}: {depth.max():.1f} px past a wall"
        assert block_motion(state)[0].max() < 60.0                     # no teleports
        agent = state[:, :2]                            # the agent's disk stays inside too
        assert agent.min() > INNER_LOW + AGENT_RADIUS - 1
        assert agent.max() < INNER_HIGH - AGENT_RADIUS + 1
        assert np.abs(action[:-1]).max() <= 1.0 and np.isnan(action[-1]).all()


def test_all_moving_collection_is_deterministic(tmp_path):
    cfg = PushTDataConfig(episodes=3, min_steps=20, max_steps=25, render_size=16, seed=5,
                          policy="all_moving")
    a = collect(cfg, tmp_path / "a", workers=1, progress=False)
    b = collect(cfg, tmp_path / "b", workers=1, progress=False)
    assert a.config.policy == "all_moving"
    for name in ("pixels", "state", "proprio", "action"):
        assert np.array_equal(getattr(a, name), getattr(b, name), equal_nan=name == "action"), name
    last = a.episode_starts[1:] - 1                    # steps that cross no episode boundary
    shift, turn, _ = block_motion(a.state)
    inside = ~np.isin(np.arange(len(shift)), last)
    assert np.mean(((shift > 0.5) | (turn > 0.005))[inside]) >= 0.8


def test_unknown_policy_is_a_clear_error(tmp_path):
    cfg = PushTDataConfig(episodes=2, min_steps=3, max_steps=3, policy="human")
    allowed = r"unknown policy 'human'; expected one of \['all_moving', 'expert', 'weak'\]"
    with pytest.raises(ValueError, match=allowed):
        collect(cfg, tmp_path / "ds", workers=1, progress=False)
    assert list(tmp_path.iterdir()) == []              # raised before any work
    with pytest.raises(ValueError, match="unknown policy"):
        collect_episode(3, 0, 8, "human")


def test_dataset_written_before_a_field_existed_is_refused(tiny_dataset, tmp_path):
    old = tmp_path / "old"
    shutil.copytree(tiny_dataset.path, old)
    meta = json.loads((old / "meta.json").read_text())
    del meta["config"]["policy"]
    (old / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(DatasetError, match="older version of this code .* make it again"):
        load_dataset(old, expect=DATA_PRESETS["tiny"])


def test_overwrite_replaces_only_a_dataset_of_ours(tiny_dataset, tmp_path):
    precious = tmp_path / "runs"
    precious.mkdir()
    (precious / "predictor.pt").write_bytes(b"weights")
    cfg = PushTDataConfig(episodes=2, min_steps=3, max_steps=3)
    with pytest.raises(FileExistsError, match="not a cjepa-pusht/1 dataset"):
        collect(cfg, precious, workers=1, progress=False, overwrite=True)
    assert (precious / "predictor.pt").read_bytes() == b"weights"
    out = tmp_path / "ds"
    collect(cfg, out, workers=1, progress=False)
    assert collect(cfg, out, workers=1, progress=False, overwrite=True).path == out  # a dataset is replaced


def test_simulate_is_the_env_stepped_from_a_state_set_exactly_whatever_came_before():
    from pusht import PushTEnv
    rng = np.random.default_rng(0)
    state = np.array([200.0, 150.0, 260.0, 240.0, 0.7, 30.0, -20.0])
    actions = rng.uniform(-1, 1, (25, 2))
    env = PushTEnv(16, restore_substep=False)
    env.reset(options={"state": state})
    for action in actions:
        env.step(action)
    sim = PushTEnv(8)
    sim.reset(seed=3)
    sim.step(np.array([0.5, 0.5]))                      # an earlier world and state leave no trace
    assert np.array_equal(sim.simulate(state, actions), env.get_state())
    assert not np.array_equal(sim.simulate(state, actions[::-1]), env.get_state())
