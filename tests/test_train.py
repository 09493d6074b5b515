import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import common
import files
import config
import encoder as encoder_stage
import plan
import train
from config import PRESETS, load_checkpoint
from data import load_dataset
from data import main as data_main
from plan import PlanConfig, load_world_model
from train import run

ROOT = Path(__file__).resolve().parents[1]
TINY = PRESETS["tiny"]


def dying(loss_factory, call):
    """A stand-in for a stage's loss factory whose loss raises KeyboardInterrupt during the
    ``call``-th training call (1-based), as a process killed there would stop."""
    def factory(cfg):
        inner, calls = loss_factory(cfg), {"train": 0}

        def loss_fn(model, batch, generator, step):
            if model.training:
                calls["train"] += 1
                if calls["train"] == call:
                    raise KeyboardInterrupt
            return inner(model, batch, generator, step)
        return loss_fn
    return factory


def read_log(path, stage):
    return [r for r in map(json.loads, Path(path).read_text().splitlines()) if r["stage"] == stage]


def test_tiny_pipeline_runs_end_to_end_and_learns(tiny_run):
    root, out = tiny_run
    info = json.loads((out / "config.json").read_text())
    enc_dir = Path(info["encoder"])
    for name in ("encoder.pt", "metrics.json", "encoder.png"):
        assert (enc_dir / name).is_file(), name
    # the slots of the predictor's data, in a folder of the encoder's named as the data folder is
    assert encoder_stage.token_files(enc_dir, TINY)[0] == enc_dir / Path(info["data"]).name / "slots-video.npy"
    for path in encoder_stage.token_files(enc_dir, TINY):
        assert path.is_file(), path
    ckpt = torch.load(out / "predictor.pt", weights_only=True)
    assert set(ckpt) >= {"model", "optimizer", "config", "step"} and ckpt["done"]
    assert ckpt["config"] == dataclasses.asdict(TINY)
    log = read_log(out / "log.jsonl", "predictor")
    assert [r["step"] for r in log] == list(range(1, ckpt["step"] + 1))
    seconds = [r["seconds"] for r in log]  # wall time since the stage began, step by step
    assert seconds[0] > 0 and all(a <= b for a, b in zip(seconds, seconds[1:]))
    val = [r["val_loss"] for r in log if "val_loss" in r]
    assert val[-1] < val[0]
    for r in log:  # the loss is the sum of its logged terms
        assert r["loss"] == pytest.approx(r["history"] + r["future"] + r["proprio"], rel=1e-5)
    metrics = json.loads((enc_dir / "metrics.json").read_text())
    assert set(metrics) == {"fg_ari_frame", "fg_ari_video", "mbo"}


def test_finished_stages_are_skipped(tiny_run):
    root, out = tiny_run
    data_meta = next((root / "data").glob("pusht-*/meta.json"))
    encoder = next((root / "runs" / "encoders").glob("*/encoder.pt"))
    stamps = (data_meta.stat().st_mtime_ns, encoder.stat().st_mtime_ns,
              (out / "predictor.pt").stat().st_mtime_ns)
    run(TINY, out, progress=False, root=root)
    assert stamps == (data_meta.stat().st_mtime_ns, encoder.stat().st_mtime_ns,
                      (out / "predictor.pt").stat().st_mtime_ns)


def test_until_stops_after_the_named_stage(tiny_run):
    root, _ = tiny_run
    cfg = dataclasses.replace(TINY, encoder_seed=1)  # a new encoder folder beside the fixture's
    out = run(cfg, root / "runs" / "until", progress=False, root=root, until="encoder")
    enc_dir = Path(json.loads((out / "config.json").read_text())["encoder"])
    assert (enc_dir / "encoder.pt").is_file() and (enc_dir / "metrics.json").is_file()
    assert not list(enc_dir.glob("*/slots-*")) and not (out / "predictor.pt").exists()
    with pytest.raises(ValueError, match="until must be one of"):
        run(cfg, out, progress=False, root=root, until="plan")


def test_checkpoint_for_another_config_fails_clearly(tiny_run, tmp_path):
    _, out = tiny_run
    other = dataclasses.asdict(dataclasses.replace(TINY, masked=0))
    with pytest.raises(ValueError, match="another config; differing fields: \\['masked'\\]"):
        load_checkpoint(out / "predictor.pt", other)
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        load_checkpoint(tmp_path / "missing.pt")
    # a checkpoint written before a field existed, or with one since removed, is refused with
    # the message to make it again: older runs are not converted
    older = torch.load(out / "predictor.pt", weights_only=True)
    del older["config"]["video_observed"]
    torch.save(older, tmp_path / "older.pt")
    with pytest.raises(ValueError, match=r"older version of this code \(it lacks \['video_observed'\]\); "
                                         "older runs are not converted: make it again"):
        load_checkpoint(tmp_path / "older.pt", dataclasses.asdict(TINY))
    # a probe added since is read as its default (the paper's term), as that run trained it
    older["config"].update(video_observed=TINY.video_observed)
    del older["config"]["masked_draw"], older["config"]["history_weight"], older["config"]["slot_norm"]
    torch.save(older, tmp_path / "older.pt")
    filled = load_checkpoint(tmp_path / "older.pt", dataclasses.asdict(TINY))["config"]
    assert filled["masked_draw"] == "fixed" and filled["slot_norm"] is False  # so is slot_norm, ours
    with pytest.raises(ValueError, match=r"another config; differing fields: \['history_weight'\]"):
        load_checkpoint(tmp_path / "older.pt", dataclasses.asdict(dataclasses.replace(TINY, history_weight=0.5)))
    older["config"].update(hide_last_action=True)
    torch.save(older, tmp_path / "older.pt")
    with pytest.raises(ValueError, match=r"it has \['hide_last_action'\]"):
        load_checkpoint(tmp_path / "older.pt", dataclasses.asdict(TINY))
    info = json.loads((out / "config.json").read_text())
    del info["config"]["future_action"]
    (tmp_path / "config.json").write_text(json.dumps(info))
    (tmp_path / "predictor.pt").write_bytes((out / "predictor.pt").read_bytes())
    with pytest.raises(ValueError, match=r"config.json was written by an older version .*\['future_action'\]"):
        config.open_run(tmp_path, "pusht", "planning")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a readable checkpoint"):
        load_checkpoint(tmp_path / "junk.pt")


