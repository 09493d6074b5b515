"""Tests for the diagnostics in diagnostics/: each one's numbers against a hand computation or the
score it breaks down, and its command line on the tiny runs."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vqa import main, run_slots
from vqa_model import Descriptive
from vqa_table import TYPES, score_cells
from config import COLLIDE_PRESETS
from encoder import token_files


def test_vqa_table_cells_are_mean_and_std_over_seeds():
    def result(desc, cf_option, cf_question):
        r = {kind: {"option": 0.5, "question": 0.25} for kind in ("explanatory", "predictive", "all")}
        return {**r, "descriptive": {"question": desc},
                "counterfactual": {"option": cf_option, "question": cf_question}}
    cells = dict(zip(TYPES, score_cells([result(0.4, 0.5, 0.1), result(0.6, 0.7, 0.3)])))
    assert cells["descriptive"] == "50.0 +/- 10.0"
    assert cells["counterfactual"] == "60.0 +/- 10.0 / 20.0 +/- 10.0"
    assert cells["predictive"] == "50.0 +/- 0.0 / 25.0 +/- 0.0"
    assert score_cells([result(0.4, 0.5, 0.1)])[0] == "40.0"


def test_masking_table_cells_give_a_spread_only_where_the_seeds_differ():
    from masking_table import cell
    assert cell([1.0, 3.0, None]) == "2 +/- 1"
    assert cell([0.1 + 0.2, 0.3]) == "0.3"   # equal but for rounding: one number, no "+/- 0"
    assert cell([4.0]) == "4" and cell([None, None]) == "-"


@pytest.mark.parametrize("aloe", [False, True])   # model frames, or ALOE's samples of every frame
def test_vqa_future_swaps_only_the_future_frames(tiny_collide_run, tmp_path, capsys, aloe):
    import vqa_future
    _, out = tiny_collide_run
    flags = ["--every-offset", "--sample-frames", "4"] if aloe else []
    main(["--preset", "tiny", "--steps", "2", "--run", str(out), "--out", str(tmp_path / "vqa.json"),
          "--device", "cpu", *flags])
    result = json.loads((tmp_path / "vqa.json").read_text())
    variants, data, n_obs = vqa_future.future_variants(out, every_offset=aloe)
    slots = variants["rollout"]
    info = json.loads((out / "config.json").read_text())
    frame_slots = torch.from_numpy(np.load(token_files(Path(info["encoder"]), COLLIDE_PRESETS["tiny"])[0]))
    fs = 1 if aloe else info["config"]["frameskip"]
    assert n_obs == len(range(0, data.n_observed, fs))
    for v, start in enumerate(data.episode_starts[:-1]):
        real = frame_slots[start + n_obs * fs:start + data.n_observed + data.n_future:fs]
        torch.testing.assert_close(variants["real"][v, n_obs:], real)
        torch.testing.assert_close(variants["no motion"][v, n_obs:], slots[v, n_obs - 1].expand_as(real))
    for future in variants.values():
        assert torch.equal(future[:, :n_obs], slots[:, :n_obs])
    capsys.readouterr()
    vqa_future.main(["--run", str(out), "--head", str(tmp_path / "vqa.pt"), "--other", str(out)])
    table = [line.strip("| ").split(" | ") for line in capsys.readouterr().out.splitlines()
             if line.startswith("| ") and "---" not in line]
    rows = {cells[0]: cells[1:] for cells in table}
    assert rows["rollout"] == score_cells([result["val"]])   # the head as trained
    assert rows[f"rollout of {out}"] == rows["rollout"]
    # a head saved before a field existed (its protocol: which frames it read) is refused
    head = torch.load(tmp_path / "vqa.pt", weights_only=True)
    del head["config"]["protocol"]
    torch.save(head, tmp_path / "old.pt")
    with pytest.raises(ValueError, match=r"older version of this code \(it lacks \['protocol'\]\)"):
        vqa_future.load_head(tmp_path / "old.pt")
    assert set(rows) == {"future frames", "rollout", "no motion", "real", f"rollout of {out}"}


def test_collide_rollout_scores_the_future_vqa_reads(tiny_collide_run):
    from collide_rollout import future_errors
    _, out = tiny_collide_run
    slots, data, _ = run_slots(out)
    info = json.loads((out / "config.json").read_text())
    frame_slots = torch.from_numpy(np.load(token_files(Path(info["encoder"]), COLLIDE_PRESETS["tiny"])[0]))
    pred, still, frames = future_errors(out, "val", n_videos=2)
    videos = data.episodes("val")[:2]
    n_fut = len(frames)
    real = frame_slots[data.episode_starts[videos, None] + frames]           # (2, K, S, D)
    expect_pred = ((slots[videos, -n_fut:] - real) ** 2).mean(dim=(0, 2, 3))
    expect_still = ((slots[videos, -n_fut - 1:-n_fut] - real) ** 2).mean(dim=(0, 2, 3))
    np.testing.assert_allclose(pred, expect_pred.numpy(), rtol=1e-5)
    np.testing.assert_allclose(still, expect_still.numpy(), rtol=1e-5)


def test_vqa_templates_kinds_and_priors_by_hand():
    from vqa_templates import kind_of, kind_scores
    names = {1: "how", 2: "many", 3: "red", 4: "objects", 5: "?", 6: "what", 7: "shape", 8: "is", 9: "the",
             10: "circle", 11: "3"}
    assert kind_of((1, 2, 3, 4, 5), names) == "how many <colour> objects ?"
    assert kind_of((6, 7, 8, 9, 3, 10, 11), names) == "what shape is the <colour> <shape> <n>"
    count, shape = (1, 2, 3, 4, 5), (6, 7, 8, 9, 3, 4, 5)
    train = [Descriptive(0, i, q, a) for i, (q, a) in enumerate([(count, 1), (count, 1), (count, 2), (shape, 7)])]
    val = [Descriptive(1, 0, count, 1), Descriptive(1, 1, count, 2), Descriptive(1, 2, count, 2),
           Descriptive(1, 3, shape, 8), Descriptive(1, 4, (6, 7, 5), 0)]
    scores = kind_scores([2, 2, 1, 8, 0], val, train, names)
    assert scores["how many <colour> objects ?"] == (3, 1 / 3, 1 / 3)  # prior "1" right once
    assert scores["what shape is the <colour> objects ?"] == (1, 1.0, 0.0)
    assert scores["what shape ?"] == (1, 1.0, 0.0)  # a kind unseen in training: no prior


def test_vqa_templates_add_up_to_the_descriptive_score(tiny_collide_run, tmp_path, capsys):
    import vqa_templates
    _, out = tiny_collide_run
    main(["--preset", "tiny", "--steps", "2", "--run", str(out), "--out", str(tmp_path / "vqa-seed0.json"),
          "--device", "cpu"])
    result = json.loads((tmp_path / "vqa-seed0.json").read_text())
    for name in ("vqa-seed0.json", "vqa-seed0.pt"):  # the heads are read from the run folder
        (out / name).write_bytes((tmp_path / name).read_bytes())
    capsys.readouterr()
    vqa_templates.main(["--run", str(out), "--seed", "0"])
    rows = [line.strip("| ").split(" | ") for line in capsys.readouterr().out.splitlines()
            if line.startswith("| ") and "---" not in line][1:]
    n = sum(int(r[1]) for r in rows)
    right = sum(int(r[1]) * float(r[3].rstrip("%")) / 100 for r in rows)
    assert n == result["val"]["descriptive"]["questions"]
    assert right / n == pytest.approx(result["val"]["descriptive"]["question"], abs=1e-3 * len(rows))
    for name in ("vqa-seed0.json", "vqa-seed0.pt"):
        (out / name).unlink()


def test_collide_probe_rows_and_scores():
    from collide_probe import object_rows, probe
    truth = np.zeros((8, 8), dtype=np.int64)
    truth[0:2, 0:2], truth[4:6, 4:8], truth[7, 7] = 1, 2, 3       # object 3 has 1 pixel: left out
    seg = np.zeros((8, 8), dtype=np.int64)
    seg[0:2, 0:2], seg[4:6, 4:8] = 2, 2                           # objects 1 and 2 share slot 2
    slots = np.arange(12, dtype=np.float32).reshape(3, 4)
    objects = [{"color": "red", "shape": "square"}, {"color": "blue", "shape": "circle"},
               {"color": "gray", "shape": "triangle"}]
    rows = object_rows(truth, seg, slots, objects, min_pixels=2)
    assert len(rows) == 2 and all(r[5] for r in rows)
    np.testing.assert_array_equal(rows[0][0], slots[2])
    assert rows[0][1:5] == (1, 1, 0.5 / 8, 0.5 / 8) and rows[1][1:5] == (2, 0, 5.5 / 8, 4.5 / 8)
    seg[4:6, 4:8] = 1
    assert [r[5] for r in object_rows(truth, seg, slots, objects, min_pixels=2)] == [False, False]
    # slots that say the colour and the centre but not the shape
    rng = np.random.default_rng(0)
    rows = []
    for _ in range(400):
        colour, shape, x, y = rng.integers(8), rng.integers(3), rng.random(), rng.random()
        vector = np.concatenate([np.eye(8)[colour], [x, y], rng.normal(size=6)]).astype(np.float32)
        rows.append((vector, colour, shape, x, y, False))
    scores = probe(rows, 200)
    assert scores["colour"]["linear"]["all"] == 1.0 and scores["colour"]["linear"]["shared slot"] is None
    assert scores["shape"]["linear"]["all"] < 0.5 and scores["shape"]["mlp 256"]["all"] < 0.5
    assert min(scores["centre R2"]) > 0.99


def test_encoder_clip_tools_run_on_a_collide_run_and_refuse_push_t(tiny_collide_run, tiny_run, capsys):
    import collide_probe
    import slot_sharing
    _, out = tiny_collide_run
    collide_probe.main(["--run", str(out), "--clips", "4", "--min-pixels", "1"])
    slot_sharing.main(["--run", str(out), "--clips", "4", "--min-pixels", "1"])
    text = capsys.readouterr().out
    assert "colour, linear:" in text and "shape, mlp 256:" in text and "centre x, y: R^2" in text
    assert "pairs of one colour:" in text
    with pytest.raises(SystemExit, match="error: this probes collide objects; .* was trained on 'pusht'"):
        collide_probe.main(["--run", str(tiny_run[1])])


@pytest.mark.slow
def test_oracle_plan_trains_on_true_states_and_plans(tmp_path, monkeypatch, capsys):
    import oracle_plan
    import train
    monkeypatch.chdir(tmp_path)  # it finds its data under ./data, as train.py made it
    train.main(["--preset", "tiny", "--encoder-data", "predictor", "--until", "data", "--out", "runs/d",
                "--workers", "1", "--no-progress"])
    oracle_plan.main(["--preset", "tiny", "--out", "runs/o", "--plan-seeds", "0", "--plan-episodes", "2",
                      "--gifs", "0", "--plan-name", "t"])
    result = json.loads((tmp_path / "runs" / "o" / "plan-t.json").read_text())
    assert set(result["seeds"]) == {"0"} and len(result["seeds"]["0"]["successes"]) == 2
    assert result["checkpoint"]["done"] and result["checkpoint"]["path"].endswith("predictor.pt")
    # started again with --resume (as the experiment scripts do), a finished plan is kept, not redone
    capsys.readouterr()
    oracle_plan.main(["--preset", "tiny", "--out", "runs/o", "--plan-seeds", "0", "--plan-episodes", "2",
                      "--gifs", "0", "--plan-name", "t", "--resume", "--no-progress"])
    captured = capsys.readouterr()
    assert "keeping seeds 0" in captured.out and "plan cem" not in captured.err  # no planning bar either
    assert json.loads((tmp_path / "runs" / "o" / "plan-t.json").read_text())["seeds"] == result["seeds"]
    # true states are each frame's own: the runs keep frame mode whatever the default slot mode,
    # so those made before video mode became the default still resume
    assert json.loads((tmp_path / "runs" / "o" / "config.json").read_text())["config"]["slot_mode"] == "frame"
    rows = json.loads((tmp_path / "runs" / "o" / "rollout-errors.json").read_text())
    assert [r["what"] for r in rows] == ["model", "no motion"]
    # --plan-data: the same model planned on another dataset's starts and goals, recorded as such
    before = set(Path("data").iterdir())
    train.main(["--preset", "tiny", "--encoder-data", "predictor", "--data-seed", "1", "--episodes", "4",
                "--until", "data", "--out", "runs/d1", "--workers", "1", "--no-progress"])
    (other,) = set(Path("data").iterdir()) - before
    oracle_plan.main(["--preset", "tiny", "--out", "runs/o", "--plan-seeds", "0", "--plan-episodes", "2",
                      "--gifs", "0", "--plan-name", "other", "--resume", "--no-progress", "--plan-data", str(other)])
    moved = json.loads((tmp_path / "runs" / "o" / "plan-other.json").read_text())
    assert moved["checkpoint"]["goals"] == str(other)
    assert [r["what"] for r in json.loads((tmp_path / "runs" / "o" / "rollout-errors-other.json").read_text())] == [
        "model", "no motion"]                                       # its rollouts on the other data's windows
    assert moved["seeds"]["0"]["start_block_px"] != result["seeds"]["0"]["start_block_px"]
    check_sim_plan(tmp_path / "runs" / "o", capsys, other)
    # --ensemble: a second predictor, trained alike but for --seed, plans beside the first
    oracle_plan.main(["--preset", "tiny", "--out", "runs/o1", "--seed", "1", "--check-only", "--no-progress"])
    oracle_plan.main(["--preset", "tiny", "--out", "runs/o", "--plan-seeds", "0", "--plan-episodes", "2", "--gifs",
                      "0", "--plan-name", "ens", "--no-progress", "--ensemble", "runs/o1", "--disagreement", "2"])
    ens = json.loads((tmp_path / "runs" / "o" / "plan-ens.json").read_text())["checkpoint"]
    assert ens["ensemble"] == ["runs/o1"] and ens["disagreement"] == 2 and ens["path"] == result["checkpoint"]["path"]
    with pytest.raises(SystemExit, match=r"--ensemble runs/o: .*differing fields: \['masked'\]"):
        oracle_plan.main(["--preset", "tiny", "--out", "runs/o2", "--masked", "0", "--ensemble", "runs/o"])
    assert not Path("runs/o2").exists()                                  # refused before any training
    with pytest.raises(SystemExit, match="--disagreement weighs an --ensemble's spread"):
        oracle_plan.main(["--preset", "tiny", "--out", "runs/o2", "--disagreement", "1"])
    import sim_failures
    import sim_plan
    both = sim_failures.trained_model(sim_plan.open_sim_run("runs/o")[3], Path("runs/o"), ["runs/o1"], 1.0)
    assert isinstance(both, oracle_plan.EnsembleWorldModel) and len(both.members) == 2
    assert both.checkpoint["rollouts"] == "predictor" and both.checkpoint["ensemble"] == ["runs/o1"]
    with pytest.raises(SystemExit):                                     # the simulator needs no ensemble
        sim_failures.main(["--run", "runs/o", "--ensemble", "runs/o1"])
    capsys.readouterr()
    sim_failures.main(["--run", "runs/o", "--model", "predictor", "--ensemble", "runs/o1", "--episodes", "2",
                       "--samples", "6", "--topk", "2", "--iterations", "2", "--out", "ens.json"])
    records = json.loads(Path("ens.json").read_text())["episodes"]
    assert all(r[who]["spread"] > 0 for r in records for who in ("cem", "own"))   # two predictors differ
    out = capsys.readouterr().out
    assert "members' spread" in out and "; the members part more on it in " in out
    import masking_pusht
    masking_pusht.main(["--runs", "runs/o"])
    result = json.loads((tmp_path / "runs" / "o" / "masking-pusht.json").read_text())
    assert 0 < result["pushed windows"] < result["windows"]
    error = result["error"]
    # resting means the block moved at most 0.5 px: no motion is off by no more; pushed, by more
    assert error["no motion, resting, px"] <= masking_pusht.MOVES_PX < error["no motion, pushed, px"]
    for where in ("future", "history"):
        shares = result["attention"][where]
        assert 0 <= shares["auroc"] <= 1
        assert all(0 <= shares[f"agent share, {k}"] + shares[f"action share, {k}"] <= 1 for k in ("pushed", "resting"))
    assert "| runs/o | 1 |" in capsys.readouterr().out
    # --reuse reads the stored results; runs of one data and M are averaged over their seeds
    saved = tmp_path / "runs" / "o" / "masking-pusht.json"
    result["error"]["model, pushed, px"] = 99.0
    saved.write_text(json.dumps(result))
    masking_pusht.main(["--runs", "runs/o", "runs/o", "--reuse"])
    summary = capsys.readouterr().out.split("Mean +/- std")[1]
    assert "| 1 | 2 | 99 / " in summary


def check_sim_plan(run, capsys, other):
    """sim_plan on a tiny true-state run: the simulator scores the dataset's own plan to its goal
    at zero cost and random plans above it, and the protocol runs end to end with it."""
    import sim_plan
    from config import build_predictor, config_to_dict, load_checkpoint, open_dataset, read_run
    from data import sample_eval_pairs
    cfg, info, run_dir = read_run(run, "pusht", "test")
    predictor = build_predictor(cfg)
    predictor.load_state_dict(load_checkpoint(run_dir / "predictor.pt", config_to_dict(cfg))["model"])
    data = open_dataset(cfg, info["data"])
    model = sim_plan.SimWorldModel(cfg, predictor, data.stats)
    starts, goals = sample_eval_pairs(data, "train", 4, 0, 25).T
    slots, proprio = model.encode(None, data.state[starts]), model.proprio(data.proprio[starts])
    from pusht import wrap_angle
    back = model.states(slots, proprio)                  # the angle comes back wrapped to (-pi, pi]
    assert np.allclose(back[:, [0, 1, 2, 3, 5, 6]], data.state[starts][:, [0, 1, 2, 3, 5, 6]], atol=1e-3)
    assert np.allclose(wrap_angle(back[:, 4] - data.state[starts, 4]), 0, atol=1e-5)
    own = torch.from_numpy(model.from_env_actions(np.stack([data.action[t:t + 25] for t in starts]))).float()
    candidates = torch.cat([own[:, None], torch.randn(len(starts), 6, *own.shape[1:])], dim=1)
    cost = model.costs(slots, proprio, model.encode(None, data.state[goals]), model.proprio(data.proprio[goals]),
                       candidates, 0, 1.0)
    assert cost.shape == (4, 7) and torch.all(cost[:, 0] < 1e-6) and torch.all(cost[:, 1:] > 1e-4)
    sim_plan.main(["--run", str(run), "--seeds", "0", "--episodes", "2", "--samples", "6", "--topk", "2",
                   "--iterations", "2", "--no-progress"])
    result = json.loads((run / "plan-sim.json").read_text())
    assert len(result["seeds"]["0"]["successes"]) == 2 and result["checkpoint"]["rollouts"] == "simulator"
    assert "simulator as the model: success" in capsys.readouterr().out
    import sim_failures
    sim_failures.main(["--run", str(run), "--episodes", "3", "--samples", "6", "--topk", "2", "--iterations", "2"])
    result = json.loads((run / "sim-failures-s0.json").read_text())
    assert sum(result["summary"].values()) == 3 and "| class | episodes |" in capsys.readouterr().out
    for record in result["episodes"]:
        # the dataset's own plan reaches its goal, by its last step at the latest, at almost no cost
        assert record["own"]["success"] and 1 <= record["own"]["first_step"] <= 25
        assert record["own"]["cost"] < 1e-3 and record["own"]["slot_term"] <= record["own"]["cost"]
        # a walk is no shorter than the straight line from the agent's start to its goal
        assert record["own"]["agent_path_px"] >= record["start_errors"][0] - 1.0 and record["own"]["action_rms_z"] > 0
        assert record["class"] == sim_failures.classify(record["cem"]["success"], True, record["cem"]["cost"],
                                                        record["own"]["cost"])
    with pytest.raises(SystemExit, match="--plan-data .* is not a dataset folder"):
        sim_failures.main(["--run", str(run), "--plan-data", str(run)])
    sim_failures.main(["--run", str(run), "--episodes", "3", "--samples", "6", "--topk", "2", "--iterations", "2",
                       "--plan-data", str(other), "--out", str(run / "other.json")])
    moved = json.loads((run / "other.json").read_text())
    assert moved["goals"] == str(other)                      # another data's goals, so other start errors
    assert [r["start_errors"] for r in moved["episodes"]] != [r["start_errors"] for r in result["episodes"]]
    sim_failures.main(["--table", str(run / "sim-failures-s0.json"), str(run / "sim-failures-s0.json")])
    out = capsys.readouterr().out
    assert "of 6" in out and "| all | 6 |" in out                       # two files' episodes pooled
    assert "the dataset's plan costs less than CEM's in " in out
    assert sim_failures.classify(False, True, 0.5, 0.1) == "search"
    assert sim_failures.classify(False, True, 0.1, 0.5) == "cost"
    assert sim_failures.classify(False, False, 0.1, 0.5) == "unreached"
    assert sim_failures.classify(True, False, 0.9, 0.5) == "solved"
    # with the trained predictor: CEM plans with its rollouts; the simulator's cost rides along
    sim_failures.main(["--run", str(run), "--model", "predictor", "--episodes", "3", "--samples", "6", "--topk", "2",
                       "--iterations", "2", "--init-std", "2", "--clip-actions"])
    result = json.loads((run / "model-failures-s0.json").read_text())
    assert result["checkpoint"]["rollouts"] == "predictor" and result["solve"]["clip_actions"]
    assert "model's rollout off the real end" in capsys.readouterr().out
    for record in result["episodes"]:
        assert record["own"]["sim_cost"] < 1e-3
        assert len(record["cem"]["model_error"]) == len(record["own"]["model_error"]) == 2
        assert record["class"] == sim_failures.classify(record["cem"]["success"], record["own"]["success"],
                                                        record["cem"]["cost"], record["own"]["cost"])
    # predicted_ends rolls a plan out as the planner's cost does: its slots give the cost's slot term
    from plan import matched_slot_cost
    trained = sim_failures.trained_model(sim_plan.open_sim_run(run)[3], run)
    goal_slots, goal_proprio = model.encode(None, data.state[goals]), model.proprio(data.proprio[goals])
    ends = sim_failures.predicted_ends(trained, slots, proprio, own, 0)
    slot_term = trained.costs(slots, proprio, goal_slots, goal_proprio, own[:, None], 0, 0.0)[:, 0]
    assert torch.allclose(matched_slot_cost(ends, goal_slots), slot_term, atol=1e-6)
    assert not torch.allclose(slot_term, torch.zeros(4))                 # the predictor is not the simulator
    check_data_windows(run, model, data, starts, goals, own, capsys)


def check_data_windows(run, model, data, starts, goals, own, capsys):
    """--candidates data: the windows are the training episodes' own actions; with every window
    drawn, the simulator retrieves each start's own plan to its goal, and never with its episode
    held out; the protocol runs with the window search in CEM's place."""
    import oracle_plan
    import sim_failures
    import window_plan
    from data import window_starts
    from plan import PlanConfig, episode_generators
    plans, episode = window_plan.data_windows(data, model, 25)
    firsts = window_starts(data, "train", 26)
    assert len(plans) == len(episode) == len(firsts) and set(episode) == set(data.episodes("train"))
    assert np.allclose(model.to_env_actions(plans[:3]), np.stack([data.action[t:t + 25] for t in firsts[:3]]), atol=1e-5)
    own_episode = np.searchsorted(data.episode_starts, starts, side="right") - 1
    args = (PlanConfig(), model, model.encode(None, data.state[starts]), model.proprio(data.proprio[starts]),
            model.encode(None, data.state[goals]), model.proprio(data.proprio[goals]), plans, episode)
    found = window_plan.retrieve_all(*args, np.full(4, -1), episode_generators(0, 4, 0), len(plans))
    assert torch.allclose(found, own, atol=1e-5)
    held_out = window_plan.retrieve_all(*args, own_episode, episode_generators(0, 4, 0), len(plans))
    for e in range(4):
        match = (plans - held_out[e]).abs().amax(dim=(1, 2)) < 1e-6
        assert match.any() and not np.any(episode[match.numpy()] == own_episode[e])
    sim_failures.main(["--run", str(run), "--episodes", "3", "--candidates", "data", "--draws", "7",
                       "--out", str(run / "windows.json")])
    result = json.loads((run / "windows.json").read_text())
    assert result["solve"]["candidates"] == "data" and result["solve"]["draws"] == 7
    assert sum(result["summary"].values()) == 3 and "| all | 3 |" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        sim_failures.main(["--run", str(run), "--draws", "7"])
    assert "--draws and --refine-iterations are for --candidates data" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        sim_failures.main(["--run", str(run), "--candidates", "data", "--clip-actions"])
    assert "shape CEM's samples: not for --candidates data" in capsys.readouterr().err
    oracle_plan.main(["--preset", "tiny", "--out", str(run), "--plan-seeds", "0", "--plan-episodes", "2", "--gifs",
                      "0", "--plan-name", "w", "--resume", "--no-progress", "--candidates", "data", "--draws", "5"])
    result = json.loads((run / "plan-w.json").read_text())
    assert result["checkpoint"]["candidates"] == "data" and result["checkpoint"]["draws"] == 5
    assert len(result["seeds"]["0"]["successes"]) == 2


