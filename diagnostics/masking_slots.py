"""The masking test on learned slots: does a collide run of train.py follow the collisions?

    python diagnostics/masking_slots.py --run runs/cslots-m1-s0

masking_test.py measures predictors of the collide world's true states; this measures a run of
``train.py --dataset collide`` on what it was trained on: its encoder's video-mode slots and its
predictor. Slots are not objects, so the objects are first read out of them:

- an object's slot in a frame: the slot whose slot-attention mask wins most of the object's
  pixels (the data's id maps), if it wins at least ``--min-pixels`` of them. The masks come from
  running the run's encoder again as extraction ran it, which must give the extracted slots;
- a slot's position: a linear probe (least squares) from the slot vector to its object's centre
  in world px (of 512), fitted on the objects' slots in the first ``--fit-videos`` training
  videos; any slot, real or predicted, is read the same way;
- readout: the probe on the encoder's own slots of the real frame against the object's true
  position; the floor of every error below, since forecasts are read the same way.

On the validation videos:

1. interaction error: the predicted frames of every window (one call, as trained), each
   object's position read from the slot that held it in the last history frame, split by
   whether it begins a collision in the predicted window; beside no motion (that slot read in
   the last history frame), constant velocity (from the true states) and the readout of the
   real future frames;
2. counterfactual rollout: masking_test's cases (an object X whose first contact comes after a
   full history and whose removal changes another object's path by 2 px or more, scored
   against the world re-simulated without X). The intervention: in every history frame, X's
   slot is replaced by an empty slot of the same frame (a slot that holds no object, the one
   whose mask wins the fewest object pixels): what the encoder writes where there is nothing.
   A case is skipped when X has no slot in the history, or a frame with X has no empty slot;
3. attention: masking_test's shares and AUROC, over the slots that hold exactly one object in
   the last history frame (objects that share a slot are left out).

Writes RUN/masking-test.json in masking_test.py's format (diagnostics/masking_table.py reads
both), with the readout and the skipped cases added.
"""

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from collision import DT  # noqa: E402
from common import config_to_dict  # noqa: E402
from config import build_encoder, build_predictor, encoder_config, load_checkpoint, open_dataset, open_run  # noqa: E402
from encoder import load_slots, resize_frames  # noqa: E402
from files import atomic_write_json, read_json  # noqa: E402
from masking_test import (STATE_DIM, add_errors, attention_scores, collision_hits,  # noqa: E402
                          counterfactual_cases, mean_errors, positions, report)
from oracle_slots import SPEED_SCALE, object_states  # noqa: E402
from vqa import video_slots  # noqa: E402


# ---------------------------------------------------------------------------------------
# Reading objects out of slots
# ---------------------------------------------------------------------------------------
def slot_owners(masks, ids, n_objects, min_pixels):
    """Which slot holds each object: masks (N, S, h, w), ids (N, H, W) uint8 (0 background,
    k + 1 object k; H a multiple of h). Returns owners (N, K) int64, -1 where the object has
    fewer than ``min_pixels`` pixels, and (N, S) each slot's count of object pixels."""
    N, S, h, _ = masks.shape
    scale = ids.shape[-1] // h
    seg = masks.argmax(dim=1).repeat_interleave(scale, -2).repeat_interleave(scale, -1)   # (N, H, W)
    ids = torch.as_tensor(np.asarray(ids)).long()
    won = torch.einsum("nhws,nhwk->nks", F.one_hot(seg, S).float(),
                       F.one_hot(ids, n_objects + 1)[..., 1:].float())                    # (N, K, S)
    owners = won.argmax(dim=-1)
    owners[won.sum(dim=-1) < min_pixels] = -1
    return owners.numpy(), won.sum(dim=1).numpy()


@torch.no_grad()
def read_videos(encoder, data, videos, cfg, n_objects, min_pixels):
    """The encoder in video mode on each of ``videos`` as extraction runs it (for each phase
    r < frameskip the chain of frames r, r + frameskip, ...): slots (V, T, S, D), and for every
    frame ``slot_owners`` of its slot-attention masks: owners (V, T, K), object pixels (V, T, S)."""
    length, fs = int(data.episode_starts[1] - data.episode_starts[0]), cfg.frameskip
    slots, owners, pixels = [], [], []
    for v in videos:
        begin = v * length
        chains = [np.arange(begin + r, begin + length, fs) for r in range(min(fs, length))]
        longest = max(len(c) for c in chains)
        index = np.stack([np.concatenate([c, np.full(longest - len(c), c[-1])]) for c in chains])
        frames = torch.from_numpy(np.ascontiguousarray(data.pixels[index])).permute(0, 1, 4, 2, 3).float() / 255
        out = encoder.encode(resize_frames(frames, cfg.image_size), noise=False)
        grid = int(round(out["attn"].shape[-1] ** 0.5))
        video, attn = torch.zeros(length, *out["slots"].shape[2:]), torch.zeros(length, *out["attn"].shape[2:])
        for b, chain in enumerate(chains):
            video[chain - begin] = out["slots"][b, :len(chain)]
            attn[chain - begin] = out["attn"][b, :len(chain)]
        own, px = slot_owners(attn.unflatten(-1, (grid, grid)), data.id_maps(np.arange(begin, begin + length)),
                              n_objects, min_pixels)
        slots.append(video.numpy())
        owners.append(own)
        pixels.append(px)
    return np.stack(slots), np.stack(owners), np.stack(pixels)


