"""Does object masking teach interactions? A direct test on the collide world's true states.

    python diagnostics/masking_test.py --render-size 16 --masked M --seed S --out runs/mtest-mM-sS

The paper argues (Theorem 1, App. J) that hiding an object's history makes the predictor
recover it from the objects that act on it. The collide world logs every collision and
re-simulates any video without any object, so that can be measured instead of argued.
This trains (or reuses) the collide ``cpu`` predictor on each object's true state in place of
slots ([1, x, y, vx, vy, colour, shape] as diagnostics/oracle_slots.py, slot k = object k,
absent objects all-zero rows) and measures on the validation videos:

1. interaction error: the predicted positions of the run's n_future frames (one call, as
   trained), split by whether the object begins a collision in the predicted window (the
   collision log), beside no motion and constant velocity (the state's own velocity);
2. counterfactual rollout: for each object X whose first contact comes after a full history,
   the history ending before that contact with X's rows set to the absent-object row (all
   zero: in true states, as in the data, an object that is not there), rolled out to the end
   of the video, against the video re-simulated without X (``collision.simulate(remove=X)``),
   on the objects whose trajectories differ between the two worlds (by 2 px or more): the
   same rollout without the intervention (what a model that ignores it scores) and no motion
   are the baselines;
3. attention against the collision log: the predictor's attention (softmax weights averaged
   over heads and layers) from object A's tokens to object B's, with A hidden (in the future
   frames; or in history frames 1.. as the object mask hides it in training), as a share of
   A's attention to the other objects in the scene (empty slots left out); for each pair of
   present objects whether they begin a collision in the predicted window (and, with A hidden
   in the history, whether they begin one in the history, which A's hidden tokens must
   recover: "history contacts"). Reported: the AUROC over all pairs of that share times the
   number of other objects (1 = uniform, so scenes of different sizes compare; 0.5: attention
   blind to who collides), and the mean share on the partners of objects that collide, beside
   the share uniform attention would give them;
4. hidden-history forecasts: object A's history hidden as in training (frames 1..), its
   forecast against the same with A visible and constant velocity from A's frame 0, for objects
   that collided in the hidden frames and those that did not (``hidden_history_errors``): does
   the model recover through the objects A touched what its hidden rows no longer show? And,
   with nothing hidden, does its forecast of an object that collided follow the object's latest
   motion or lean back to its motion before the contact? (``--hidden-only`` adds this part to an
   existing result.)

Errors are in px (the world is 512 px), means over objects and frames. Writes
RUN/masking-test.json. Every train.py flag applies to the predictor.
"""

import dataclasses
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from collision import DT, WORLD_SIZE, simulate  # noqa: E402
from common import build_parser, config_from_args, config_to_dict, setup  # noqa: E402
from files import atomic_write_json, read_json  # noqa: E402
from config import (COLLIDE_PRESETS, TrainConfig, build_predictor, data_config, data_dir,  # noqa: E402
                    load_checkpoint, open_dataset)
from oracle_slots import SPEED_SCALE, object_states  # noqa: E402
from train import train_predictor  # noqa: E402
from vqa import video_slots  # noqa: E402

STATE_DIM = 16          # features per object, zero-padded (5 + 6 colours + 3 shapes = 14 used)
MOVED_PX = 2.0          # an object's counterfactual trajectory differs from the factual one by this


def positions(states):
    """(..., K, D) true-state rows -> (..., K, 2) positions in px."""
    return states[..., 1:3] * WORLD_SIZE


def constant_velocity(state, ahead, frame_seconds):
    """(V, F, K, 2) px: each object of ``state`` (V, K, D) carried on at its own velocity for each
    of the ``ahead`` (F,) real frames, ``frame_seconds`` apart."""
    steps = np.asarray(ahead)[None, :, None, None] * frame_seconds
    return positions(state)[:, None] + state[:, None, :, 3:5] * SPEED_SCALE * steps


def contact_frames(scene, n_objects):
    """For each object, the sorted real frames at which it begins a collision."""
    frames = [[] for _ in range(n_objects)]
    for t, a, b in scene["collisions"]:
        frames[a].append(t)
        frames[b].append(t)
    return [sorted(f) for f in frames]