def test_a_field_added_since_keeps_older_runs_hashes():
    # planning results record the run's config hash: slot_norm off leaves it what it was before
    # the field existed, so their seeds still join (plan_table.py) and resume (plan.py --resume)
    older = config.config_to_dict(TINY)
    del older["slot_norm"]
    assert config.config_hash(TINY) == common.short_hash(older)
    assert config.config_hash(dataclasses.replace(TINY, slot_norm=True)) != config.config_hash(TINY)


def test_resume_continues_with_the_same_losses(tiny_run, tmp_path, monkeypatch):
    root, out = tiny_run
    info = json.loads((out / "config.json").read_text())
    data = load_dataset(info["data"])
    slots = encoder_stage.load_slots(Path(info["encoder"]), TINY, len(data.state))
    ctx = common.setup("auto", progress=False)  # the device tiny_run trained on
    reference = read_log(out / "log.jsonl", "predictor")

    real_loss = train.predictor_loss
    killed = tmp_path / "killed"
    killed.mkdir()
    monkeypatch.setattr(train, "predictor_loss", dying(real_loss, 10))  # during step 10; checkpoint at 8
    with pytest.raises(KeyboardInterrupt):
        train.train_predictor(TINY, data, slots, killed, redo=False, resume=False, ctx=ctx)
    assert load_checkpoint(killed / "predictor.pt")["step"] == 8
    monkeypatch.setattr(train, "predictor_loss", real_loss)
    with pytest.raises(FileExistsError, match="--resume"):
        train.train_predictor(TINY, data, slots, killed, redo=False, resume=False, ctx=ctx)
    train.train_predictor(TINY, data, slots, killed, redo=False, resume=True, ctx=ctx)
    resumed = read_log(killed / "log.jsonl", "predictor")
    assert [r["step"] for r in resumed] == [r["step"] for r in reference]
    for a, b in zip(resumed, reference):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-6, abs=1e-7)



def test_slot_norm_fits_the_training_frames_and_the_planner_loads_them(tiny_run):
    root, out = tiny_run
    cfg = dataclasses.replace(TINY, slot_norm=True)
    run(cfg, root / "runs" / "snorm", progress=False, root=root)  # the tiny run's data, encoder and slots
    model, data = load_world_model(root / "runs" / "snorm", "cpu")
    info = json.loads((out / "config.json").read_text())
    slots = encoder_stage.load_slots(Path(info["encoder"]), cfg, len(data.state))
    starts = train.Windows(data, "train", cfg.n_history, cfg.n_future, cfg.frameskip).starts
    rows = torch.from_numpy(slots[starts])  # (N, S, D): fewer than 20,000, so every training window's first frame
    torch.testing.assert_close(model.predictor.slot_mean, rows.mean(0))
    torch.testing.assert_close(model.predictor.slot_std, rows.std(0).clamp(min=1e-4))
    assert not torch.equal(model.predictor.slot_std, torch.ones_like(rows[0]))


def test_encoder_resume_continues_with_the_same_losses_and_learning_rates(tiny_run, tmp_path, monkeypatch):
    # the encoder's learning rate follows a schedule: a resumed run must apply it to the base
    # rate, not to the scaled rate its optimizer state was saved with
    _, out = tiny_run
    info = json.loads((out / "config.json").read_text())
    data = load_dataset(info["encoder_data"])
    ctx = common.setup("auto", progress=False)
    reference = read_log(Path(info["encoder"]) / "log.jsonl", "encoder")
    real_loss = encoder_stage.encoder_loss
    killed = tmp_path / "encoder"
    killed.mkdir()
    monkeypatch.setattr(encoder_stage, "encoder_loss", dying(real_loss, 6))  # during step 6; checkpoint at 4
    with pytest.raises(KeyboardInterrupt):
        encoder_stage.train_encoder(TINY, data, killed, redo=False, resume=False, ctx=ctx)
    assert load_checkpoint(killed / "encoder.pt")["step"] == 4
    monkeypatch.setattr(encoder_stage, "encoder_loss", real_loss)
    encoder_stage.train_encoder(TINY, data, killed, redo=False, resume=True, ctx=ctx)
    resumed = read_log(killed / "log.jsonl", "encoder")
    assert [r["step"] for r in resumed] == [r["step"] for r in reference] == list(range(1, 7))
    for a, b in zip(resumed, reference):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-6, abs=1e-7)


