"""The patch-token world model (DINO-WM, paper App. H) as one more model of the same pipeline."""

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from config import MODELS, PRESETS, build_encoder, build_predictor, check_config, slot_dim_seen
from encoder import load_slots, patch_features
from plan import PlanConfig, WorldModel, evaluate, goal_cost, load_world_model

PATCHES = dataclasses.replace(PRESETS["tiny"], **MODELS["dino-wm"], patch_grid=4)


@pytest.fixture(scope="module")
def tiny_patch_run(tiny_run):
    """The dino-wm model at the tiny preset, beside tiny_run: the same data and encoder."""
    from train import run
    root, slot_run = tiny_run
    return root, run(PATCHES, root / "runs" / "tiny-patches", progress=False, root=root, workers=1), slot_run


def test_patch_features_pool_the_frozen_cnn_map_into_the_documented_shape():
    torch.manual_seed(0)
    encoder = build_encoder(PRESETS["cpu"]).eval()
    frames = torch.rand(2, 3, 3, 64, 64, requires_grad=True)
    tokens = patch_features(encoder, frames, 8)
    assert tokens.shape == (2, 3, 64, slot_dim_seen(dataclasses.replace(PRESETS["cpu"], tokens="patches")))
    assert not tokens.requires_grad                       # frozen: nothing flows back into the encoder
    fmap = encoder.cnn.convs(frames[0, 1:2].detach() - encoder.pixel_mean[:, None, None])  # (1, 32, 32, 32)
    by_hand = fmap[0, :, 4:8, 8:12].mean(dim=(1, 2))      # patch (row 1, column 2) of 8 x 8: 4 x 4 cells
    torch.testing.assert_close(tokens[0, 1, 1 * 8 + 2], by_hand)
    whole = patch_features(encoder, frames, 32)           # the grid of the map itself: no pooling
    torch.testing.assert_close(whole[0, 1], fmap[0].flatten(1).T)


def test_patch_configs_are_checked():
    check_config(PATCHES)
    check_config(dataclasses.replace(PRESETS["paper"], **MODELS["dino-wm"]))   # patches of each frame, any slot mode
    for bad, match in ((dict(masked=1), "not objects"), (dict(patch_grid=17), "finer than"),
                       (dict(dataset="collide"), "Push-T"), (dict(tokens="pixels"), "slots or patches"),
                       (dict(aux="nodes"), "needs --aux concat")):
        with pytest.raises(ValueError, match=match):
            check_config(dataclasses.replace(PATCHES, **bad))


def test_model_flag_sets_the_baseline_and_refuses_a_contradicting_flag(capsys):
    from train import main
    main(["--model", "dino-wm", "--print-config"])
    printed = json.loads(capsys.readouterr().out)
    assert {k: printed[k] for k in MODELS["dino-wm"]} == MODELS["dino-wm"]
    with pytest.raises(SystemExit):
        main(["--model", "dino-wm", "--masked", "1", "--print-config"])
    assert "--model dino-wm sets --masked" in capsys.readouterr().err


def test_patch_tokens_have_places_and_small_action_embeddings():
    predictor = build_predictor(PATCHES).eval()
    assert predictor.n_slots == 16 and predictor.action_in.out_features == 10
    assert predictor.proprio_in.out_features == 10 and predictor.causal
    torch.manual_seed(0)
    slots = torch.randn(2, 3, 16, predictor.slot_dim)
    mask = torch.zeros(2, 3, 16, dtype=torch.bool)
    mask[:, 2:] = True
    actions, proprio = torch.randn(2, 3, 10), torch.randn(2, 3, 4)
    perm = torch.randperm(16)
    with torch.no_grad():
        out = predictor(slots, mask, actions, proprio, n_history=2)["slots"]
        permuted = predictor(slots[:, :, perm], mask, actions, proprio, n_history=2)["slots"]
    # slots are a set (permuting them permutes the outputs); patches are not
    assert not torch.allclose(permuted, out[:, :, perm], atol=1e-4)


def test_patch_cost_is_plain_mse_zero_at_the_goal():
    tokens = torch.tensor([[[0.0, 1.0], [2.0, 3.0]]])
    swapped = tokens[:, [1, 0]]
    proprio, goal_proprio = torch.tensor([[1.0, 1.0]]), torch.tensor([[0.0, 3.0]])
    # (0 + 1 + 4 + 9) / 4 against zeros, plus 0.5 * (1 + 4) / 2 for the proprio
    cost = goal_cost(tokens, proprio, torch.zeros(1, 2, 2), goal_proprio, 0.5, matched=False)
    torch.testing.assert_close(cost, torch.tensor([3.5 + 1.25]))
    assert goal_cost(tokens, None, tokens, None, 1.0, matched=False).item() == 0
    # a patch has a place: swapping two costs (2^2 * 4) / 4 = 4, where slot matching forgives it
    assert goal_cost(swapped, None, tokens, None, 1.0, matched=False).item() == 4.0
    assert goal_cost(swapped, None, tokens, None, 1.0).item() == 0