def test_oracle_plan_refuses_a_planning_protocol_it_cannot_run_before_it_trains(tmp_path):
    import oracle_plan
    with pytest.raises(SystemExit, match="--noise-beta >= 0"):
        oracle_plan.main(["--out", str(tmp_path / "o"), "--noise-beta", "-1"])
    assert not (tmp_path / "o").exists()
    with pytest.raises(SystemExit, match="--plan-data .* is not a dataset folder"):
        oracle_plan.main(["--out", str(tmp_path / "o"), "--plan-data", str(tmp_path)])
    with pytest.raises(SystemExit, match="shape CEM's samples: not for --candidates data"):
        oracle_plan.main(["--out", str(tmp_path / "o"), "--candidates", "data", "--init-std", "2"])
    for flags in (["--draws", "-1"], ["--refine-iterations", "30"], ["--refine-std", "0"]):
        with pytest.raises(SystemExit, match="need --draws >= 0 .* 0 <= --refine-iterations < CEM's 30"):
            oracle_plan.main(["--out", str(tmp_path / "o"), "--candidates", "data", *flags])
    assert not (tmp_path / "o").exists()


def test_refine_is_cem_around_each_chosen_window():
    import window_plan
    from plan import PlanConfig, episode_generators
    target = torch.randn(2, 5, 4, generator=torch.Generator().manual_seed(0))

    class Quadratic:  # a plan's cost: its squared distance from its problem's target (slots hold the index)
        device = torch.device("cpu")

        def costs(self, slots, proprio, goal_slots, goal_proprio, candidates, history, weight, align):
            return (candidates - target[int(slots[0])]).pow(2).sum(dim=(2, 3))

    index = torch.arange(2)
    start = target + 0.3 * torch.randn(2, 5, 4, generator=torch.Generator().manual_seed(1))
    refined = window_plan.refine(PlanConfig(), Quadratic(), index, index, index, index, start,
                                 episode_generators(0, 2, 0), 0.25, 10)
    before, after = ((plan - target).pow(2).sum(dim=(1, 2)) for plan in (start, refined))
    assert (after < 0.2 * before).all()
    # a window already at its target stays near it: CEM's first mean is the window, scored as candidate 0
    kept = window_plan.refine(PlanConfig(), Quadratic(), index, index, index, index, target.clone(),
                              episode_generators(0, 2, 0), 0.25, 3)
    assert (kept - target).pow(2).sum(dim=(1, 2)).max() < 0.2 * before.min()