def collision_hits(scenes, videos, window, n_objects):
    """(V, K) bool: whether each object of ``videos`` begins a collision in real frames
    window[0] < t <= window[1]."""
    return np.array([[any(window[0] < t <= window[1] for t in frames)
                      for frames in contact_frames(scenes[v], n_objects)] for v in videos])


def add_errors(sums, guesses, truth, keep, hit):
    """Add each guess's position errors (px) against ``truth`` (V, f, K, 2) on the object frames
    ``keep`` (V, f, K) to ``sums[(who, contact)]``, split by ``hit`` (V, K) of ``collision_hits``."""
    for who, guess in guesses.items():
        error = np.linalg.norm(guess - truth, axis=-1)                                  # (V, f, K)
        for contact in (0, 1):
            chosen = keep & (hit[:, None, :] == contact)
            total = sums.setdefault((who, contact), [0.0, 0])
            total[0] += float(error[chosen].sum())
            total[1] += int(chosen.sum())


def mean_errors(sums):
    """``add_errors``' sums -> {"<who>, collision" / "<who>, no collision": mean px} and the counts."""
    return {f"{who}, {'collision' if contact else 'no collision'}": round(total / max(count, 1), 3)
            for (who, contact), (total, count) in sums.items()} | {
        "windows with a collision (object frames)": sums[("model", 1)][1],
        "windows without (object frames)": sums[("model", 0)][1]}


def interaction_errors(predictor, states, scenes, videos, cfg):
    """Mean position error (px) of the model, no motion and constant velocity over every
    window of every video in ``videos``, for objects with and without a collision beginning in
    the predicted window. states: (V, T, K, D) true states of every video."""
    fs, h, f = cfg.frameskip, cfg.n_history, cfg.n_future
    frame_seconds = scenes[0]["frame_substeps"] * DT
    sums = {}
    n_frames, chosen = states.shape[1], states[videos]   # the videos' states, indexed once
    for start in range(0, n_frames - (h + f - 1) * fs):
        real = start + fs * np.arange(h + f)   # the window's real frames
        hist = torch.from_numpy(chosen[:, real[:h]])
        with torch.no_grad():
            pred = video_slots(hist, predictor, f, h, block=f)[:, h:].numpy()    # (V, f, K, D)
        truth, last = chosen[:, real[h:]], chosen[:, real[h - 1]]
        guesses = {"model": positions(pred), "no motion": positions(last)[:, None].repeat(f, 1),
                   "constant velocity": constant_velocity(last, real[h:] - real[h - 1], frame_seconds)}
        add_errors(sums, guesses, positions(truth), truth[..., 0] > 0,
                   collision_hits(scenes, videos, (real[h - 1], real[-1]), states.shape[2]))
    return mean_errors(sums)


def blend_sums(guess, near, far, chosen):
    """(numerator, denominator) of the least-squares weight w in guess = (1 - w) near + w far
    over the points ``chosen`` (broadcast against guess's (..., 2) leading axes): summed over
    windows, their ratio is w (0: the guesses follow ``near``, 1: ``far``)."""
    chosen = np.broadcast_to(chosen, guess.shape[:-1])
    apart = (far - near)[chosen]
    return float(((guess - near)[chosen] * apart).sum()), float((apart ** 2).sum())