def fit_probe(slots, owners, states):
    """Least squares from a slot (with a bias) to its object's centre in world px, over every
    (frame, object) with a slot: slots (V, T, S, D), owners (V, T, K), states (V, T, K, >= 3).
    Returns (D + 1, 2)."""
    v, t, k = np.nonzero(owners >= 0)
    x = slots[v, t, owners[v, t, k]].astype(np.float64)
    a = np.concatenate([x, np.ones((len(x), 1))], axis=1)
    return np.linalg.lstsq(a, positions(states[v, t, k]).astype(np.float64), rcond=None)[0]


def probe(weights, slots):
    """(..., D) slots -> (..., 2) positions in world px by ``fit_probe``'s weights."""
    return np.asarray(slots, np.float64) @ weights[:-1] + weights[-1]


def pick(values, owners):
    """values (V, F, S, 2), owners (V, K) -> (V, F, K, 2): each object's slot's value (garbage
    where the owner is -1; callers leave those out)."""
    index = np.broadcast_to(np.maximum(owners, 0)[:, None, :, None], (*values.shape[:2], owners.shape[1], 2))
    return np.take_along_axis(values, index, axis=2)


# ---------------------------------------------------------------------------------------
# The three measures
# ---------------------------------------------------------------------------------------
def interaction_errors(predictor, weights, slots, owners, states, scenes, videos, cfg, every=2):
    """masking_test.interaction_errors with positions read from slots by the probe's
    ``weights``; windows start every ``every`` frames. owners: (V, T, K) of ``videos``."""
    fs, h, f = cfg.frameskip, cfg.n_history, cfg.n_future
    frame_seconds = scenes[0]["frame_substeps"] * DT
    K = owners.shape[2]
    sums = {}
    chosen, truth_states = slots[videos], states[videos]
    read = probe(weights, chosen)                                                       # (V, T, S, 2)
    for start in range(0, slots.shape[1] - (h + f - 1) * fs, every):
        real = start + fs * np.arange(h + f)
        with torch.no_grad():
            pred = video_slots(torch.from_numpy(np.ascontiguousarray(chosen[:, real[:h]])), predictor, f, h,
                               block=f)[:, h:].numpy()
        own, later = owners[:, real[h - 1]], owners[:, real[h:]]                         # (V, K), (V, f, K)
        truth, last = truth_states[:, real[h:], :K], truth_states[:, real[h - 1], :K]
        steps = (real[h:] - real[h - 1])[None, :, None, None] * frame_seconds
        guesses = {"model": pick(probe(weights, pred), own),
                   "no motion": pick(read[:, real[h - 1]][:, None], own).repeat(f, 1),
                   "constant velocity": positions(last)[:, None] + last[:, None, :, 3:5] * SPEED_SCALE * steps,
                   "readout": np.take_along_axis(read[:, real[h:]], np.maximum(later, 0)[..., None].repeat(2, -1),
                                                 axis=2)}
        keep = (truth[..., 0] > 0) & (own[:, None] >= 0) & (later >= 0)                # (V, f, K)
        add_errors(sums, guesses, positions(truth), keep, collision_hits(scenes, videos, (real[h - 1], real[-1]), K))
    return mean_errors(sums)


def empty_slot(owners, pixels):
    """The empty slot of one frame: of the slots that hold no object (owners (K,)), the one
    with the fewest object pixels (pixels (S,)); None when every slot holds one."""
    free = [s for s in range(len(pixels)) if s not in set(owners[owners >= 0].tolist())]
    return min(free, key=lambda s: pixels[s]) if free else None


def intervene(history, owners, pixels, x):
    """history (h, S, D) slots, owners (h, K), pixels (h, S): the history with X's slot replaced
    by an empty slot of the same frame in every frame where X has one; None when X has no slot
    in any history frame or a frame with X has no empty slot."""
    out = history.copy()
    if (owners[:, x] < 0).all():
        return None
    for t in range(len(history)):
        if owners[t, x] < 0:
            continue
        e = empty_slot(owners[t], pixels[t])
        if e is None:
            return None
        out[t, owners[t, x]] = history[t, e]
    return out