def test_window_plan_runs_the_protocol_on_a_learned_slot_run(tiny_run, tmp_path):
    import window_plan
    _, out = tiny_run
    path = tmp_path / "windows.json"
    flags = ["--ckpt", str(out), "--seeds", "0", "--episodes", "2", "--gifs", "0", "--samples", "20", "--topk",
             "4", "--iterations", "3", "--no-progress", "--out", str(path)]
    window_plan.main([*flags, "--refine-iterations", "1"])
    result = json.loads(path.read_text())
    assert result["checkpoint"] | {"draws": 40, "refine_iterations": 1, "candidates": "data"} == result["checkpoint"]
    assert len(result["seeds"]["0"]["successes"]) == 2
    with pytest.raises(SystemExit, match="another protocol or checkpoint .*checkpoint differ"):
        window_plan.main([*flags, "--resume"])                      # no refinement: another search
    with pytest.raises(SystemExit, match="shape CEM's samples: not for --candidates data"):
        window_plan.main([*flags, "--init-std", "2"])
    with pytest.raises(SystemExit, match="need --ckpt RUN, and --policy cem"):
        window_plan.main(["--policy", "random", "--ckpt", str(out)])


def test_sim_plan_refuses_a_run_of_learned_slots(tiny_run):
    import sim_plan
    with pytest.raises(SystemExit, match="is not a true-state run of diagnostics/oracle_plan.py"):
        sim_plan.main(["--run", str(tiny_run[1])])