def hidden_history_errors(predictor, states, scenes, videos, cfg, every=2):
    """Forecasts of an object whose history is hidden as the object mask hides it in training
    (frames 1..h-1 of the window; its frame 0 and every other object stay visible): mean
    position errors (px) over windows starting every ``every`` real frames, for objects that
    begin a collision in those hidden frames ("history contact") and objects that do not,
    leaving out objects that begin one in the predicted frames. Rows: its forecast (the
    predicted frames) with its history hidden, with nothing hidden, and by constant velocity
    from its frame 0, all its own visible row tells; its hidden frames as the model fills them
    in (what masking trains; an M = 0 model was never asked for them) and by that constant
    velocity; and, for the visible forecast of an object with a history contact, the pull toward
    its frame 0: the least-squares weight w of the forecast as (1 - w) x constant velocity from
    the last history frame + w x constant velocity from frame 0 (0: the object's latest motion,
    1: its motion before the contact), beside the same weight of the true positions (damping and
    walls move it off 0) and the error of the last frame's constant velocity; and, in the videos
    with an absent object, the forecast with that object's empty row hidden in frames 1..h-1, a
    mask token with nothing real hidden, as every M > 0 training window has one, beside the
    visible forecast of the same videos.
    Whatever the hidden object's collisions changed, its own visible row no longer shows, so on
    history contacts the model's distance below constant velocity is what it recovers from the
    other objects (constant velocity ignores damping and walls, which the model may have learned)."""
    fs, h, f, K = cfg.frameskip, cfg.n_history, cfg.n_future, cfg.n_slots
    frame_seconds = scenes[0]["frame_substeps"] * DT
    sums, chosen, pull, true_pull = {}, states[videos], np.zeros(2), np.zeros(2)
    for start in range(0, states.shape[1] - (h + f - 1) * fs, every):
        real = start + fs * np.arange(h + f)
        window = torch.from_numpy(np.ascontiguousarray(chosen[:, real])).clone()    # (V, h + f, K, D)
        window[:, h:] = 0
        truth = positions(chosen[:, real])                                             # (V, h + f, K, 2)
        last = chosen[:, real[h - 1]]
        drift = constant_velocity(chosen[:, real[0]], real[1:] - real[0], frame_seconds)    # frames 1.. (V, h+f-1, K, 2)
        latest = constant_velocity(last, real[h:] - real[h - 1], frame_seconds)            # (V, f, K, 2)
        present = last[..., 0] > 0                                                       # (V, K)
        ahead = collision_hits(scenes, videos, (real[h - 1], real[-1]), K)
        touched = collision_hits(scenes, videos, (real[0], real[h - 1]), K)
        mask = torch.zeros(len(videos), h + f, K, dtype=torch.bool)
        mask[:, h:] = True
        with torch.no_grad():
            visible = positions(predictor(window, mask, None, None, n_history=predictor.n_history)["slots"].numpy())
        hidden, filled = np.zeros_like(visible[:, h:]), np.zeros_like(visible[:, 1:h])
        for a in range(K):
            if not present[:, a].any():
                continue
            mask_a = mask.clone()
            mask_a[:, 1:h, a] = True
            with torch.no_grad():
                out = positions(predictor(window, mask_a, None, None, n_history=predictor.n_history)["slots"].numpy())
            hidden[:, :, a], filled[:, :, a] = out[:, h:, a], out[:, 1:h, a]
        # as in training, a mask token in the history with nothing real hidden: the first absent
        # object's row hidden in frames 1..h-1, in the videos that have one
        spare = np.flatnonzero(~present.all(axis=1))
        mask_s = mask.clone()
        mask_s[spare[:, None], np.arange(1, h)[None, :], (~present).argmax(axis=1)[spare, None]] = True
        with torch.no_grad():
            spared = positions(predictor(window, mask_s, None, None, n_history=predictor.n_history)["slots"].numpy())
        keep = present & ~ahead                                                        # (V, K)
        in_spare = keep & np.isin(np.arange(len(videos)), spare)[:, None]
        for who, guess, frames, kept in (("forecast, hidden", hidden, slice(h, None), keep),
                                         ("forecast, visible", visible[:, h:], slice(h, None), keep),
                                         ("forecast, frame 0 velocity", drift[:, h - 1:], slice(h, None), keep),
                                         ("forecast, last frame velocity", latest, slice(h, None), keep),
                                         ("hidden frames, filled in", filled, slice(1, h), keep),
                                         ("hidden frames, frame 0 velocity", drift[:, :h - 1], slice(1, h), keep),
                                         ("forecast, an absent row hidden", spared[:, h:], slice(h, None), in_spare),
                                         ("forecast, visible, the same videos", visible[:, h:], slice(h, None),
                                          in_spare)):
            error = np.linalg.norm(guess - truth[:, frames], axis=-1).mean(axis=1)   # (V, K), mean over frames
            for contact in (0, 1):
                chosen_objects = kept & (touched == contact)
                total = sums.setdefault((who, contact), [0.0, 0])
                total[0] += float(error[chosen_objects].sum())
                total[1] += int(chosen_objects.sum())
        contacted = (keep & touched)[:, None, :]                                         # (V, 1, K)
        pull += blend_sums(visible[:, h:], latest, drift[:, h - 1:], contacted)
        true_pull += blend_sums(truth[:, h:], latest, drift[:, h - 1:], contacted)
    return {f"{who}, {'history contact' if contact else 'no history contact'}": round(total / max(count, 1), 3)
            for (who, contact), (total, count) in sums.items()} | {
        "forecast, visible, pull toward frame 0, history contact": round(float(pull[0] / max(pull[1], 1e-12)), 4),
        "truth, pull toward frame 0, history contact": round(float(true_pull[0] / max(true_pull[1], 1e-12)), 4),
        "objects with a history contact": sums[("forecast, hidden", 1)][1],
        "objects without": sums[("forecast, hidden", 0)][1]}