def test_resume_with_more_epochs_continues_a_finished_predictor_exactly(tiny_run, tmp_path):
    root, out = tiny_run
    info = json.loads((out / "config.json").read_text())
    data = load_dataset(info["data"])
    slots = encoder_stage.load_slots(Path(info["encoder"]), TINY, len(data.state))
    ctx = common.setup("cpu", progress=False)
    longer = dataclasses.replace(TINY, epochs=2)
    scratch, extended = tmp_path / "scratch", tmp_path / "extended"
    scratch.mkdir(), extended.mkdir()
    train.train_predictor(longer, data, slots, scratch, redo=False, resume=False, ctx=ctx)
    train.train_predictor(TINY, data, slots, extended, redo=False, resume=False, ctx=ctx)
    one_epoch = load_checkpoint(extended / "predictor.pt")
    assert one_epoch["done"] and 0 < one_epoch["step"] < load_checkpoint(scratch / "predictor.pt")["step"]
    with pytest.raises(ValueError, match="--resume to continue it to 2 epochs"):
        train.train_predictor(longer, data, slots, extended, redo=False, resume=False, ctx=ctx)
    train.train_predictor(longer, data, slots, extended, redo=False, resume=True, ctx=ctx)
    a, b = load_checkpoint(scratch / "predictor.pt"), load_checkpoint(extended / "predictor.pt")
    assert a["done"] and b["done"] and a["step"] == b["step"] and b["config"]["epochs"] == 2
    for name in a["model"]:  # the same batches, masks and dropout: the same weights
        assert torch.allclose(a["model"][name], b["model"][name], rtol=1e-5, atol=1e-7), name
    steps = [r["step"] for r in read_log(extended / "log.jsonl", "predictor")]
    assert steps == list(range(1, a["step"] + 1))
    with pytest.raises(ValueError, match="cannot be shortened"):  # fewer epochs than trained
        train.train_predictor(TINY, data, slots, extended, redo=False, resume=True, ctx=ctx)
    with pytest.raises(ValueError, match="differing fields: \\['lr'\\]"):  # other fields still count
        train.train_predictor(dataclasses.replace(longer, lr=1e-3), data, slots, extended,
                              redo=False, resume=True, ctx=ctx)