def test_action_box_counts_actions_outside_the_box_and_clips_them_only_when_asked(monkeypatch):
    import action_box
    import pusht
    real_step = pusht.PushTEnv.step
    state = np.array([256.0, 256.0, 400.0, 400.0, 0.0, 0.0, 0.0])

    def agent_after(actions, clip=None):
        monkeypatch.setattr(pusht.PushTEnv, "step", real_step)  # restored after the test
        counts = {"steps": 0, "outside": 0, "largest": 0.0}
        if clip is not None:
            action_box.count_actions(counts, clip)
        env = pusht.PushTEnv(16)
        env.reset(options={"state": state, "goal_state": state})
        for action in actions:
            obs, *_ = env.step(np.array(action))
        return obs["proprio"][:2], counts

    planned, counts = agent_after([[0.5, 0.0], [2.0, -0.5]], clip=False)
    assert counts == {"steps": 2, "outside": 1, "largest": 2.0}
    clipped, counts = agent_after([[0.5, 0.0], [2.0, -0.5]], clip=True)
    assert counts == {"steps": 2, "outside": 1, "largest": 2.0}
    np.testing.assert_array_equal(planned, agent_after([[0.5, 0.0], [2.0, -0.5]])[0])  # the env as it is
    np.testing.assert_array_equal(clipped, agent_after([[0.5, 0.0], [1.0, -0.5]])[0])  # as if given [1, -0.5]
    assert planned[0] > clipped[0] + 10


