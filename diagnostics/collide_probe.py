"""What a collide encoder's slots say about the object each one holds: probes.

    python diagnostics/collide_probe.py --run runs/collide20k-m4 [--clips 256]

The VQA head has to tell objects apart by the colour and shape its questions name. This runs
the run's encoder on validation clips in video mode (``train.validation_segments``), gives
every object in every frame (at least ``--min-pixels`` pixels) the slot that holds most of
its pixels, and fits probes from that slot's vector to the object's colour and shape
(softmax regression, and a one-hidden-layer MLP beside it) and to its centre (least
squares), on the objects of the first half of the clips, scored on the second half. Objects whose slot also holds most of another object's pixels
are scored apart: one slot cannot say two colours. The majority class of the fitting half
is the floor of each accuracy.
"""

import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from collision import COLORS, SHAPES  # noqa: E402
from slot_sharing import clip_parser, collide_encoder  # noqa: E402
from encoder import validation_segments  # noqa: E402

MLP_WIDTH = 256


def object_rows(truth, seg, slots, objects, min_pixels):
    """One frame: truth, seg (H, W) ids (0 = background in truth); slots (S, D); objects: the
    scene's object dicts (object k + 1 of truth is objects[k]). Returns a list of
    (slot vector, colour index, shape index, centre x, centre y in [0, 1], shared?)."""
    owner = {}
    for k in np.unique(truth):
        if k and (truth == k).sum() >= min_pixels:
            owner[int(k)] = int(np.bincount(seg[truth == k]).argmax())
    counts = np.bincount(list(owner.values()), minlength=len(slots))
    colours, H = list(COLORS), truth.shape[0]
    rows = []
    for k, s in owner.items():
        ys, xs = np.nonzero(truth == k)
        obj = objects[k - 1]
        rows.append((slots[s], colours.index(obj["color"]), SHAPES.index(obj["shape"]),
                     xs.mean() / H, ys.mean() / H, counts[s] > 1))
    return rows


def fit_classifier(x, y, n_classes, hidden=0, steps=300, weight_decay=1e-3, seed=0):
    """Softmax regression (hidden = 0) or one ReLU layer of ``hidden`` units, fitted by L-BFGS;
    returns a function from features to predicted classes."""
    torch.manual_seed(seed)
    model = (torch.nn.Linear(x.shape[1], n_classes) if not hidden else
             torch.nn.Sequential(torch.nn.Linear(x.shape[1], hidden), torch.nn.ReLU(),
                                 torch.nn.Linear(hidden, n_classes)))
    weights = [p for name, p in model.named_parameters() if name.endswith("weight")]
    opt = torch.optim.LBFGS(model.parameters(), max_iter=steps, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y) + weight_decay * sum((w ** 2).sum() for w in weights)
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    return lambda z: model(z).argmax(dim=1)


def probe(rows, n_fit):
    """Scores of the probes fitted on rows[:n_fit], tested on rows[n_fit:]: a dict."""
    x = torch.tensor(np.stack([r[0] for r in rows]), dtype=torch.float32)
    mean, std = x[:n_fit].mean(0), x[:n_fit].std(0) + 1e-6
    x = torch.cat([(x - mean) / std, torch.ones(len(x), 1)], dim=1)
    shared = np.array([r[5] for r in rows])[n_fit:]
    out = {"fit objects": n_fit, "test objects": len(rows) - n_fit, "test shared": float(shared.mean())}
    for col, name, n in ((1, "colour", len(COLORS)), (2, "shape", len(SHAPES))):
        y = torch.tensor([r[col] for r in rows])
        out[name] = {"majority": float((y[n_fit:] == torch.bincount(y[:n_fit]).argmax()).float().mean())}
        for probe_name, hidden in (("linear", 0), (f"mlp {MLP_WIDTH}", MLP_WIDTH)):
            predict = fit_classifier(x[:n_fit, :-1], y[:n_fit], n, hidden)
            with torch.no_grad():
                right = (predict(x[n_fit:, :-1]) == y[n_fit:]).numpy()
            out[name][probe_name] = {"all": float(right.mean()), "own slot": float(right[~shared].mean()),
                                     "shared slot": float(right[shared].mean()) if shared.any() else None}
    xy = torch.tensor([r[3:5] for r in rows], dtype=torch.float32)
    # a little ridge, in float64: features that sum to a constant (one-hot colours) make x rank-deficient,
    # and lstsq's rank decision then rests on rounding, which failed the suite on some machines
    a = x[:n_fit].double()
    coef = torch.linalg.solve(a.T @ a + 1e-6 * n_fit * torch.eye(a.shape[1], dtype=a.dtype),
                              a.T @ xy[:n_fit].double()).float()
    err = xy[n_fit:] - x[n_fit:] @ coef
    r2 = 1 - (err ** 2).mean(0) / xy[n_fit:].var(0)
    out["centre R2"] = [float(v) for v in r2]
    return out


@torch.no_grad()
def main(argv=None):
    parser = clip_parser(__doc__, clips=256)
    args = parser.parse_args(argv)
    if args.clips < 2:
        parser.error("--clips must be at least 2: half fit the probes, half score them")
    info, cfg, data, model = collide_encoder(args.run, "this probes collide objects")
    length = data.episode_starts[1] - data.episode_starts[0]
    rows, n_fit, done = [], None, 0
    for _, out, seg, indices in validation_segments(model, data, cfg, "cpu", args.clips, args.clip_len):
        slots = out["slots"].float().numpy()  # (B, T, S, D)
        for b, index in enumerate(indices):
            if done == args.clips // 2:
                n_fit = len(rows)
            objects = data.scenes[index[0] // length]["objects"]
            for t, truth in enumerate(data.id_maps(index)):
                rows += object_rows(truth, seg[b, t], slots[b, t], objects, args.min_pixels)
            done += 1
    if not n_fit or n_fit == len(rows):
        sys.exit(f"error: {done} validation clips gave {len(rows)} objects, {n_fit or 0} of them in the "
                 "first half: too few to fit probes on one half and score them on the other")
    scores = probe(rows, n_fit)
    print(f"{info['encoder']}: {args.clips} validation clips of {args.clip_len} frames; probes fitted on "
          f"{scores['fit objects']} objects, scored on {scores['test objects']} "
          f"({scores['test shared']:.1%} in a slot shared with another object)")
    for name in ("colour", "shape"):
        for probe_name, s in scores[name].items():
            if probe_name != "majority":
                shared = "-" if s["shared slot"] is None else f"{s['shared slot']:.1%}"
                print(f"  {name}, {probe_name}: {s['all']:.1%} (own slot {s['own slot']:.1%}, "
                      f"shared slot {shared})")
        print(f"  {name}, majority class of the fitting half: {scores[name]['majority']:.1%}")
    print(f"  centre x, y: R^2 {scores['centre R2'][0]:.3f}, {scores['centre R2'][1]:.3f}")


if __name__ == "__main__":
    main()