def counterfactual_errors(predictor, weights, slots, owners, pixels, states, scenes, videos, cfg, max_cases=300):
    """masking_test.counterfactual_errors with X's slot replaced by an empty slot (``intervene``)
    and positions read by the probe. owners, pixels: of ``videos`` (``read_videos``)."""
    row = {v: i for i, v in enumerate(videos)}
    h = cfg.n_history
    sums = {who: [0.0, 0] for who in ("intervened", "not intervened", "no motion")}
    cases, skipped = 0, 0
    for v, x, model_frames, cf, moved in counterfactual_cases(states, scenes, videos, cfg, max_cases):
        i, hist = row[v], slots[v, model_frames[:h]]
        removed = intervene(hist, owners[i, model_frames[:h]], pixels[i, model_frames[:h]], x)
        own = owners[i, model_frames[h - 1], :len(moved)]
        targets = moved & (own >= 0)
        if removed is None or not targets.any():
            skipped += 1
            continue
        cases += 1
        with torch.no_grad():
            pred = video_slots(torch.from_numpy(np.stack([removed, hist])), predictor, len(model_frames) - h, h,
                               block=cfg.n_future)[:, h:].numpy()
        read = pick(probe(weights, pred), np.stack([own, own]))                         # (2, F, K, 2)
        still = pick(probe(weights, hist[h - 1])[None, None], own[None])[0]               # (1, K, 2)
        guesses = {"intervened": read[0], "not intervened": read[1], "no motion": still.repeat(len(cf), 0)}
        for who, guess in guesses.items():
            error = np.linalg.norm(guess[:, targets] - cf[:, targets], axis=-1)
            sums[who][0] += float(error.sum())
            sums[who][1] += error.size
    return {who: round(total / max(count, 1), 3) for who, (total, count) in sums.items()} | {
        "cases": cases, "skipped cases": skipped}


def slot_holders(owners, n_slots):
    """masking_test.attention_scores' holders for learned slots: the slots that hold exactly one
    object in the frame, and that object. owners: (V, T, K) of ``read_videos``."""
    def holders(rows, frame):
        held = owners[rows, frame][:, None, :] == np.arange(n_slots)[None, :, None]      # (V, S, K)
        return held.sum(axis=2) == 1, held.argmax(axis=2)
    return holders


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", required=True, help="a collide run folder of train.py")
    parser.add_argument("--cases", type=int, default=300, help="counterfactual cases at most")
    parser.add_argument("--min-pixels", type=int, default=4, help="an object with fewer pixels has no slot")
    parser.add_argument("--fit-videos", type=int, default=200, help="training videos the position probe is fitted on")
    parser.add_argument("--attention-only", action="store_true",
                        help="recompute the attention part of an existing RUN/masking-test.json, keep the rest")
    args = parser.parse_args(argv)
    try:
        cfg, info, run_dir, ckpt = open_run(args.run, "collide", "the masking test reads a collide run")
    except (ValueError, OSError) as err:
        sys.exit(f"error: {err}")
    if cfg.slot_mode != "video":
        sys.exit(f"error: expected a run on video-mode slots (the default), {args.run} has {cfg.slot_mode}")
    enc_dir = Path(info["encoder"])
    encoder = build_encoder(cfg)
    encoder.load_state_dict(load_checkpoint(enc_dir / "encoder.pt", encoder_config(cfg))["model"])
    encoder.eval()
    predictor = build_predictor(cfg)
    predictor.load_state_dict(ckpt["model"])
    predictor.eval()
    data = open_dataset(cfg, info["data"])
    length = int(data.episode_starts[1] - data.episode_starts[0])
    slots = load_slots(enc_dir, cfg, len(data.pixels)).reshape(-1, length, cfg.n_slots, cfg.slot_dim)
    states = object_states(data.scenes, STATE_DIM)
    K = states.shape[2]
    fit, videos = data.episodes("train")[:args.fit_videos], data.episodes("val")
    again, owners, pixels = read_videos(encoder, data, videos, cfg, K, args.min_pixels)
    gap = float(np.abs(again - slots[videos]).max())
    if gap > 1e-3:
        sys.exit(f"error: the encoder run again differs from the extracted slots by {gap:.3g}: extract them "
                 "again (train.py --redo slots with the run's flags)")
    if args.attention_only:
        result = read_json(run_dir / "masking-test.json")
    else:
        fit_slots, fit_owners, _ = read_videos(encoder, data, fit, cfg, K, args.min_pixels)
        weights = fit_probe(fit_slots, fit_owners, states[fit])
        present = states[videos, ..., 0] > 0
        result = {"config": config_to_dict(cfg), "masked": cfg.masked, "seed": cfg.seed, "run": str(run_dir),
                  "slots": "learned", "min_pixels": args.min_pixels, "fit videos": len(fit),
                  "visible objects": round(float((owners >= 0).sum() / max(present.sum(), 1)), 4),
                  "interaction_px": interaction_errors(predictor, weights, slots, owners, states, data.scenes,
                                                       videos, cfg),
                  "counterfactual_px": counterfactual_errors(predictor, weights, slots, owners, pixels, states,
                                                             data.scenes, videos, cfg, args.cases)}
    result["attention"] = attention_scores(predictor, slots, slot_holders(owners, cfg.n_slots),
                                           positions(states[videos]), data.scenes, videos, cfg)
    atomic_write_json(run_dir / "masking-test.json", result)
    print(f"share of objects visible (--min-pixels or more): {result['visible objects']}")
    report(result, run_dir / "masking-test.json")


if __name__ == "__main__":
    main()