def test_data_motion_counts_moving_steps_and_draws_episodes(tiny_dataset, tmp_path, capsys):
    import data_motion
    stats = data_motion.motion_stats(tiny_dataset)
    states = np.asarray(tiny_dataset.state, np.float64)
    # by hand over every step inside an episode (a step across two episodes is no motion)
    moved = total = 0
    for e in range(len(tiny_dataset.episode_starts) - 1):
        s = states[tiny_dataset.episode_starts[e]:tiny_dataset.episode_starts[e + 1]]
        turn = np.abs((np.diff(s[:, 4]) + np.pi) % (2 * np.pi) - np.pi)
        moved += ((np.linalg.norm(np.diff(s[:, 2:4], axis=0), axis=1) > 0.5) | (turn > 0.005)).sum()
        total += len(s) - 1
    assert stats["moving"] == pytest.approx(moved / total) and 0 < stats["moving"] < 1
    assert 0 <= stats["shift_median"] <= stats["shift_p90"]
    data_motion.main(["--data", str(tiny_dataset.path), "--figure", str(tmp_path / "f.png"), "--episodes", "2"])
    assert f"| {100 * stats['moving']:.1f} |" in capsys.readouterr().out
    from PIL import Image
    assert Image.open(tmp_path / "f.png").size == (2 * 256 + 4, 256)


def test_probe_slots_reads_a_run_without_a_predictor(tiny_run, tmp_path, capsys):
    import probe_slots
    _, out = tiny_run
    slots_only = tmp_path / "slots-only"   # as train.py --until slots leaves a run: no predictor.pt
    slots_only.mkdir()
    (slots_only / "config.json").write_bytes((out / "config.json").read_bytes())
    probe_slots.main(["--run", str(slots_only), "--every", "1"])
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ") and "R^2" not in line]
    assert [r.split(" | ")[0][2:] for r in rows] == list(probe_slots.TARGETS)
    r2 = [float(r.split(" | ")[1]) for r in rows]
    assert all(np.isfinite(r2)) and max(r2) <= 1.0
    with pytest.raises(SystemExit, match="config.json is missing"):
        probe_slots.main(["--run", str(tmp_path / "none")])