@pytest.mark.slow
def test_runs_under_torchrun_ddp_and_a_nan_on_one_process_stops_every_process(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    ddp = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2"]
    flags = ["--preset", "tiny", "--no-progress", "--workers", "1", "--device", "cpu"]  # gloo: also on one GPU
    result = subprocess.run([*ddp, str(ROOT / "train.py"), *flags, "--out", "runs/ddp"], cwd=tmp_path, env=env,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    ckpt = torch.load(tmp_path / "runs" / "ddp" / "predictor.pt", weights_only=True)
    assert ckpt["done"] and ckpt["step"] > 0
    steps = [r["step"] for r in read_log(tmp_path / "runs" / "ddp" / "log.jsonl", "predictor")]
    assert steps == list(range(1, ckpt["step"] + 1))  # one log, written by rank 0 only

    # rank 1's loss turns NaN at its third step; rank 0's stays finite. Both must stop with
    # the message (rank 0 saying it was another process's) instead of rank 0 waiting forever.
    # The run above left the data, encoder and slots: only the predictor trains.
    launcher = tmp_path / "nan_on_rank1.py"
    launcher.write_text(
        "import os, sys\n"
        f"sys.path.insert(0, {str(ROOT)!r})\n"
        "import train\n"
        "real = train.predictor_loss\n"
        "def predictor_loss(cfg):\n"
        "    inner = real(cfg)\n"
        "    def loss_fn(model, batch, generator, step):\n"
        "        loss, terms = inner(model, batch, generator, step)\n"
        "        if model.training and step == 2 and os.environ['RANK'] == '1':\n"
        "            loss = loss * float('nan')\n"
        "        return loss, terms\n"
        "    return loss_fn\n"
        "train.predictor_loss = predictor_loss\n"
        "if __name__ == '__main__':  # the data collector's processes import this file too\n"
        "    train.main(sys.argv[1:])\n")
    result = subprocess.run([*ddp, str(launcher), *flags, "--out", "runs/nan"], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    out = result.stdout + result.stderr
    assert "[encoder] validation" not in out, out[-3000:]       # the encoder was not trained again
    assert "the loss is nan at step 3: training diverged" in out, out[-3000:]
    assert "another process's loss is not finite at step 3" in out, out[-3000:]
    nan = tmp_path / "runs" / "nan" / "predictor.pt"
    assert not nan.is_file() or not torch.load(nan, weights_only=True)["done"]


def test_extracted_slots_round_trip(tiny_run, tmp_path):
    root, out = tiny_run
    info = json.loads((out / "config.json").read_text())
    enc_dir = Path(info["encoder"])
    data = load_dataset(info["data"])
    encoder = config.build_encoder(TINY)
    encoder.load_state_dict(load_checkpoint(enc_dir / "encoder.pt")["model"])
    encoder.eval()
    begin, end = data.episode_starts[1], data.episode_starts[2]
    chain = np.arange(begin + 2, end, TINY.frameskip)   # the frames one window can hold
    frames = torch.from_numpy(np.asarray(data.pixels[chain])).permute(0, 3, 1, 2).float() / 255
    frames = encoder_stage.resize_frames(frames[None], TINY.image_size)  # (1, T, 3, H, W)
    with torch.no_grad():
        alone = encoder.encode(frames.transpose(0, 1), noise=False)["slots"][:, 0]  # each frame alone
        in_video = encoder.encode(frames, noise=False)["slots"][0]

    # the run's slots (the paper's, slot_mode "video") follow each chain of frames a window holds ...
    assert TINY.slot_mode == "video"
    slots = encoder_stage.load_slots(enc_dir, TINY, len(data.state))
    assert torch.allclose(torch.from_numpy(slots[chain]), in_video, atol=1e-5)
    # ... and frame-mode slots (ours) are the frames encoded alone, as plan.py encodes them
    frame = dataclasses.replace(TINY, slot_mode="frame")
    encoder_stage.extract_slots(encoder, data, frame, tmp_path, "cpu", progress=False)
    slots = encoder_stage.load_slots(tmp_path, frame, len(data.state))
    assert torch.allclose(torch.from_numpy(slots[chain]), alone, atol=1e-5)
    assert not torch.allclose(in_video[1:], alone[1:], atol=1e-3)   # the two modes differ
    assert torch.allclose(in_video[0], alone[0], atol=1e-5)   # a chain's first frame is encoded alone
    assert encoder.pixel_mean.tolist() != [0.5, 0.5, 0.5]   # centred on the data's colours
    with pytest.raises(ValueError, match="another encoder or dataset"):
        encoder_stage.load_slots(enc_dir, dataclasses.replace(TINY, n_iters=1), len(data.state))
    with pytest.raises(FileNotFoundError, match="frame-mode slots"):
        encoder_stage.load_slots(enc_dir, frame, len(data.state))
    # slots written before an encoder field existed are another encoder's: extracted again
    meta_path = encoder_stage.token_files(tmp_path, frame)[1]
    meta = json.loads(meta_path.read_text())
    del meta["encoder"]["encoder_clip"]
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="another encoder or dataset"):
        encoder_stage.load_slots(tmp_path, frame, len(data.state))


def test_each_policys_data_gets_its_own_slots_from_the_shared_encoder(tiny_run):
    # the encoder trains on the all-moving data whatever the predictor's policy, so runs on
    # the weak and the expert data share it; each must read the slots of its own frames
    root, _ = tiny_run
    assert TINY.policy == "expert"   # the presets collect with the scripted expert; weak is the other
    weak = dataclasses.replace(TINY, policy="weak")
    out = run(weak, root / "runs" / "weak", progress=False, root=root, until="slots", workers=1)
    info = json.loads((out / "config.json").read_text())
    enc_dir = Path(info["encoder"])
    assert enc_dir.name.endswith(config.encoder_hash(TINY))   # the same encoder folder
    expert_files, weak_files = encoder_stage.token_files(enc_dir, TINY), encoder_stage.token_files(enc_dir, weak)
    assert weak_files[0].is_file() and expert_files[0].is_file() and weak_files[0] != expert_files[0]
    data = load_dataset(info["data"])
    slots = encoder_stage.load_slots(enc_dir, weak, len(data.state))
    model, _ = load_world_model(root / "runs" / "tiny", torch.device("cpu"))  # the same encoder
    rows = data.episode_starts[1] + np.arange(TINY.frameskip)   # each a chain's first frame, encoded alone
    torch.testing.assert_close(model.encode(data.pixels[rows]), torch.from_numpy(slots[rows]), atol=1e-5, rtol=0)
    # a description naming another dataset is refused, even at the same shape
    meta = json.loads(expert_files[1].read_text())
    weak_files[1].write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="another encoder or dataset"):
        encoder_stage.load_slots(enc_dir, weak, len(data.state))


def test_mask_moments_follow_each_slot_in_training_and_planning(tiny_run, tmp_path):
    root, _ = tiny_run
    cfg = dataclasses.replace(TINY, mask_moments=2.0)
    out = run(cfg, root / "runs" / "moments", progress=False, root=root)  # the fixture's encoder and slots
    info = json.loads((out / "config.json").read_text())
    enc_dir, data = Path(info["encoder"]), load_dataset(info["data"])
    plain = encoder_stage.load_slots(enc_dir, TINY, len(data.state))
    slots = encoder_stage.load_slots(enc_dir, cfg, len(data.state))
    D = TINY.slot_dim
    assert slots.shape == (*plain.shape[:2], D + 10)
    np.testing.assert_array_equal(slots[..., :D], plain)
    np.testing.assert_allclose(slots[..., D].sum(-1), 2.0, rtol=1e-5)  # 2 x the slots' shares of the frame
    # the planner encodes a frame as a chain's first frame, moments included
    model, _ = load_world_model(out, torch.device("cpu"))
    rows = data.episode_starts[1] + np.arange(TINY.frameskip)
    torch.testing.assert_close(model.encode(data.pixels[rows]), torch.from_numpy(slots[rows]), atol=1e-5, rtol=0)
    plan_cfg = PlanConfig(seeds=(0,), episodes=2, samples=6, topk=2, iterations=1, budget=5, receding=1,
                          horizon=1, gifs=0)
    results, _ = plan.evaluate_model(plan_cfg, model, data, tmp_path / "moments.json", progress=False)
    assert len(results["seeds"]["0"]["final_block_px"]) == 2
    # slots extracted without moments are not used for them, and say so; a run that wants
    # them extracts again, in the precision the slots were made in
    meta_path = encoder_stage.token_files(enc_dir, TINY)[1]
    meta = json.loads(meta_path.read_text())
    meta_path.write_text(json.dumps({k: v for k, v in meta.items() if k != "moments"}))
    assert encoder_stage.slots_extracted(enc_dir, TINY) and not encoder_stage.slots_extracted(enc_dir, cfg)
    with pytest.raises(FileNotFoundError, match="without mask moments"):
        encoder_stage.load_slots(enc_dir, cfg, len(data.state))
    run(cfg, root / "runs" / "moments", progress=False, root=root, until="slots", precision="bf16")
    assert json.loads(meta_path.read_text()) == meta
    np.testing.assert_array_equal(encoder_stage.load_slots(enc_dir, cfg, len(data.state)), slots)
    with pytest.raises(ValueError, match="--mask-moments"):
        config.check_config(dataclasses.replace(TINY, mask_moments=-1.0))


def test_an_interrupted_slot_extraction_goes_on_from_its_last_save(tiny_run, tmp_path):
    root, out = tiny_run
    info = json.loads((out / "config.json").read_text())
    data = load_dataset(info["data"])
    encoder = config.build_encoder(TINY)
    encoder.load_state_dict(load_checkpoint(Path(info["encoder"]) / "encoder.pt")["model"])
    video = dataclasses.replace(TINY, slot_mode="video")
    (tmp_path / "whole").mkdir()
    encoder_stage.extract_slots(encoder, data, video, tmp_path / "whole", "cpu", progress=False, batch_chains=2)
    whole = encoder_stage.load_slots(tmp_path / "whole", video, len(data.state))
    n_chains = (len(data.episode_starts) - 1) * TINY.frameskip   # one per episode and phase
    n_groups = (n_chains + 1) // 2

    class Stop(Exception):
        pass

    encode, calls = encoder.encode, []

    def stops_at_the_third_call(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise Stop
        return encode(*args, **kwargs)

    encoder.encode = stops_at_the_third_call
    (tmp_path / "cut").mkdir()
    with pytest.raises(Stop):
        encoder_stage.extract_slots(encoder, data, video, tmp_path / "cut", "cpu", progress=False,
                            batch_chains=2, save_every=0)
    npy, meta = encoder_stage.token_files(tmp_path / "cut", video)
    assert not npy.exists() and not meta.exists()
    calls.clear()
    encoder.encode = lambda *args, **kwargs: calls.append(1) or encode(*args, **kwargs)
    encoder_stage.extract_slots(encoder, data, video, tmp_path / "cut", "cpu", progress=False, batch_chains=2)
    assert len(calls) == n_groups - 2   # the two saved groups are not encoded again
    assert np.array_equal(encoder_stage.load_slots(tmp_path / "cut", video, len(data.state)), whole)
    moments = encoder_stage.moments_file(tmp_path / "cut", video)
    assert sorted(npy.parent.iterdir()) == sorted([meta, moments, npy])
    with_moments = dataclasses.replace(video, mask_moments=1.0)
    assert np.array_equal(encoder_stage.load_slots(tmp_path / "cut", with_moments, len(data.state)),
                          encoder_stage.load_slots(tmp_path / "whole", with_moments, len(data.state)))

    # a partial file written by other weights is not continued
    calls.clear()
    encoder.encode = stops_at_the_third_call
    with pytest.raises(Stop):
        encoder_stage.extract_slots(encoder, data, video, tmp_path / "cut", "cpu", progress=False,
                            batch_chains=2, save_every=0)
    with torch.no_grad():
        next(encoder.parameters()).add_(0.1)
    calls.clear()
    encoder.encode = lambda *args, **kwargs: calls.append(1) or encode(*args, **kwargs)
    encoder_stage.extract_slots(encoder, data, video, tmp_path / "cut", "cpu", progress=False, batch_chains=2)
    assert len(calls) == n_groups
    assert not np.allclose(encoder_stage.load_slots(tmp_path / "cut", video, len(data.state)), whole)


@pytest.mark.slow
def test_bf16_runs_the_stages_under_autocast_and_records_it(tiny_run, tmp_path):
    root, _ = tiny_run
    cfg = dataclasses.replace(TINY, encoder_seed=2)  # a new encoder folder beside the fixture's
    out = run(cfg, root / "runs" / "bf16", progress=False, root=root, until="slots", precision="bf16")
    info = json.loads((out / "config.json").read_text())
    enc_dir = Path(info["encoder"])
    assert info["precision"] == "bf16"
    assert load_checkpoint(enc_dir / "encoder.pt")["precision"] == "bf16"
    assert json.loads(encoder_stage.token_files(enc_dir, cfg)[1].read_text())["precision"] == "bf16"
    data = load_dataset(info["data"])
    bf16 = encoder_stage.load_slots(enc_dir, cfg, len(data.state))
    assert bf16.dtype == np.float32

    # the same weights extracting in fp32: close to the bf16 slots, but not equal (autocast was on)
    encoder = config.build_encoder(cfg)
    encoder.load_state_dict(load_checkpoint(enc_dir / "encoder.pt")["model"])
    encoder_stage.extract_slots(encoder, data, cfg, tmp_path, "cpu", progress=False)
    fp32 = encoder_stage.load_slots(tmp_path, cfg, len(data.state))
    error = np.abs(bf16 - fp32)
    assert error.max() > 0 and error.mean() < 0.05 * np.abs(fp32).mean()
    with pytest.raises(ValueError, match="precision must be one of"):
        run(cfg, out, progress=False, root=root, precision="fp16")


def test_collide_pipeline_trains_a_predictor_without_action_nodes(tiny_collide_run):
    from collide_data import load_collide
    _, out = tiny_collide_run
    info = json.loads((out / "config.json").read_text())
    cfg = config.COLLIDE_PRESETS["tiny"]
    data = load_collide(info["data"], expect=config.data_config(cfg))
    assert len(data.scenes) == cfg.episodes and data.n_observed == cfg.video_observed
    slots = np.load(encoder_stage.token_files(Path(info["encoder"]), cfg)[0])
    assert slots.shape == (len(data.pixels), cfg.n_slots, cfg.slot_dim)
    ckpt = load_checkpoint(out / "predictor.pt", dataclasses.asdict(cfg))
    assert ckpt["done"]
    assert not any(k.startswith(("action_in", "proprio_in", "proprio_out")) for k in ckpt["model"])
    log = read_log(out / "log.jsonl", "predictor")
    assert all(r["proprio"] == 0.0 for r in log)
    metrics = json.loads((Path(info["encoder"]) / "metrics.json").read_text())
    assert 0.0 <= metrics["mbo"] <= 1.0  # scored against the world's stored id maps


def test_unknown_dataset_fails_clearly(capsys):
    with pytest.raises(SystemExit):
        train.main(["--dataset", "clevrer"])
    assert "unknown --dataset 'clevrer'" in capsys.readouterr().err
    with pytest.raises(ValueError, match="unknown dataset 'clevrer'"):
        config.check_config(dataclasses.replace(TINY, dataset="clevrer"))
    with pytest.raises(ValueError, match="--history-weight must be >= 0, got -1.0"):
        config.check_config(dataclasses.replace(TINY, history_weight=-1.0))


def test_a_mask_that_hides_nothing_is_refused():
    # the object and token masks never hide frame 0, so one history frame leaves them nothing
    for kind in ("object", "token"):
        with pytest.raises(ValueError, match=f"--masked 1 hides nothing with --mask-kind {kind} and --n-history 1"):
            config.check_config(dataclasses.replace(TINY, masked=1, mask_kind=kind, n_history=1))
    with pytest.raises(ValueError, match="hides nothing with --mask-kind none"):
        config.check_config(dataclasses.replace(TINY, masked=1, mask_kind="none"))
    config.check_config(dataclasses.replace(TINY, masked=1, mask_kind="tube", n_history=1))  # tube hides frame 0
    config.check_config(dataclasses.replace(TINY, masked=0, n_history=1))


def test_a_file_in_the_way_stops_with_one_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile").write_text("")
    with pytest.raises(SystemExit, match="error: cannot make a folder at afile: a file stands in the way"):
        train.main(["--preset", "tiny", "--out", "afile/run", "--no-progress"])
    with pytest.raises(SystemExit, match="error: cannot make a folder at afile/d.partial: a file stands"):
        data_main(["--preset", "tiny", "--out", "afile/d"])
    assert (tmp_path / "afile").read_text() == "" and sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


def test_frame_mode_slots_need_query_init():
    with pytest.raises(ValueError, match="needs --slot-init query"):
        config.check_config(dataclasses.replace(TINY, slot_mode="frame", slot_init="noise"))
    with pytest.raises(ValueError, match="slot mode must be"):
        config.check_config(dataclasses.replace(TINY, slot_mode="clip"))
    config.check_config(dataclasses.replace(TINY, slot_mode="video", slot_init="noise"))


class _Recorder(torch.nn.Module):
    """Stands in for the predictor: records what the loss feeds it and echoes the slots."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def forward(self, slots, mask, actions, proprio, n_history, time_offset=0):
        self.calls.append((n_history, slots, actions.shape[1], proprio.shape[1], mask, time_offset))
        return {"slots": slots, "proprio": proprio, "proprio_target": proprio}


@pytest.mark.parametrize("dataset", sorted(config.DATASETS))
@pytest.mark.parametrize("preset", ["cpu", "paper", "tiny"])
def test_presets_train_the_papers_method(dataset, preset):
    cfg = config.DATASETS[dataset][preset]
    assert {name: getattr(cfg, name) for name in config.OURS} == config.PAPER_METHOD
    assert PRESETS["cpu"].random_history is False and PRESETS["cpu"].future_action == "query"  # not vacuous
    assert (cfg.mask_kind, cfg.aux, cfg.causal) == ("object", "nodes", False)
    assert "none of our additions" in config.describe_method(cfg)
    line = config.describe_method(dataclasses.replace(cfg, slot_residual=True, aux="concat"))
    assert "our additions on: slot_residual=True" in line and "ablations: aux=concat" in line
    assert "probes" not in line and cfg.history_weight == 1.0
    assert "probes: history_weight=0.0" in config.describe_method(dataclasses.replace(cfg, history_weight=0.0))
    assert cfg.masked_draw == "fixed" and "probes: masked_draw=uniform" in config.describe_method(
        dataclasses.replace(cfg, masked_draw="uniform"))
    with pytest.raises(ValueError, match="--masked-draw"):
        config.check_config(dataclasses.replace(cfg, masked_draw="uniform", mask_kind="tube"))
    assert cfg.encoder_data == ("all_moving" if dataset == "pusht" else "predictor")


def test_print_config_prints_the_resolved_config_and_exits(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    train.main(["--dataset", "pusht", "--preset", "paper", "--masked", "1", "--print-config"])
    printed = json.loads(capsys.readouterr().out)
    assert printed == dataclasses.asdict(PRESETS["paper"]) and not list(tmp_path.iterdir())


def test_random_history_trains_on_the_last_h_frames_of_each_window():
    cfg = dataclasses.replace(TINY, n_history=3, n_future=1, masked=1, random_history=True)
    B, T, S, D = 4, 4, cfg.n_slots, 2
    slots = torch.arange(B * T * S * D, dtype=torch.float32).reshape(B, T, S, D)
    batch = {"slots": slots, "actions": torch.randn(B, T, 10), "proprio": torch.randn(B, T, 4)}
    model = _Recorder()
    for step in range(40):
        train.predictor_loss(cfg)(model, batch, common.step_generator(0, step, 0), step)
    histories = {h for h, *_ in model.calls}
    assert histories == {1, 2, 3}
    for h, seen, t_actions, t_proprio, mask, offset in model.calls:
        assert torch.equal(seen, slots[:, 3 - h:])  # the oldest 3 - h frames dropped ...
        assert offset == 3 - h  # ... and the others keep their time positions
        assert t_actions == t_proprio == h + 1
        assert mask.shape == (B, h + 1, S) and mask[:, h].all() and not mask[:, 0].any()
    model.calls = []
    fixed = dataclasses.replace(cfg, random_history=False)
    for step in range(5):
        train.predictor_loss(fixed)(model, batch, common.step_generator(0, step, 0), step)
    assert {h for h, *_ in model.calls} == {3}
    # the same step draws the same history length (resume reproduces the run)
    model.calls = []
    for _ in range(2):
        train.predictor_loss(cfg)(model, batch, common.step_generator(0, 7, 0), 7)
    assert model.calls[0][0] == model.calls[1][0]


def test_encoder_plain_steps_switch_the_last_steps_to_plain_mse():
    cfg = dataclasses.replace(TINY, encoder_steps=10, encoder_plain_steps=3)
    config.check_config(cfg)
    torch.manual_seed(0)
    model = config.build_encoder(cfg)
    model.background.copy_(torch.tensor([1.0, 1.0, 1.0]))
    frames = torch.rand(2, 2, 3, cfg.image_size, cfg.image_size)
    loss_fn = encoder_stage.encoder_loss(cfg)
    losses = {}
    with torch.no_grad():
        for step in (0, 6, 7, 9):
            loss, terms = loss_fn(model, {"frames": frames}, torch.Generator().manual_seed(0), step)
            losses[step] = (loss.item(), terms["mse"].item())
    for step in (0, 6):   # weighted: pixels far from the background count more
        assert losses[step][0] > 1.5 * losses[step][1]
    for step in (7, 9):   # the last 3 steps: plain MSE, the same reconstruction
        assert losses[step][0] == pytest.approx(losses[step][1])
        assert losses[step][1] == pytest.approx(losses[0][1])
    with pytest.raises(ValueError, match="between 0 and --encoder-steps = 10"):
        config.check_config(dataclasses.replace(cfg, encoder_plain_steps=11))
    with pytest.raises(ValueError, match="needs --backbone cnn and --recon-weight > 0"):
        config.check_config(dataclasses.replace(cfg, recon_weight=0.0))


def test_encoder_plain_lr_holds_the_plain_steps_at_a_constant_rate():
    cfg = dataclasses.replace(TINY, encoder_steps=10, encoder_warmup=2, encoder_lr=1e-3, encoder_plain_steps=3)
    cosine = encoder_stage.encoder_lr_factor(cfg)
    held = encoder_stage.encoder_lr_factor(dataclasses.replace(cfg, encoder_plain_lr=3e-4))
    for step in range(7):  # warmup and cosine before the plain steps are the same
        assert held(step) == cosine(step)
    assert cosine(0) == pytest.approx(0.5) and cosine(9) < cosine(7) < cosine(6)
    for step in (7, 8, 9):
        assert held(step) == pytest.approx(0.3)
    with pytest.raises(ValueError, match="needs a value >= 0 and --encoder-plain-steps > 0"):
        config.check_config(dataclasses.replace(cfg, encoder_plain_steps=0, encoder_plain_lr=3e-4))
    with pytest.raises(ValueError, match="needs a value >= 0"):
        config.check_config(dataclasses.replace(cfg, encoder_plain_lr=-1.0))


def test_the_exponential_schedule_halves_the_rate_over_the_steps_after_the_warmup():
    cfg = dataclasses.replace(TINY, encoder_steps=102, encoder_warmup=2, encoder_schedule="exponential")
    factor = encoder_stage.encoder_lr_factor(cfg)
    assert factor(0) == pytest.approx(0.5) and factor(2) == pytest.approx(1.0)
    assert factor(52) == pytest.approx(0.5 ** 0.5) and factor(102) == pytest.approx(0.5)
    assert all(factor(s + 1) < factor(s) for s in range(2, 102))
    with pytest.raises(ValueError, match="--encoder-schedule must be one of cosine|exponential"):
        config.check_config(dataclasses.replace(cfg, encoder_schedule="linear"))


def test_encoder_flip_mirrors_training_clips_and_not_validation_clips():
    cfg = dataclasses.replace(TINY, encoder_flip=1.0)
    torch.manual_seed(0)
    model = config.build_encoder(cfg)
    frames = torch.rand(2, 2, 3, cfg.image_size, cfg.image_size, generator=torch.Generator().manual_seed(1))
    loss_fn = encoder_stage.encoder_loss(cfg)

    def direct(clips, draws):   # the model's own loss, the generator in the state loss_fn leaves it
        generator = torch.Generator().manual_seed(0)
        torch.rand(draws, generator=generator)
        return model(clips, generator=generator)["loss"].item()

    with torch.no_grad():
        trained = loss_fn(model.train(), {"frames": frames}, torch.Generator().manual_seed(0), 0)[0].item()
        validated = loss_fn(model.eval(), {"frames": frames}, torch.Generator().manual_seed(0), 0)[0].item()
        mirrored, model.training = direct(frames.flip(-1), 2), True
        assert trained == pytest.approx(mirrored) and trained != pytest.approx(direct(frames, 2))
        model.eval()
        assert validated == pytest.approx(direct(frames, 0))


def test_videosaur_fields_are_checked():
    with pytest.raises(ValueError, match="--similarity-weight .* needs --backbone dinov2"):
        config.check_config(dataclasses.replace(TINY, similarity_weight=0.25))
    dino = dataclasses.replace(TINY, backbone="dinov2", decoder="mlp", similarity_weight=0.25)
    config.check_config(dataclasses.replace(dino, encoder_clip_len=2))
    with pytest.raises(ValueError, match="needs --backbone dinov2 and --encoder-clip-len >= 2"):
        config.check_config(dataclasses.replace(dino, encoder_clip_len=1))  # one frame has no t + 1
    with pytest.raises(ValueError, match="need --encoder-stride >= 0, 0 <= --encoder-flip <= 1"):
        config.check_config(dataclasses.replace(TINY, encoder_flip=1.5))


def test_the_paper_presets_encoder_is_videosaur_as_app_d1_trains_it():
    for cfg, batch, weight in ((PRESETS["paper"], 64, 0.25), (config.COLLIDE_PRESETS["paper"], 32, 0.3)):
        config.check_config(cfg)
        assert (cfg.backbone, cfg.n_iters_first, cfg.n_iters, cfg.encoder_steps) == ("dinov2", 3, 2, 100_000)
        assert (cfg.encoder_batch, cfg.encoder_clip_len, cfg.encoder_stride) == (batch, 6, 2)
        assert cfg.encoder_lr == pytest.approx(1e-4 * batch / 32)   # 1e-4 per 32 samples
        assert (cfg.encoder_warmup, cfg.encoder_schedule, cfg.encoder_clip) == (2000, "exponential", 0.05)
        assert (cfg.similarity_weight, cfg.similarity_temp) == (weight, 0.15)
        assert (cfg.slot_init, cfg.slot_mode) == ("noise", "video")   # the official RandomInit, whole chains


def test_a_dinov2_encoder_trains_as_the_paper_preset_does(tiny_run, tmp_path):
    # every field the paper preset sets for VideoSAUR, at a tiny size: a 3-frame clip 2 steps
    # apart, flips, the exponential schedule, the SlotMixer decoder and the similarity loss
    from dinov2 import DinoV2
    _, out = tiny_run
    data = load_dataset(json.loads((out / "config.json").read_text())["encoder_data"])
    torch.save(DinoV2().state_dict(), tmp_path / "dinov2.pth")   # random weights in the released layout
    cfg = dataclasses.replace(TINY, backbone="dinov2", dinov2_path=str(tmp_path / "dinov2.pth"), image_size=28,
                              encoder_steps=4, encoder_clip_len=3, encoder_stride=2, encoder_flip=0.5,
                              encoder_schedule="exponential", similarity_weight=0.25, decoder="mixer")
    config.check_config(cfg)
    (tmp_path / "encoder").mkdir()
    encoder_stage.train_encoder(cfg, data, tmp_path / "encoder", redo=False, resume=False,
                                ctx=common.setup("cpu", progress=False))
    records = read_log(tmp_path / "encoder" / "log.jsonl", "encoder")
    assert [r["step"] for r in records] == [1, 2, 3, 4]
    for r in records:   # the loss is the feature MSE plus a quarter of the similarity term
        assert r["loss"] == pytest.approx(r["mse"] + 0.25 * r["similarity"], rel=1e-5)
    assert "val_similarity" in records[-1] and records[-1]["val_similarity"] > 0
    with pytest.raises(ValueError, match="no clip of 3 frames at frameskip 25 fits"):   # the clips' stride
        encoder_stage.train_encoder(dataclasses.replace(cfg, encoder_stride=25), data, tmp_path / "encoder",
                                    redo=True, resume=False, ctx=common.setup("cpu", progress=False))


def test_stage_folders_are_named_by_every_field_they_depend_on():
    # no field is left out of a hash at some earlier value: a field that changes the data or
    # the encoder changes the folder, one that does not leaves it
    cfg = PRESETS["cpu"]
    assert config.encoder_hash(dataclasses.replace(cfg, encoder_plain_steps=100)) != config.encoder_hash(cfg)
    assert config.encoder_hash(dataclasses.replace(cfg, encoder_data="predictor")) != config.encoder_hash(cfg)
    assert config.encoder_hash(dataclasses.replace(cfg, masked=0, lr=1e-3)) == config.encoder_hash(cfg)
    expert, moving = config.data_config(cfg), config.encoder_data_config(cfg)
    assert expert.policy == "expert" and config.data_dir(".", expert) != config.data_dir(".", moving)


@pytest.mark.parametrize("field, value", [("epochs", 0), ("epochs", -1), ("encoder_steps", 0), ("batch_size", 0),
                                          ("n_slots", 0), ("n_history", 0), ("image_size", 0), ("val_every", 0),
                                          ("lr", -1.0), ("encoder_lr", 0.0)])
def test_impossible_values_are_refused_before_any_stage_runs(field, value, tmp_path):
    cfg = dataclasses.replace(TINY, **{field: value})
    flag = "--" + field.replace("_", "-")
    with pytest.raises(ValueError, match=f"{flag} must be"):
        run(cfg, tmp_path / "run", progress=False, root=tmp_path)
    assert not any(tmp_path.iterdir())  # nothing collected, nothing written


def test_a_non_finite_loss_stops_training_before_the_checkpoint_is_done(tiny_run, tmp_path, monkeypatch):
    _, out = tiny_run
    info = json.loads((out / "config.json").read_text())
    data = load_dataset(info["data"])
    slots = encoder_stage.load_slots(Path(info["encoder"]), TINY, len(data.state)).copy()
    slots[:] = np.nan
    ctx = common.setup("cpu", progress=False)
    with pytest.raises(FloatingPointError, match="loss is nan at step 1: training diverged"):
        train.train_predictor(TINY, data, slots, tmp_path, redo=False, resume=False, ctx=ctx)
    assert not (tmp_path / "predictor.pt").exists()
    assert not (tmp_path / "log.jsonl").exists()


def test_an_interrupted_redo_of_the_encoder_leaves_nothing_of_the_old_one(tiny_run, tmp_path, monkeypatch):
    root, out = tiny_run
    work = tmp_path / "copy"
    shutil.copytree(root, work)
    info = json.loads((out / "config.json").read_text())
    enc_dir = work / Path(info["encoder"]).relative_to(root)
    run_dir = work / out.relative_to(root)
    assert list(enc_dir.glob("*/slots-*.json")) and (enc_dir / "metrics.json").is_file()
    monkeypatch.setattr(encoder_stage, "encoder_loss", dying(encoder_stage.encoder_loss, 6))  # during step 6
    with pytest.raises(KeyboardInterrupt):
        run(TINY, run_dir, redo=("encoder",), progress=False, root=work)
    assert not list(enc_dir.glob("*/*.json")) and not (enc_dir / "metrics.json").exists()
    assert not load_checkpoint(enc_dir / "encoder.pt")["done"]
    with pytest.raises(ValueError, match="encoder.pt is unfinished"):
        plan.evaluate(PlanConfig(ckpt=str(run_dir), policy="random", seeds=(0,), episodes=1, gifs=0), progress=False)


def test_a_folder_being_written_is_refused_to_a_second_process(tiny_run, tmp_path):
    _, out = tiny_run
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        lock = out.with_name(out.name + ".lock")
        lock.write_text(str(holder.pid))  # as if a run of that process held the folder
        with pytest.raises(FileExistsError, match=f"being written by process {holder.pid}"):
            run(TINY, out, progress=False, root=tmp_path)
    finally:
        holder.kill()
        holder.wait()
    with files.claim(out, "a test"):  # the holder is gone: its lock is stale and taken over
        assert lock.read_text() == str(os.getpid())
    assert not lock.exists()
