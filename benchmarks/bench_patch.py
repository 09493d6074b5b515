"""Planning time of patch tokens against object tokens: one CEM solve of each, side by side.

    python benchmarks/bench_patch.py [--size cpu|paper] [--episodes 50] [--device cuda]

The paper's efficiency claim: C-JEPA plans on 6 tokens of 128 features a frame (4 slots, the
action and proprio nodes) where DINO-WM plans on 196 DINOv2 patches of 384, over 8x faster
at comparable success (673 s against 5,763 s for 50 episodes on one L40S). This times one CEM
solve of the protocol (300 samples, 30 elites, 30 iterations, horizon 5, context growing to
3 frames) for a batch of episodes with each kind of world model, in one process on one
device, at the same predictor size (depth, heads, width, MLP):

- objects (C-JEPA): bidirectional predictor with action and proprio nodes; cost: slot MSE
  under the best matching plus the proprio term (plan.goal_cost);
- patches (DINO-WM, App. H): block-causal predictor with 10-d action and proprio embeddings
  concatenated to every token and a position embedding per patch, as ``train.py --model
  dino-wm`` builds it; cost: MSE over the patch tokens (plan.goal_cost, matched=False).

The weights are random: a solve's time does not depend on what they are. Candidates go
through the predictor ``--chunk`` rollouts at a time (the patch model's attention over
4 x 196 tokens does not fit otherwise). Prints each solve's seconds, the ratio, and the input
features per frame.
"""

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from plan import PlanConfig, cem, goal_cost  # noqa: E402
from predictor import Predictor, rollout  # noqa: E402

# (tokens, features) a frame for each kind, and the predictor, per size
SIZES = {
    "cpu": {"objects": (4, 128), "patches": (64, 32),      # 8 x 8 patches of the cpu CNN's 32 channels
            "predictor": dict(dim=64, depth=3, heads=4, dim_head=16, mlp_dim=256)},
    "paper": {"objects": (4, 128), "patches": (196, 384),  # DINOv2 ViT-S/14 at 196 px
              "predictor": dict(dim=128, depth=6, heads=16, dim_head=64, mlp_dim=2048)},
    "tiny": {"objects": (2, 8), "patches": (9, 8), "predictor": dict(dim=16, depth=1, heads=2, dim_head=8, mlp_dim=32)},
}
ACTION_DIM, PROPRIO_DIM, FRAMESKIP, HISTORY = 2, 4, 5, 3


def build(kind, size, device):
    tokens, features = SIZES[size][kind]
    patches = kind == "patches"
    return Predictor(n_slots=tokens, slot_dim=features, action_dim=ACTION_DIM * FRAMESKIP, proprio_dim=PROPRIO_DIM,
                     max_frames=16, n_history=HISTORY, causal=patches, aux="concat" if patches else "nodes",
                     aux_dim=10 if patches else None, token_pos=patches,
                     **SIZES[size]["predictor"]).to(device).eval()


def solve(model, kind, episodes, cfg, chunk, device, seed=0):
    """One CEM solve for ``episodes`` problems; returns (seconds, plans)."""
    g = torch.Generator().manual_seed(seed)
    start = torch.randn(episodes, model.n_slots, model.slot_dim, generator=g).to(device)
    goal = torch.randn(episodes, model.n_slots, model.slot_dim, generator=g).to(device)
    proprio = torch.randn(episodes, PROPRIO_DIM, generator=g).to(device)
    goal_proprio = model.proprio_features(torch.randn(episodes, PROPRIO_DIM, generator=g).to(device))

    @torch.no_grad()
    def cost_fn(candidates):                                      # (E, N, H, A) -> (E, N)
        E, N, H, A = candidates.shape
        actions = torch.cat([candidates, candidates.new_zeros(E, N, 1, A)], dim=2).flatten(0, 1)
        slots = start[:, None, None].expand(E, N, 1, *start.shape[1:]).flatten(0, 1)
        prop = proprio[:, None, None].expand(E, N, 1, PROPRIO_DIM).flatten(0, 1)
        costs = []
        for i in range(0, E * N, chunk):
            out = rollout(model, slots[i:i + chunk], actions[i:i + chunk], prop[i:i + chunk], n_future=H,
                          history=HISTORY)
            which = torch.arange(i, min(i + chunk, E * N), device=device) // N
            costs.append(goal_cost(out["slots"][:, -1], out["proprio"][:, -1], goal[which], goal_proprio[which],
                                   1.0, matched=kind == "objects"))
        return torch.cat(costs).view(E, N)

    generators = [torch.Generator().manual_seed(seed * 1000 + e) for e in range(episodes)]
    if device.type == "cuda":
        torch.cuda.synchronize()
    began = time.perf_counter()
    plans = cem(cost_fn, episodes, cfg.horizon, ACTION_DIM * FRAMESKIP, generators, cfg, device)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - began, plans


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=sorted(SIZES), default="cpu")
    parser.add_argument("--episodes", type=int, default=50)
    parser.add_argument("--samples", type=int, default=PlanConfig().samples)
    parser.add_argument("--iterations", type=int, default=PlanConfig().iterations)
    parser.add_argument("--chunk", type=int, default=3000, help="candidate rollouts per predictor call")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)
    for name in ("episodes", "samples", "iterations", "chunk"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1, got {getattr(args, name)}")
    device = torch.device(args.device)
    cfg = PlanConfig(samples=args.samples, iterations=args.iterations, topk=min(PlanConfig().topk, args.samples))
    torch.manual_seed(0)
    models = {kind: build(kind, args.size, device) for kind in ("objects", "patches")}
    warm = PlanConfig(samples=cfg.samples, topk=cfg.topk, iterations=1)
    seconds = {}
    for kind, model in models.items():
        solve(model, kind, min(args.episodes, 2), warm, args.chunk, device)   # warm-up, untimed
        seconds[kind] = solve(model, kind, args.episodes, cfg, args.chunk, device)[0]
    params = sum(p.numel() for p in models["objects"].blocks.parameters())
    print(f"device {device}, size {args.size} (transformer blocks {params / 1e6:.2f} M parameters each), "
          f"{args.episodes} episodes, {cfg.samples} samples x {cfg.iterations} iterations, horizon {cfg.horizon}")
    for kind, model in models.items():
        tokens, features = SIZES[args.size][kind]
        print(f"{kind:>8}: {tokens} x {features} = {tokens * features} input features a frame, "
              f"{seconds[kind]:.2f} s a solve ({seconds[kind] / args.episodes:.3f} s an episode)")
    ratio = seconds["patches"] / seconds["objects"]
    share = 100 * (SIZES[args.size]["objects"][0] + 2) * SIZES[args.size]["objects"][1] / (
        SIZES[args.size]["patches"][0] * SIZES[args.size]["patches"][1])
    print(f"patches / objects: {ratio:.1f}x the time; objects read {share:.2f} % of the patch features "
          "(their 2 action and proprio nodes counted)")
    return seconds


if __name__ == "__main__":
    main()