def test_masking_test_scores_interactions_and_counterfactuals(tiny_collide_run, tmp_path, monkeypatch, capsys):
    import masking_test
    root, _ = tiny_collide_run
    monkeypatch.chdir(root)   # the tiny collide dataset lives under root/data
    scene = {"collisions": [(5, 0, 2), (9, 1, 2), (12, 0, 2)]}
    assert masking_test.contact_frames(scene, 4) == [[5, 12], [9], [5, 9, 12], []]
    masking_test.main(["--preset", "tiny", "--masked", "1", "--out", str(tmp_path / "m1"), "--no-progress"])
    result = json.loads((tmp_path / "m1" / "masking-test.json").read_text())
    inter, counter = result["interaction_px"], result["counterfactual_px"]
    assert inter["windows with a collision (object frames)"] > 0 and inter["windows without (object frames)"] > 0
    # physics, whatever the model: free flight is what constant velocity gets right
    assert inter["constant velocity, no collision"] < inter["no motion, no collision"]
    assert inter["constant velocity, no collision"] < inter["constant velocity, collision"]
    assert counter["cases"] > 0 and all(np.isfinite(v) for v in counter.values())
    attention = result["attention"]
    assert list(attention) == ["future", "history", "history contacts"]
    for where in attention:
        scores = attention[where]
        assert 0 <= scores["auroc"] <= 1 and 0 < scores["colliding pairs"] < scores["pairs"]
        assert 0 < scores["uniform share"] < 1
    # the same pairs, labelled by the contacts of another span of frames
    assert attention["history contacts"]["pairs"] == attention["history"]["pairs"]
    assert attention["history contacts"]["colliding pairs"] != attention["history"]["colliding pairs"]
    assert masking_test.auroc([0.9, 0.8, 0.1, 0.2], [1, 1, 0, 0]) == 1.0
    assert masking_test.auroc([0.5, 0.5], [1, 0]) == 0.5 and masking_test.auroc([0.1, 0.9], [1, 0]) == 0.0
    rng = np.random.default_rng(0)   # from ranks, the same as counting every (positive, negative) pair
    scores, labels = rng.integers(0, 4, 300).astype(float), rng.random(300) < 0.2   # many ties
    pos, neg = scores[labels, None], scores[None, ~labels]
    pairwise = ((pos > neg).sum() + 0.5 * (pos == neg).sum()) / (pos.size * neg.size)
    assert masking_test.auroc(scores, labels) == pytest.approx(pairwise, abs=1e-12)
    for where in attention:   # closeness alone, and attention within pairs at a like distance
        scores = result["attention"][where]
        assert 0 <= scores["closeness auroc"] <= 1
        assert "distance-matched auroc" in scores and "closeness at a like distance" in scores
    apart, colliding = np.repeat(np.arange(10.0), 2), np.tile([True, False], 10)   # one of each per decile
    assert masking_test.matched_auroc(np.tile([1.0, 0.0], 10), colliding, apart) == 1.0
    # attention that only follows closeness ranks the colliding pairs first over all pairs, not within a decile
    near = apart < 5
    assert masking_test.auroc(-apart, near) == 1.0 and np.isnan(masking_test.matched_auroc(-apart, near, apart))
    assert masking_test.matched_auroc(-apart, colliding, apart) == 0.5
    assert "counterfactual_px: intervened" in capsys.readouterr().out
    hidden = result["hidden_history_px"]   # object A's history hidden as in training
    rows = [f"{part}, {who}, {kind}" for part, who in (("forecast", "hidden"), ("forecast", "visible"),
                                                       ("forecast", "frame 0 velocity"),
                                                       ("forecast", "last frame velocity"),
                                                       ("hidden frames", "filled in"),
                                                       ("hidden frames", "frame 0 velocity"),
                                                       ("forecast", "an absent row hidden"),
                                                       ("forecast", "visible, the same videos"))
            for kind in ("no history contact", "history contact")]
    pull = ["forecast, visible, pull toward frame 0, history contact", "truth, pull toward frame 0, history contact"]
    assert set(hidden) == set(rows) | {"objects with a history contact", "objects without", *pull}
    assert all(-1 < hidden[w] < 1 for w in pull)   # real motion follows the latest velocity more than the first
    for kind in ("no history contact", "history contact"):   # hiding A, or an empty row, changes the forecast
        assert hidden[f"forecast, hidden, {kind}"] != hidden[f"forecast, visible, {kind}"]
        assert hidden[f"forecast, an absent row hidden, {kind}"] != hidden[f"forecast, visible, the same videos, {kind}"]
    # units: over its one hidden frame a free object strays from its frame 0 velocity by a few px
    # of the 512-px world (damping, walls), where its motion is tens of px: a wrong speed scale
    # would miss by that
    assert hidden["hidden frames, frame 0 velocity, no history contact"] < 5.0
    near, far = np.zeros((1, 2, 3, 2)), np.ones((1, 2, 3, 2))
    chosen = np.array([[[True, False, True]]])
    for guess, w in ((near, 0.0), (far, 1.0), (np.full_like(near, 0.25), 0.25)):
        num, den = masking_test.blend_sums(guess, near, far, chosen)
        assert num / den == pytest.approx(w) and den == 8   # 2 frames x 2 objects x 2 coordinates
    mixed = near.copy()
    mixed[..., 1, :] = 5.0   # an object left out moves the weight not at all
    assert masking_test.blend_sums(mixed, near, far, chosen)[0] == 0
    # physics: with no collision ahead, the last history frame's velocity is what comes next
    assert (hidden["forecast, last frame velocity, history contact"]
            < hidden["forecast, frame 0 velocity, history contact"])
    assert hidden["objects with a history contact"] > 0 and hidden["objects without"] > 0
    # physics: a collision in the hidden frames changed the velocity frame 0 shows, and constant
    # velocity drifts further over the later frames
    for part in ("forecast", "hidden frames"):
        assert (hidden[f"{part}, frame 0 velocity, no history contact"]
                < hidden[f"{part}, frame 0 velocity, history contact"])
    assert (hidden["hidden frames, frame 0 velocity, history contact"]
            < hidden["forecast, frame 0 velocity, history contact"])
    stored = json.loads((tmp_path / "m1" / "masking-test.json").read_text())
    del stored["hidden_history_px"]
    (tmp_path / "m1" / "masking-test.json").write_text(json.dumps(stored))
    masking_test.main(["--preset", "tiny", "--masked", "1", "--out", str(tmp_path / "m1"), "--no-progress",
                       "--hidden-only"])   # recomputed alone: the same numbers, the rest kept
    assert json.loads((tmp_path / "m1" / "masking-test.json").read_text()) == result
    capsys.readouterr()
    import masking_table
    masking_table.main([str(tmp_path / "m1"), str(tmp_path / "m1")])   # the same run twice: no spread
    row = capsys.readouterr().out.splitlines()[-1]
    assert row.startswith("| 1 | 2 | ") and f"| {inter['model, collision']:.3g} / " in row
    assert f" / {attention['history contacts']['distance-matched auroc']:.3g} | " in row
    assert row.endswith(f" / {hidden['forecast, visible, history contact']:.3g} |")   # the last column
    with pytest.raises(SystemExit, match="masking-test.json is missing"):
        masking_table.main([str(tmp_path / "none")])
    longer = dict(result, config=dict(result["config"], epochs=result["config"]["epochs"] * 3))
    (tmp_path / "m1-longer").mkdir()
    (tmp_path / "m1-longer" / "masking-test.json").write_text(json.dumps(longer))
    masking_table.main([str(tmp_path / "m1"), str(tmp_path / "m1-longer"), "--plot", str(tmp_path / "budget.png")])
    table = capsys.readouterr().out.splitlines()   # two budgets: a row each, under an epochs column
    epochs = result["config"]["epochs"]
    assert table[0].startswith("| epochs | M | seeds |")
    assert table[2].startswith(f"| {epochs} | 1 | 1 |") and table[3].startswith(f"| {3 * epochs} | 1 | 1 |")
    more = dict(result, config=dict(result["config"], episodes=result["config"]["episodes"] * 3))
    (tmp_path / "m1-more").mkdir()
    (tmp_path / "m1-more" / "masking-test.json").write_text(json.dumps(more))
    masking_table.main([str(tmp_path / "m1"), str(tmp_path / "m1-more"), "--plot", str(tmp_path / "budget.png")])
    table = capsys.readouterr().out.splitlines()   # two data sizes: videos and epochs columns, fewer videos first
    videos = result["config"]["episodes"]
    assert table[0].startswith("| videos | epochs | M | seeds |")
    assert table[2].startswith(f"| {videos:,} | {epochs} | 1 | 1 |")
    assert table[3].startswith(f"| {3 * videos:,} | {epochs} | 1 | 1 |")
    probed = dict(result, config=dict(result["config"], history_weight=0.0))
    (tmp_path / "m1-hw0").mkdir()
    (tmp_path / "m1-hw0" / "masking-test.json").write_text(json.dumps(probed))
    masking_table.main([str(tmp_path / "m1-hw0"), str(tmp_path / "m1"), str(tmp_path / "m1")])
    table = capsys.readouterr().out.splitlines()   # a probe gets a row of its own, after the paper's
    assert table[2].startswith("| 1 | 2 |") and table[3].startswith("| 1 (history weight 0) | 1 |")
    drawn = dict(result, config=dict(result["config"], masked_draw="uniform"))
    (tmp_path / "m1-drawn").mkdir()
    (tmp_path / "m1-drawn" / "masking-test.json").write_text(json.dumps(drawn))
    masking_table.main([str(tmp_path / "m1-drawn"), str(tmp_path / "m1")])
    assert capsys.readouterr().out.splitlines()[3].startswith("| 1 (masked draw uniform) | 1 |")
    with Image.open(tmp_path / "budget.png") as picture:
        assert picture.width == len(masking_table.PLOTTED) * (masking_table.PANEL_W + masking_table.MARGIN) + \
            masking_table.MARGIN
    # the plotted means: per M and budget over the seeds, NaN (an AUROC with no pair to rank) left out
    future = result["attention"]["future"]
    unranked = dict(result, attention=dict(result["attention"], future=dict(future, auroc=float("nan"))))
    other = dict(result, masked=0, attention=dict(result["attention"], future=dict(future, auroc=0.25)))
    means = masking_table.plot({(epochs, 1): [result, unranked], (3 * epochs, 1): [longer], (epochs, 0): [other]},
                               tmp_path / "budget.png")
    assert means[0, 1] == [(epochs, future["auroc"]), (3 * epochs, future["auroc"])]
    assert means[0, 0] == [(epochs, 0.25)]
    assert means[2, 1] == [(epochs, inter["model, no collision"]), (3 * epochs, inter["model, no collision"])]
    import masking_figure
    masking_figure.main(["--runs", str(tmp_path / "m1"), str(tmp_path / "m1"), "--cases", "1",
                         "--out", str(tmp_path / "masking.png")])
    with Image.open(tmp_path / "masking.png") as picture:   # factual, without X, two runs
        assert picture.width == 4 * (masking_figure.PANEL + 10) + 10
    assert "1 counterfactual cases" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="--masked must be between 0 and"):
        masking_test.main(["--preset", "tiny", "--masked", "9", "--out", str(tmp_path / "m9")])