def counterfactual_cases(states, scenes, videos, cfg, max_cases=300):
    """The counterfactual cases of ``videos``, at most ``max_cases``: for each object X whose
    first contact comes after a full history, yields (v, x, model_frames, cf, moved): the real
    frames of the history and of every later model frame to the end of the video, the positions
    (F, K, 2) of the world re-simulated without X at the predicted ones, and which objects'
    trajectories that changes by MOVED_PX or more (K,); cases that change none are skipped."""
    fs, h = cfg.frameskip, cfg.n_history
    n_frames = states.shape[1]
    cases = 0
    for v in videos:
        scene = scenes[v]
        n_objects = len(scene["objects"])
        for x, frames in enumerate(contact_frames(scene, n_objects)):
            if not frames or cases >= max_cases:
                continue
            end = (frames[0] - 1) // fs   # the last model frame before X's first contact ...
            if end < h - 1:               # ... after a full history
                continue
            model_frames = fs * np.arange(end - h + 1, (n_frames - 1) // fs + 1)   # history, then to the end
            if len(model_frames) == h:    # the contact comes in the last frame: nothing to predict
                continue
            cf = simulate(scene, remove=x).position[model_frames[h:]]          # (F, K, 2)
            factual = positions(states[v, model_frames[h:], :n_objects])
            change = np.linalg.norm(cf - factual, axis=-1)   # (F, K); X's column is NaN: gone
            change[:, x] = 0
            moved = change.max(axis=0) >= MOVED_PX
            if moved.any():
                cases += 1
                yield v, x, model_frames, cf, moved


def counterfactual_rollouts(predictor, states, v, x, model_frames, cfg):
    """The predicted states (F, K, D) of video ``v`` from the history of ``model_frames``, with
    X removed from it (rows set to the absent-object row) and without: {"intervened", "not
    intervened"}."""
    h = cfg.n_history
    hist = torch.from_numpy(states[v, model_frames[:h]][None])
    removed = hist.clone()
    removed[..., x, :] = 0
    n_future = len(model_frames) - h
    with torch.no_grad():
        return {who: video_slots(start, predictor, n_future, h, block=cfg.n_future)[0, h:].numpy()
                for who, start in (("intervened", removed), ("not intervened", hist))}


def counterfactual_errors(predictor, states, scenes, videos, cfg, max_cases=300):
    """Mean position error (px) against the world re-simulated without X, on the objects
    whose trajectories it changes, of: the rollout with X removed from the history (the
    intervention), the same rollout without it, and no motion."""
    h = cfg.n_history
    sums = {who: [0.0, 0] for who in ("intervened", "not intervened", "no motion")}
    cases = 0
    for v, x, model_frames, cf, moved in counterfactual_cases(states, scenes, videos, cfg, max_cases):
        cases += 1
        n_objects = len(scenes[v]["objects"])
        runs = counterfactual_rollouts(predictor, states, v, x, model_frames, cfg)
        guesses = {who: positions(out[:, :n_objects]) for who, out in runs.items()}
        guesses["no motion"] = np.repeat(positions(states[v, model_frames[h - 1], :n_objects])[None],
                                         len(model_frames) - h, 0)
        for who, guess in guesses.items():
            error = np.linalg.norm(guess[:, moved] - cf[:, moved], axis=-1)
            sums[who][0] += float(error.sum())
            sums[who][1] += error.size
    return {who: round(total / max(count, 1), 3) for who, (total, count) in sums.items()} | {"cases": cases}


def attention_maps(predictor, window, mask, actions=None, proprio=None):
    """Softmax attention (B, L, L) of ``predictor`` on one forward pass, averaged over heads
    and layers; tokens are frame-major, S slot tokens a frame and then (Push-T) the action and
    proprio nodes."""
    maps = []

    def record(module, args):
        x, allowed = args
        qkv = module.to_qkv(module.norm(x))
        q, k, _ = qkv.reshape(*x.shape[:2], 3, module.heads, -1).permute(2, 0, 3, 1, 4)
        scores = (q * q.shape[-1] ** -0.5) @ k.transpose(-2, -1)          # (B, heads, L, L)
        if allowed is not None:
            scores = scores.masked_fill(~allowed, float("-inf"))
        maps.append(scores.softmax(dim=-1).mean(dim=1))
    hooks = [block.attn.register_forward_pre_hook(record) for block in predictor.blocks]
    try:
        with torch.no_grad():
            predictor(window, mask, actions, proprio, n_history=predictor.n_history)
    finally:
        for hook in hooks:
            hook.remove()
    return torch.stack(maps).mean(dim=0)


def auroc(scores, labels):
    """Area under the ROC curve of ``scores`` for boolean ``labels``: the share of (positive,
    negative) pairs the positive wins, ties counted half; from ranks (Mann-Whitney), so the
    hundreds of thousands of pairs of a 20,000-video test need no pos x neg matrix."""
    scores, labels = np.asarray(scores, float), np.asarray(labels, bool)
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if not n_pos or not n_neg:
        return float("nan")
    _, which, counts = np.unique(scores, return_inverse=True, return_counts=True)
    ranks = (np.cumsum(counts) - (counts - 1) / 2)[which]   # 1-based, tied scores share their mean rank
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def matched_auroc(scores, labels, distances, bins=10):
    """``auroc`` comparing each positive only with negatives in its own distance bin (deciles of
    ``distances`` over all pairs): what ``scores`` tell beyond how close the two are."""
    distances, labels = np.asarray(distances, float), np.asarray(labels, bool)
    scores = np.asarray(scores, float)
    if not len(distances):
        return float("nan")
    edges = np.quantile(distances, np.linspace(0, 1, bins + 1)[1:-1])
    which = np.searchsorted(edges, distances, side="right")
    masks = [which == b for b in range(bins)]
    pairs = np.array([(labels & m).sum() * (~labels & m).sum() for m in masks])   # comparisons in each bin
    if not pairs.sum():
        return float("nan")
    return float(sum(auroc(scores[m], labels[m]) * n for m, n in zip(masks, pairs) if n) / pairs.sum())


def hidden_rows(predictor, window, a, where, h, actions=None, proprio=None):
    """(V, K): the attention of token a (slot a of each frame) while hidden, summed over the
    frames of each key token k of a frame (the slots, then Push-T's action and proprio nodes) and
    averaged over a's hidden frames: the predicted frames of ``window`` (V, T, S, D; its future
    rows are ignored), or history frames 1..h-1 with ``where`` "history"."""
    V, T, S = window.shape[:3]
    mask = torch.zeros(V, T, S, dtype=torch.bool)
    mask[:, h:] = True
    queries = np.arange(h, T)
    if where == "history":
        mask[:, 1:h, a] = True
        queries = np.arange(1, h)
    att = attention_maps(predictor, window, mask, actions, proprio).numpy()              # (V, L, L)
    K = att.shape[-1] // T
    return att[:, queries * K + a].reshape(V, len(queries), T, K).sum(axis=2).mean(axis=1)


def attention_shares(predictor, window, present, a, where, h):
    """(V, S): the share of object a's attention that goes to each other present object, a
    hidden as ``hidden_rows`` says; 0 for a itself and for absent objects (present: (V, S) bool)."""
    rows = hidden_rows(predictor, window, a, where, h) * present   # (V, S): to each other object in the scene
    rows[:, a] = 0
    return rows / np.maximum(rows.sum(axis=1, keepdims=True), 1e-12)


def true_holders(states):
    """``attention_scores``' holders for true states: slot k is object k, there when present."""
    def holders(v_rows, frame):
        present = states[v_rows, frame, :, 0] > 0                                       # (V, S)
        return present, np.broadcast_to(np.arange(states.shape[2]), present.shape)
    return holders


def attention_scores(predictor, slots, holders, centres, scenes, videos, cfg, every=2):
    """Attention shares against the collision log, for A hidden in the future ("future") and in
    the history, labelled by the contacts of the predicted frames ("history") or by those of the
    history itself, which its hidden tokens must recover ("history contacts"; its proximity is
    how near B comes, in any history frame, to where A was last seen, the first frame); windows
    start every ``every`` real frames. slots: (V_all, T, S, D) the predictor's tokens;
    holders(rows, frame) -> (V, S) which slots stand for one object in that frame of ``videos``
    and (V, S) which object each of those is (``true_holders``, or masking_slots'); centres:
    (V, T, K, 2) each object's true position in ``videos``, for the proximity check (colliding
    objects are close: the AUROC of closeness alone, and closeness's and attention's AUROC within
    pairs at a like distance, ``matched_auroc``)."""
    fs, h, f, S = cfg.frameskip, cfg.n_history, cfg.n_future, cfg.n_slots
    chosen = slots[videos]   # the videos' tokens, indexed once
    parts = {  # name: (where A is hidden, contacts after model frame i up to frame j, distance from
        # A at model frame d to B at the nearest of model frames e)
        "future": ("future", (h - 1, h + f - 1), h - 1, [h - 1]),
        "history": ("history", (h - 1, h + f - 1), h - 1, [h - 1]),
        "history contacts": ("history", (0, h - 1), 0, list(range(h)))}
    pairs = {name: {"shares": [], "labels": [], "partner": [], "uniform": [], "apart": []} for name in parts}
    for start in range(0, slots.shape[1] - (h + f - 1) * fs, every):
        real = start + fs * np.arange(h + f)
        window = torch.from_numpy(np.ascontiguousarray(chosen[:, real])).clone()    # (V, h + f, S, D)
        window[:, h:] = 0
        present, obj = holders(np.arange(len(videos)), real[h - 1])
        for a in range(S):
            if not present[:, a].any():
                continue
            share_of = {where: attention_shares(predictor, window, present, a, where, h)   # once per place
                        for where in dict.fromkeys(where for where, *_ in parts.values())}
            for name, (where, (i, j), d, e) in parts.items():
                share, p = share_of[where], pairs[name]
                for n, v in enumerate(videos):
                    if not present[n, a]:
                        continue
                    hit = {b for t, x, y in scenes[v]["collisions"] if real[i] < t <= real[j]
                           for b in ((y,) if x == obj[n, a] else (x,) if y == obj[n, a] else ())}
                    others = [b for b in range(S) if b != a and present[n, b]]
                    p["shares"] += [share[n, b] * len(others) for b in others]   # 1 = uniform, any scene size
                    p["labels"] += [obj[n, b] in hit for b in others]
                    p["apart"] += [float(np.linalg.norm(centres[n, real[e], obj[n, b]] - centres[n, real[d], obj[n, a]],
                                                        axis=-1).min())
                                   for b in others]   # px, B's nearest to A
                    partners = [b for b in others if obj[n, b] in hit]
                    if partners:
                        p["partner"].append(sum(share[n, b] for b in partners))
                        p["uniform"].append(len(partners) / len(others))
    result = {}
    for name, p in pairs.items():
        shares, labels, apart, closeness = p["shares"], p["labels"], p["apart"], -np.asarray(p["apart"])
        result[name] = {"auroc": round(auroc(shares, labels), 4),
                        "closeness auroc": round(auroc(closeness, labels), 4),
                        "closeness at a like distance": round(matched_auroc(closeness, labels, apart), 4),
                        "distance-matched auroc": round(matched_auroc(shares, labels, apart), 4),
                        "pairs": len(labels),
                        "colliding pairs": int(np.sum(labels)),
                        "partner share": round(float(np.mean(p["partner"])), 4) if p["partner"] else None,
                        "uniform share": round(float(np.mean(p["uniform"])), 4) if p["uniform"] else None}
    return result


def report(result, path):
    """Print a masking-test.json's numbers, one line a part, and where it was written."""
    for part in ("interaction_px", "counterfactual_px", "hidden_history_px"):
        if part in result:
            print(part + ": " + "; ".join(f"{k} {v}" for k, v in result[part].items()))
    for part, scores in result["attention"].items():
        print(f"attention, {part}: " + "; ".join(f"{k} {v}" for k, v in scores.items()))
    print(f"wrote {path}")


def main(argv=None):
    parser = build_parser(TrainConfig, COLLIDE_PRESETS, __doc__.split("\n")[0] + " Every train.py "
                          "flag applies to the predictor; --n-slots and --slot-dim are the states'.")
    parser.add_argument("--out", required=True, help="run folder: predictor.pt, log.jsonl, masking-test.json")
    parser.add_argument("--resume", action="store_true", help="continue an interrupted training")
    parser.add_argument("--device", default="cpu", help="cpu | cuda | auto")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars (for logs)")
    parser.add_argument("--cases", type=int, default=300, help="counterfactual cases at most")
    parser.add_argument("--attention-only", action="store_true",
                        help="recompute the attention part of an existing RUN/masking-test.json, keep the rest")
    parser.add_argument("--hidden-only", action="store_true",
                        help="(re)compute the hidden-history forecasts of an existing RUN/masking-test.json, keep "
                        "the rest")
    args = parser.parse_args(argv)
    cfg = config_from_args(TrainConfig, COLLIDE_PRESETS, args, default_preset="cpu")
    folder = data_dir(".", data_config(cfg))
    if cfg.dataset != "collide":
        sys.exit("error: the masking test runs on --dataset collide (the default here)")
    if not (folder / "meta.json").is_file():
        sys.exit(f"error: no {folder}: make it first with python train.py --dataset collide --until data "
                 "and the same data flags (--episodes, --render-size, ...)")
    data = open_dataset(cfg, folder)
    states = object_states(data.scenes, STATE_DIM, progress=not args.no_progress)  # (V, T, K, D)
    cfg = dataclasses.replace(cfg, n_slots=states.shape[2], slot_dim=STATE_DIM)
    if not 0 <= cfg.masked <= cfg.n_slots:
        sys.exit(f"error: --masked must be between 0 and {cfg.n_slots} objects, got {cfg.masked}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "config.json", {"config": config_to_dict(cfg), "data": str(folder),
                                            "encoder": "none, true object states: diagnostics/masking_test.py"})
    ctx = setup(args.device, progress=not args.no_progress)
    frames = states.reshape(-1, *states.shape[2:])                         # (N, K, D), as the dataset's frames
    train_predictor(cfg, data, frames, out, redo=False, resume=args.resume, ctx=ctx)
    predictor = build_predictor(cfg)
    predictor.load_state_dict(load_checkpoint(out / "predictor.pt", config_to_dict(cfg))["model"])
    predictor.eval()
    videos = data.episodes("val")
    if args.attention_only and args.hidden_only:
        sys.exit("error: pass at most one of --attention-only and --hidden-only")
    result = read_json(out / "masking-test.json") if args.attention_only or args.hidden_only else {
        "config": config_to_dict(cfg), "masked": cfg.masked, "seed": cfg.seed,
        "interaction_px": interaction_errors(predictor, states, data.scenes, videos, cfg),
        "counterfactual_px": counterfactual_errors(predictor, states, data.scenes, videos, cfg, args.cases)}
    if not args.hidden_only:
        result["attention"] = attention_scores(predictor, states, true_holders(states[videos]),
                                               positions(states[videos]), data.scenes, videos, cfg)
    if not args.attention_only:
        result["hidden_history_px"] = hidden_history_errors(predictor, states, data.scenes, videos, cfg)
    atomic_write_json(out / "masking-test.json", result)
    report(result, out / "masking-test.json")


if __name__ == "__main__":
    main()