def test_tiny_patch_run_trains_and_plans_end_to_end(tiny_patch_run):
    root, out, _ = tiny_patch_run
    info = json.loads((out / "config.json").read_text())
    assert info["config"]["tokens"] == "patches"
    from data import load_dataset
    n = len(load_dataset(info["data"]).pixels)
    stored = load_slots(Path(info["encoder"]), PATCHES, n)
    assert stored.shape == (n, 16, 16) and np.isfinite(stored).all()
    model, data = load_world_model(out, torch.device("cpu"))
    assert isinstance(model, WorldModel)
    # the planner encodes a frame exactly as extraction stored it
    encoded = model.encode(np.array(data.pixels[:3]))
    np.testing.assert_allclose(encoded.numpy(), stored[:3], rtol=1e-5, atol=1e-5)
    results, _ = evaluate(PlanConfig(ckpt=str(out), seeds=(0,), episodes=2, samples=12, topk=3,
                                     iterations=2, gifs=0, out=str(out / "cem.json")), progress=False)
    assert len(results["seeds"]["0"]["final_block_px"]) == 2 and results["seconds_per_solve"] > 0


def test_a_slot_checkpoint_in_a_patch_run_is_refused_clearly(tiny_patch_run, tmp_path):
    _, out, slot_run = tiny_patch_run
    mixed = tmp_path / "run"
    mixed.mkdir()
    (mixed / "config.json").write_bytes((out / "config.json").read_bytes())
    (mixed / "predictor.pt").write_bytes((slot_run / "predictor.pt").read_bytes())
    with pytest.raises(ValueError, match="slot-token model where a patch-token model"):
        load_world_model(mixed, torch.device("cpu"))
    (mixed / "config.json").write_bytes((slot_run / "config.json").read_bytes())
    (mixed / "predictor.pt").write_bytes((out / "predictor.pt").read_bytes())
    with pytest.raises(ValueError, match="patch-token model where a slot-token model"):
        load_world_model(mixed, torch.device("cpu"))


def test_patches_too_large_for_the_disk_stop_before_anything_is_written(tiny_patch_run, monkeypatch):
    import files
    from train import run
    root, out, _ = tiny_patch_run
    enc_dir = Path(json.loads((out / "config.json").read_text())["encoder"])
    real = files.shutil.disk_usage
    monkeypatch.setattr(files.shutil, "disk_usage", lambda path: real(path)._replace(free=10_000))
    coarser = dataclasses.replace(PATCHES, patch_grid=2)
    with pytest.raises(OSError, match=r"the patches of [\d,]+ frames \(4 x 16 float32 numbers each\) need "
                                      r"[\d.]+ MB in .*, where 0\.01 MB are free: free some, train with "
                                      r"--live-patches, or use a coarser --patch-grid"):
        run(coarser, root / "runs" / "tiny-patches-2", progress=False, root=root, workers=1)
    assert list(enc_dir.rglob("patches-4.npy")) and not list(enc_dir.rglob("patches-2*"))


def test_live_patches_are_the_extracted_ones_and_train_without_extraction(tiny_patch_run, monkeypatch):
    import train
    from data import load_dataset
    from encoder import LivePatches
    root, out, _ = tiny_patch_run
    info = json.loads((out / "config.json").read_text())
    data = load_dataset(info["data"])
    stored = load_slots(Path(info["encoder"]), PATCHES, len(data.pixels))
    model, _ = load_world_model(out, torch.device("cpu"))
    live = LivePatches(model.encoder, data.pixels, PATCHES, "cpu")
    index = np.array([[0, 5, 10], [7, 3, 1]])
    assert live.shape == stored.shape and len(live) == len(stored)
    torch.testing.assert_close(live[index], torch.from_numpy(stored[index]), rtol=1e-5, atol=1e-5)

    # the same run, its batches encoded as they are drawn: the same losses, and nothing extracted
    monkeypatch.setattr(train, "extract_slots", lambda *a, **k: pytest.fail("extracted patches"))
    again = train.run(PATCHES, root / "runs" / "tiny-live", progress=False, root=root, live_patches=True)
    logs = [[json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()] for run in (out, again)]
    assert [r["step"] for r in logs[1]] == [r["step"] for r in logs[0]] and len(logs[0]) > 2
    for a, b in zip(*logs):  # training and validation terms
        assert b.keys() == a.keys()
        for key in a.keys() - {"stage", "step", "seconds"}:
            assert b[key] == pytest.approx(a[key], rel=1e-4), key
    coarser = dataclasses.replace(PATCHES, patch_grid=2)  # no patches-2 on disk: trains all the same
    assert (train.run(coarser, root / "runs" / "tiny-live-2", progress=False, root=root,
                      live_patches=True) / "predictor.pt").is_file()
    with pytest.raises(ValueError, match="--live-patches is for patch tokens"):
        train.run(PRESETS["tiny"], root / "runs" / "tiny-live-slots", root=root, live_patches=True)
    with pytest.raises(ValueError, match="extracts no patches: leave out --until slots"):
        train.run(PATCHES, root / "runs" / "tiny-live-until", root=root, until="slots", live_patches=True)