def test_masking_slots_finds_each_objects_slot_and_reads_positions_out_of_slots(tiny_collide_run):
    from masking_slots import fit_probe, intervene, probe, slot_owners
    from collide_data import load_collide
    _, out = tiny_collide_run
    data = load_collide(json.loads((out / "config.json").read_text())["data"])
    # perfect masks: slot k + 1 is object k's pixels (slot 0 the background)
    length = int(data.episode_starts[1])
    ids = data.id_maps(np.arange(length))                                      # video 0: (T, H, W)
    K = len(data.scenes[0]["objects"])
    masks = torch.nn.functional.one_hot(torch.from_numpy(ids).long(), K + 1).permute(0, 3, 1, 2).float()
    owners, pixels = slot_owners(masks, ids, K, min_pixels=4)
    seen = owners >= 0
    assert seen.mean() > 0.5
    for k in range(K):
        assert (owners[seen[:, k], k] == k + 1).all()
        assert (owners[~seen[:, k], k] == -1).all()
    assert (pixels[:, 0] == 0).all() and (pixels[:, 1:].sum(axis=1) > 0).all()   # the background holds no object
    # masks on a coarser grid are spread over the pixels they cover: a 2 x 2 grid over 4 x 4 ids
    grid = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]], [[0.0, 1.0], [1.0, 1.0]]]])        # (1, S=2, 2, 2)
    hand = np.zeros((1, 4, 4), np.uint8)
    hand[0, :2, :2], hand[0, 3, 3], hand[0, 2, 0] = 1, 2, 3       # object 0 in slot 0's cell; 1 and 2 in slot 1's
    owners, pixels = slot_owners(grid, hand, 3, min_pixels=1)
    assert owners.tolist() == [[0, 1, 1]] and pixels.tolist() == [[4, 2]]
    assert slot_owners(grid, hand, 3, min_pixels=2)[0].tolist() == [[0, -1, -1]]
    # the probe recovers a linear map from slots to centres
    rng = np.random.default_rng(0)
    slots = rng.normal(size=(2, 5, 3, 4))                                          # (V, T, S, D)
    own = rng.integers(-1, 3, size=(2, 5, 2))                                       # (V, T, K)
    true_map, bias = rng.normal(size=(4, 2)), np.array([100.0, 200.0])
    states = np.zeros((2, 5, 2, 3))
    for v, t, k in zip(*np.nonzero(own >= 0)):
        states[v, t, k, 1:3] = (slots[v, t, own[v, t, k]] @ true_map + bias) / 512
    weights = fit_probe(slots, own, states)
    np.testing.assert_allclose(probe(weights, slots), slots @ true_map + bias, atol=1e-6)
    # the intervention: X's slot takes the empty slot's vector in each frame X has one
    history = np.arange(3 * 4 * 2, dtype=np.float32).reshape(3, 4, 2)           # (h, S, D)
    own = np.array([[0, 1], [2, 1], [-1, 1]])                                    # (h, K): X = object 0
    px = np.array([[9, 5, 1, 0], [0, 5, 9, 3], [0, 5, 0, 0]])                    # object pixels a slot
    removed = intervene(history, own, px, 0)
    np.testing.assert_array_equal(removed[0, 0], history[0, 3])   # slot 3: free, fewest object pixels
    np.testing.assert_array_equal(removed[1, 2], history[1, 0])
    np.testing.assert_array_equal(removed[2], history[2])         # X has no slot there: untouched
    removed[0, 0] = history[0, 0]
    removed[1, 2] = history[1, 2]
    np.testing.assert_array_equal(removed, history)               # nothing else changed
    assert intervene(history, np.array([[-1, 1]] * 3), px, 0) is None                  # X never seen
    assert intervene(history[:, :2], np.array([[0, 1]] * 3), px[:, :2], 0) is None     # no empty slot


def test_masking_slots_runs_on_a_collide_run_and_the_table_reads_it(tiny_collide_run, tiny_run, capsys):
    import masking_slots
    import masking_table
    _, out = tiny_collide_run
    masking_slots.main(["--run", str(out), "--min-pixels", "1"])
    result = json.loads((out / "masking-test.json").read_text())
    assert result["slots"] == "learned" and 0 < result["visible objects"] <= 1
    parts = result["interaction_px"]
    assert parts["windows with a collision (object frames)"] + parts["windows without (object frames)"] > 0
    assert all(v >= 0 for v in parts.values())
    capsys.readouterr()
    masking_table.main([str(out)])
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith(f"| {result['masked']} | 1 |")]
    assert len(rows) == 1 and f"{parts['model, collision']:.3g} / " in rows[0]
    with pytest.raises(SystemExit, match="error: the masking test reads a collide run; .* was trained on 'pusht'"):
        masking_slots.main(["--run", str(tiny_run[1])])


def test_slot_modes_measures_the_gap_by_place_in_chain_and_names_a_missing_mode(tiny_run, capsys):
    import slot_modes
    # 2 episodes of 12 frames, frameskip 3: frame t sits at place t // 3 of its chain
    starts, fs = np.array([0, 12, 24]), 3
    rng = np.random.default_rng(0)
    frame = rng.normal(size=(24, 3, 4))
    place = np.concatenate([np.arange(12) // fs] * 2)
    video = frame + 0.1 * place[:, None, None]            # drifts 0.1 a place; place 0 is frame 0 alone
    r = slot_modes.compare_modes(video, frame, starts, fs, every=1)
    assert r["by place"] == pytest.approx({0: 0.0, 1: 0.1, 2: 0.2, 3: 0.3})
    assert r["identity best"] == 1.0 and r["mse"] == pytest.approx(r["mse matched"])
    assert r["step"]["video"] > r["step"]["frame"]          # the drift adds 0.1 a step
    # what the slots hold: frame mode a linear map of the state, video mode that plus the clock
    state = rng.uniform(0, 3, size=(24, 5))
    of_state = np.einsum("nf,fsd->nsd", slot_modes.state_features(state), rng.normal(size=(6, 3, 4)))
    with_clock = of_state + place[:, None, None] * rng.normal(size=(1, 3, 4))
    held = slot_modes.compare_modes(with_clock, of_state, starts, fs, every=1, state=state)["held"]
    assert held["video"]["state"] < 0.95 and held["video"]["state and place"] == pytest.approx(1.0)
    assert held["frame"]["state"] == pytest.approx(1.0) and held["frame"]["variance"] == pytest.approx(of_state.var(0).mean())
    assert set(held) == {"video", "frame"}                  # no frame is 5 places into its chain here
    clocked = of_state + np.concatenate([np.arange(12)] * 2)[:, None, None] * rng.normal(size=(1, 3, 4))
    later = slot_modes.compare_modes(clocked, of_state, starts, 1, every=1, state=state)["held"]["video, places 5 on"]
    assert later["state"] < 0.95 and later["state and place"] == pytest.approx(1.0)  # frameskip 1: places 5 to 11
    assert r["held"] == {}                                  # no state given
    swapped = video[:, [1, 0, 2]]                           # another order of objects in video mode
    r = slot_modes.compare_modes(swapped, frame, starts, fs, every=1)
    assert r["identity best"] < 0.2 and r["mse matched"] < r["mse"]
    _, out = tiny_run                                       # the tiny run has video-mode slots only
    with pytest.raises(SystemExit, match="--slot-mode frame --until slots"):
        slot_modes.main(["--run", str(out)])


def test_rollout_check_rolls_out_from_frames_alone_or_the_runs_own_slots(tiny_run, capsys):
    import rollout_check

    def table(*flags):
        rollout_check.main(["--ckpt", str(tiny_run[1]), "--starts", "6", "--steps", "2", *flags])
        out = capsys.readouterr().out
        rows = [line.split(" | ") for line in out.splitlines() if line.startswith("| 1 ") or line.startswith("| 2 ")]
        return out, [[float(x) for c in r[1:] for x in c.strip(" |").split(" / ")] for r in rows]

    out, alone = table("--from-place", "1")
    assert out.startswith("alone slots, 1 real frame of context; 6 validation starts") and len(alone) == 2
    out, two = table("--from-place", "1", "--context", "2")
    assert out.startswith("alone slots, 2 real frames of context; 6 validation starts")
    # the same starts (no motion alike); the model's forecast now also reads the frame before
    assert np.allclose(np.array(two)[:, 2:], np.array(alone)[:, 2:]) and not np.allclose(two, alone)
    out, chains = table("--from-place", "1", "--slots", "extracted")
    assert out.startswith("extracted slots, 1 real frame of context; 6 validation starts")
    # the tiny run's slots are read off chains: past a chain's first frame they are not a frame's alone
    assert np.all(np.isfinite(chains)) and not np.allclose(alone, chains)
    with pytest.raises(SystemExit, match="no validation window starts 1000 model steps"):
        rollout_check.main(["--ckpt", str(tiny_run[1]), "--from-place", "1000"])
    with pytest.raises(SystemExit, match="--context must be 1 to the model's history"):
        rollout_check.main(["--ckpt", str(tiny_run[1]), "--context", "9"])


def test_slot_zscore_probe_zscores_each_slot_entry_with_statistics_kept_beside_the_slots(tiny_run):
    import importlib.util
    from config import open_run
    from encoder import load_slots, token_files
    path = Path(__file__).parents[1] / "experiments" / "slot_zscore_probe.py"
    spec = importlib.util.spec_from_file_location("slot_zscore_probe", path)
    probe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(probe)
    cfg, info, _, _ = open_run(str(tiny_run[1]), "pusht", "test")
    n = len(np.load(token_files(Path(info["encoder"]), cfg)[0], mmap_mode="r"))
    z = probe.load_zscored(info["encoder"], cfg, n)
    raw = load_slots(Path(info["encoder"]), cfg, n)
    assert z.shape == raw.shape and (token_files(Path(info["encoder"]), cfg)[0].with_name("zscore-video.npz")).is_file()
    sample = z[::7].astype(np.float64)                    # the rows the statistics come from
    assert np.abs(sample.mean(0)).max() < 1e-3
    mean, std = probe.slot_stats(info["encoder"], cfg, n)     # read back from the file
    kept = std >= 0.1 * np.median(std)                     # entries whose std was not floored
    assert np.allclose(sample.std(0)[kept], 1, atol=1e-3) and np.all(sample.std(0)[~kept] < 1)
    assert np.allclose(z * np.maximum(std, 0.1 * np.median(std)) + mean, raw, atol=1e-5)


def test_cost_check_splits_the_planning_cost_into_its_slot_and_proprio_terms(tiny_run, tmp_path):
    import cost_check
    summaries = {}
    for weight in ("1", "0"):
        out = tmp_path / f"w{weight}.json"
        cost_check.main(["--ckpt", str(tiny_run[1]), "--episodes", "2", "--samples", "4", "--proprio-weight", weight,
                         "--out", str(out)])
        summaries[weight] = json.loads(out.read_text())["summary"]
    assert summaries["1"]["slot_term_std"] > 0 and summaries["1"]["proprio_term_std"] > 0
    # the slot term does not depend on the proprio weight; without that weight the cost is the slot term
    assert summaries["0"]["slot_term_std"] == pytest.approx(summaries["1"]["slot_term_std"], rel=1e-5)
    assert summaries["0"]["proprio_term_std"] == pytest.approx(0.0, abs=1e-7)
    assert summaries["0"]["dataset_plan_rank"] == summaries["0"]["dataset_plan_rank_slot_term"]
    for key in ("spearman_slot_term_block", "spearman_encoder_slot_term_block"):  # the slot term's, either weight
        assert -1 <= summaries["1"][key] <= 1 and summaries["0"][key] == pytest.approx(summaries["1"][key])


def test_an_ensemble_costs_its_members_mean_cost_plus_their_weighted_spread():
    import dataclasses
    import oracle_plan
    from config import PRESETS, build_predictor
    cfg = dataclasses.replace(PRESETS["tiny"], n_slots=2, slot_dim=oracle_plan.SLOT_DIM, slot_mode="frame")
    torch.manual_seed(0)
    a, b = build_predictor(cfg), build_predictor(cfg)
    stats = {"action_mean": [0.0, 0.0], "action_std": [1.0, 1.0]}
    g = torch.Generator().manual_seed(0)
    states = np.random.default_rng(0).uniform(100, 400, (6, 7))
    slots = torch.from_numpy(oracle_plan.object_slots(states[:3]))
    goal = torch.from_numpy(oracle_plan.object_slots(states[3:]))
    proprio, goal_proprio = torch.randn(3, 4, generator=g), torch.randn(3, 4, generator=g)
    candidates = torch.randn(3, 5, 4, 2 * cfg.frameskip, generator=g)
    args = (slots, proprio, goal, goal_proprio, candidates, 0, 1.0)

    def model(*predictors, weight=0.0):
        return oracle_plan.EnsembleWorldModel(cfg, list(predictors), stats, torch.device("cpu"), weight)

    alone = oracle_plan.OracleWorldModel(cfg, a, stats, torch.device("cpu"))
    # a member twice: no spread, whatever its weight; the cost is that member's
    torch.testing.assert_close(model(a, a, weight=3.0).costs(*args), alone.costs(*args))
    # two members: their mean cost, plus the weight times half their squared difference's mean
    cost_a, cost_b = alone.costs(*args), oracle_plan.OracleWorldModel(cfg, b, stats, torch.device("cpu")).costs(*args)
    ends_a, ends_b = (m.predict(slots, proprio, candidates, 0)[0] for m in (alone, model(b)))
    spread = ((ends_a - ends_b) / 2).pow(2).mean(dim=(-2, -1))
    assert spread.min() > 0
    torch.testing.assert_close(model(a, b).costs(*args), (cost_a + cost_b) / 2)
    torch.testing.assert_close(model(a, b, weight=2.0).costs(*args), (cost_a + cost_b) / 2 + 2 * spread)
    torch.testing.assert_close(model(a, b).predict(slots, proprio, candidates, 0)[0], (ends_a + ends_b) / 2)
