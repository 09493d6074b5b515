"""CEM model-predictive control on Push-T with a trained C-JEPA (FACTS section 5).

    python plan.py --ckpt runs/pusht-cpu-m1 --seeds 0 1 2 --episodes 50 --out plan.json

The paper's protocol: for each seed, 50 (start, goal) pairs drawn from the training
split with the goal 25 env steps after the start; the env is set to the start state, the
goal is that later frame (image for the model, state for the success test; its slots
encoded at every solve from the observed frame's, ``WorldModel.encode``); the agent
has exactly 50 env steps and succeeds if any step meets the criterion. MPC: the plan is
5 blocks of 5 env actions (one world-model step each), all 25 executed before solving again.
Each rollout starts from the 1 observed frame; its context grows with predicted frames up to
the model's history (3), right-aligned in time as in training; the predicted frame's action
is never shown. CEM in z-scored action space: mean 0, std 1, 300 candidates (candidate 0 the
mean), 30 elites, 30 iterations, new std the elites' unbiased std, no clamping; the plan is the
final mean. The cost: the last planned frame's slots against the goal's after their best
matching (all S! permutations at once), plus the proprio error where the model predicts it
(its embedding, of the predictor's width, as the official code). A patch-token run (train.py
--model dino-wm) is planned the same way, its cost the plain MSE over patch tokens.

All episodes of a seed are solved as one (episodes x candidates) batch (``--sequential``: one at a
time, the same random streams, the same plans up to rounding). On a CPU, where 15,000 rollouts'
activations fall out of cache, a predictor call scores a few episodes' candidates (``--cost-batch``).
"""

import dataclasses
import io
import itertools
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from common import autocast, build_parser, check_precision, config_from_args
from files import atomic_write_bytes, atomic_write_json, check_results_path, error_line, read_json
from config import (TrainConfig, build_encoder, build_predictor, config_hash, data_config, encoder_config,
                    load_checkpoint, open_run)
from data import frames_to_tensor, load_dataset, normalize_proprio, sample_eval_pairs
from pusht import PushTEnv, SUCCESS_ANGLE, SUCCESS_DIST, wrap_angle
from encoder import pixels_to_patches, resize_frames, with_moments
from predictor import rollout


@dataclass(frozen=True)
class PlanConfig:
    """The evaluation protocol; defaults are the paper's."""
    ckpt: str = ""                # run folder of train.py, or its predictor.pt
    policy: str = "cem"           # cem | random | replay (the dataset's own actions)
    split: str = "train"          # where starts and goals are drawn (the paper: the training split)
    seeds: tuple[int, ...] = (0, 1, 2)
    episodes: int = 50
    goal_offset: int = 25         # env steps from start to goal
    budget: int = 50              # env steps per episode
    horizon: int = 5              # planned world-model steps
    receding: int = 5             # planned steps executed before solving again
    history: int = 0              # most world-model frames of context while planning (0: the model's n_history)
    samples: int = 300
    topk: int = 30
    iterations: int = 30
    init_std: float = 1.0
    proprio_weight: float = 1.0
    sequential: bool = False      # solve one episode at a time (for the speed comparison)
    cost_batch: int = 0           # most candidate rollouts per predictor call; 0: 300 on CPU, no limit on GPU
    gifs: int = 3                 # episodes of the first seed saved as GIFs
    out: str = ""                 # JSON of results (GIFs beside it); default <run>/plan-<policy>.json
    device: str = "auto"
    precision: str = "fp32"       # bf16: encoder and rollouts under common.autocast; costs in float32
    allow_unfinished: bool = False  # plan with a predictor whose training has not finished
    resume: bool = False          # keep the seeds an earlier run of this protocol and checkpoint wrote to --out
    # -- our additions, off (their defaults) in the paper's protocol; docs/additions.md
    #    (history 1 and split val above are ours too, when chosen)
    clip_actions: bool = False    # clamp CEM candidates to the box of the data's actions (raw [-1, 1]); ours
    time_align: str = "right"     # left: a rollout window starts at time position 0 (the earlier planner)
    goal_alone: bool = False      # the goal's slots from the learned means (the earlier planner), not the observation's
    noise_beta: float = 0.0       # > 0: CEM's noise coloured over the plan's env steps, power 1/f^beta (iCEM's; a probe)


# Candidate rollouts per predictor call on a CPU, where bigger calls are slower per
# candidate: their activations fall out of cache (docs/speed.md).
CPU_COST_BATCH = 300

PRESETS = {"paper": PlanConfig(), "quick": PlanConfig(seeds=(0,), episodes=10, samples=100,
                                                      iterations=10, gifs=1)}


# ---------------------------------------------------------------------------------------
# Slot matching and CEM
# ---------------------------------------------------------------------------------------
def matched_slot_cost(pred, goal):
    """Mean squared error between slot sets under their best one-to-one matching. pred (..., S, D),
    goal broadcastable to it -> (...,): the minimum over all S! permutations p of mean_{s, d}
    (pred[p(s)] - goal[s])^2, all permutations at once (exact; meant for a handful of slots)."""
    S = pred.shape[-2]
    pairwise = (pred[..., :, None, :] - goal[..., None, :, :]).pow(2).mean(-1)  # (..., S, S)
    perms = torch.tensor(list(itertools.permutations(range(S))), device=pred.device)  # (P, S)
    # cost of permutation p: sum_s pairwise[p(s), s]
    picked = pairwise[..., perms, torch.arange(S, device=pred.device)]  # (..., P, S)
    return picked.mean(-1).amin(-1)


def goal_cost(slots, proprio, goal_slots, goal_proprio, proprio_weight, matched=True):
    """The planning cost (FACTS section 5, App. G): matched slot MSE plus the weighted proprio MSE.
    slots (..., S, D) against goal_slots broadcastable to it; proprio (..., P) or None (no proprio
    term). matched=False (patch tokens, DINO-WM): token k against goal token k, plain MSE. -> (...)"""
    cost = matched_slot_cost(slots, goal_slots) if matched else (slots - goal_slots).pow(2).mean(dim=(-2, -1))
    if proprio is not None:
        cost = cost + proprio_weight * (proprio - goal_proprio).pow(2).mean(-1)
    return cost


def colored_noise(white, beta):
    """White noise (..., T, D) -> noise whose power falls as 1/f^beta along T (iCEM's), each
    series rescaled to unit std: a candidate's nearby env steps move alike (beta 0: white)."""
    T = white.shape[-2]
    freqs = torch.fft.rfftfreq(T, device=white.device)
    scale = freqs.clamp(min=freqs[1]).pow(-beta / 2)[:, None]  # the mean: the lowest frequency's power
    colored = torch.fft.irfft(torch.fft.rfft(white, dim=-2) * scale, n=T, dim=-2)
    return colored / colored.std(dim=-2, keepdim=True).clamp(min=1e-8)


def cem(cost_fn, n_problems, horizon, action_dim, generators, cfg: PlanConfig, device, bounds=None):
    """Cross-entropy method over action sequences of E independent problems at once. cost_fn:
    candidates (E, N, horizon, A) -> costs (E, N); generators: one torch.Generator a problem (its
    samples do not depend on its batch); bounds: None or (low, high), each (A,), a box candidates
    are clamped into before they are scored. Returns the final means (E, horizon, A)."""
    E, N = n_problems, cfg.samples
    mean = torch.zeros(E, horizon, action_dim, device=device)
    std = torch.full((E, horizon, action_dim), cfg.init_std, device=device)
    for _ in range(cfg.iterations):
        noise = torch.stack([torch.randn(N, horizon, action_dim, generator=g) for g in generators])
        if cfg.noise_beta:  # over the 2-d env actions in time order, as to_env_actions lays them out
            noise = colored_noise(noise.reshape(E, N, -1, 2), cfg.noise_beta).reshape(noise.shape)
        noise[:, 0] = 0.0                                           # candidate 0 is the mean
        candidates = mean[:, None] + std[:, None] * noise.to(device)  # (E, N, H, A)
        if bounds is not None:
            candidates = candidates.clamp(*bounds)
        costs = cost_fn(candidates)                                 # (E, N)
        if not torch.isfinite(costs).all():
            raise FloatingPointError("the planning cost is not finite: the model predicts NaN or inf "
                                     "(a diverged predictor, or non-finite slots)")
        elite = costs.topk(cfg.topk, dim=1, largest=False).indices  # (E, K)
        elites = torch.gather(candidates, 1, elite[:, :, None, None].expand(
            -1, -1, horizon, action_dim))                           # (E, K, H, A)
        mean, std = elites.mean(1), elites.std(1)  # unbiased, as SWM
    return mean


# ---------------------------------------------------------------------------------------
# The world model as a planner sees it
# ---------------------------------------------------------------------------------------
class WorldModel:
    """A trained encoder + predictor: encodes frames, rolls out candidate plans, scores them."""

    def __init__(self, run_cfg: TrainConfig, encoder, predictor, stats, device, precision="fp32", checkpoint=None):
        # encoder None: a subclass whose encode() does without one (diagnostics/oracle_plan.py)
        self.cfg, self.predictor = run_cfg, predictor.eval()
        self.encoder = None if encoder is None else encoder.eval()
        self.stats, self.device, self.precision = stats, device, precision
        self.checkpoint = checkpoint  # which predictor checkpoint: {"path", "step", "done", "config_hash"}
        self.action_dim = 2 * run_cfg.frameskip

    @torch.no_grad()
    def encode(self, pixels, states=None, after=None):
        """uint8 (E, H, W, 3) frames -> slots (E, S, D) (D includes the run's ``--mask-moments``), or
        a patch-token run's tokens (E, G * G, C). A frame is encoded alone, as frame 0 of a video
        (the official planner's observation). With ``after`` (E, H, W, 3), as it encodes the goal at
        each solve on a video-mode run: slot attention starts from those frames' slots, no
        transition, so slot k stays the observation's object (frame mode, ours: alone). ``states``
        (E, 7) are for models that read states (diagnostics/oracle_plan.py); this one ignores them."""
        if self.cfg.tokens == "patches":
            return pixels_to_patches(self.encoder, pixels, self.cfg, self.device, self.precision)
        start = None if after is None or self.cfg.slot_mode == "frame" else self._slots(after)["slots"].float()
        out = self._slots(pixels, start)
        return with_moments(out["slots"].float(), out["attn"], self.cfg)

    def _slots(self, pixels, start=None):
        frames = frames_to_tensor(pixels, self.device)[:, None]  # (E, 1, 3, H, W)
        with autocast(self.device, self.precision):
            out = self.encoder.encode(resize_frames(frames, self.cfg.image_size), noise=False, start=start)
        return {k: v[:, 0] for k, v in out.items()}

    def proprio(self, proprio):
        return torch.from_numpy(normalize_proprio(np.asarray(proprio), self.stats)).to(self.device)

    @torch.no_grad()
    def predict(self, slots, proprio, candidates, history, align="right"):
        """Roll candidates (E, N, H, A) out from the current slots (E, S, D) / z-scored proprio (E, P):
        the last predicted slots (E, N, S, D) and proprio (E, N, P') or None. ``history``: the most
        frames of context (0: the model's n_history). The rollout needs an action per frame: the
        predicted frame's is hidden (its query token), set to the dataset mean (0)."""
        E, N, H, A = candidates.shape
        actions = torch.cat([candidates, candidates.new_zeros(E, N, 1, A)], dim=2)  # (E, N, H+1, A)
        start = slots[:, None, None].expand(E, N, 1, *slots.shape[1:])   # (E, N, 1, S, D)
        start_proprio = proprio[:, None, None].expand(E, N, 1, proprio.shape[-1])
        with autocast(self.device, self.precision):
            out = rollout(self.predictor, start, actions, start_proprio, n_future=H,
                          history=history or self.predictor.n_history, align=align)
        return out["slots"][:, :, -1].float(), None if out["proprio"] is None else out["proprio"][:, :, -1].float()

    @torch.no_grad()
    def costs(self, slots, proprio, goal_slots, goal_proprio, candidates, history, proprio_weight, align="right"):
        """goal_cost of each candidate's rollout (predict) against the goal's, (E, N); the proprio is
        compared where the model predicts it (proprio_features)."""
        final, final_proprio = self.predict(slots, proprio, candidates, history, align)
        with autocast(self.device, self.precision):
            goal_proprio = self.predictor.proprio_features(goal_proprio)  # (E, P')
        return goal_cost(final, final_proprio, goal_slots[:, None], goal_proprio[:, None].float(), proprio_weight,
                         matched=self.cfg.tokens == "slots")

    def _action_stats(self):
        """Mean and std of one model action: frameskip env actions side by side, (2 * frameskip,)."""
        fs = self.cfg.frameskip
        return np.tile(self.stats["action_mean"], fs), np.tile(self.stats["action_std"], fs)

    def action_bounds(self):
        """(low, high), each (A,): the z-scored model actions whose env actions lie in [-1, 1], the
        data's box. The env executes any action, as SWM's (target = agent + 100 a, not clipped), so
        outside it the model scores actions never seen in training; ``--clip-actions`` keeps inside."""
        mean, std = self._action_stats()
        return tuple(torch.tensor((edge - mean) / std, dtype=torch.float32, device=self.device)
                     for edge in (-1.0, 1.0))

    def to_env_actions(self, plan):
        """z-scored plan (E, H, A) -> env actions (E, H * frameskip, 2), executed as they are."""
        mean, std = self._action_stats()
        return (plan.cpu().numpy() * std + mean).reshape(plan.shape[0], -1, 2)

    def from_env_actions(self, actions):
        """env actions (..., H * frameskip, 2) -> z-scored model actions (..., H, A), numpy:
        what the predictor was trained on (data.Windows) and what CEM searches over."""
        mean, std = self._action_stats()
        actions = np.asarray(actions)
        return (actions.reshape(*actions.shape[:-2], -1, len(mean)) - mean) / std


def load_world_model(ckpt, device, precision="fp32", allow_unfinished=False):
    """Rebuild encoder and predictor from a run folder (or its predictor.pt); an unfinished
    predictor only with ``allow_unfinished``."""
    cfg, info, run_dir, predictor_ckpt = open_run(ckpt, "pusht", "plan.py plans on Push-T")
    if not predictor_ckpt["done"]:
        message = f"{run_dir / 'predictor.pt'} is from an unfinished run (step {predictor_ckpt['step']})"
        if not allow_unfinished:
            raise ValueError(f"{message}: finish it with train.py --resume, or pass --allow-unfinished")
        print(f"warning: {message}")
    encoder_ckpt = load_checkpoint(Path(info["encoder"]) / "encoder.pt", encoder_config(cfg))
    if not encoder_ckpt["done"]:
        raise ValueError(f"{Path(info['encoder']) / 'encoder.pt'} is unfinished (step {encoder_ckpt['step']}): "
                         "finish it with train.py --resume before planning")
    data = load_dataset(info["data"], expect=data_config(cfg))
    encoder, predictor = build_encoder(cfg), build_predictor(cfg)
    encoder.load_state_dict(encoder_ckpt["model"])
    predictor.load_state_dict(predictor_ckpt["model"])
    checkpoint = {"path": str(run_dir / "predictor.pt"), "step": predictor_ckpt["step"],
                  "done": bool(predictor_ckpt["done"]), "config_hash": config_hash(cfg)}
    return WorldModel(cfg, encoder.to(device), predictor.to(device), data.stats, device, precision,
                      checkpoint), data


# ---------------------------------------------------------------------------------------
# Episodes
# ---------------------------------------------------------------------------------------
def episode_generators(seed, n_episodes, solve):
    return [torch.Generator().manual_seed(int(np.random.SeedSequence([seed, e, solve]).generate_state(1)[0]))
            for e in range(n_episodes)]


def goal_errors(state, goal_state):
    """The success test's parts, (..., 3): agent and block distances (px), wrapped angle error (deg)."""
    state, goal_state = np.asarray(state, np.float64), np.asarray(goal_state, np.float64)
    return np.stack([np.linalg.norm(state[..., 0:2] - goal_state[..., 0:2], axis=-1),
                     np.linalg.norm(state[..., 2:4] - goal_state[..., 2:4], axis=-1),
                     np.degrees(np.abs(wrap_angle(state[..., 4] - goal_state[..., 4])))], axis=-1)


def run_seed(cfg: PlanConfig, model: WorldModel, data, seed, record_frames=0):
    """Evaluate one seed. Returns (success flags (E,), seconds spent solving, number of
    solves, frames of the first ``record_frames`` episodes as (obs, goal) image pairs,
    ``goal_errors`` (E, 3) at the start and after the last step)."""
    pairs = sample_eval_pairs(data, cfg.split, cfg.episodes, seed, cfg.goal_offset)
    E = len(pairs)
    record_frames = min(record_frames, E)
    envs = [PushTEnv(data.config.render_size) for _ in range(E)]
    observations = [env.reset(options={"state": data.state[s].astype(np.float64),
                                       "goal_state": data.state[g].astype(np.float64)})
                    for env, (s, g) in zip(envs, pairs)]
    pixels = np.stack([obs["pixels"] for obs, _ in observations])
    proprio = np.stack([obs["proprio"] for obs, _ in observations])
    success = np.zeros(E, dtype=bool)  # a step must meet the goal: SWM counts steps, not the reset
    final = np.stack([info["state"] for _, info in observations])  # (E, 7), updated every step
    frames = [[(pixels[e], data.pixels[pairs[e, 1]])] for e in range(record_frames)]
    rng = np.random.default_rng(seed)
    solve_seconds, n_solves, solve = 0.0, 0, 0
    if cfg.policy == "cem":
        goal_pixels, goal_states = data.pixels[pairs[:, 1]], data.state[pairs[:, 1]]
        goal_slots = model.encode(goal_pixels, goal_states) if cfg.goal_alone else None
        goal_proprio = model.proprio(data.proprio[pairs[:, 1]])
    steps = 0
    while steps < cfg.budget:
        if cfg.policy == "random":
            actions = rng.uniform(-1, 1, (E, cfg.budget, 2))
        elif cfg.policy == "replay":
            actions = np.zeros((E, cfg.budget, 2))
            for e, (s, g) in enumerate(pairs):
                actions[e, :g - s] = data.action[s:g]
        else:
            start = time.perf_counter()
            if not cfg.goal_alone:  # the official planner encodes the goal at every solve
                goal_slots = model.encode(goal_pixels, goal_states, after=pixels)
            search = getattr(model, "solve_all", solve_all)  # a probe's own search (diagnostics/window_plan.py)
            plan = search(cfg, model, pixels, proprio, goal_slots, goal_proprio, seed, solve, final)
            solve_seconds += time.perf_counter() - start
            n_solves += 1
            actions = model.to_env_actions(plan[:, :cfg.receding])
        solve += 1
        for k in range(min(actions.shape[1], cfg.budget - steps)):
            for e, env in enumerate(envs):
                obs, _, _, _, info = env.step(actions[e, k])
                pixels[e], proprio[e] = obs["pixels"], obs["proprio"]
                success[e] |= info["is_success"]
                final[e] = info["state"]
            for e in range(record_frames):
                frames[e].append((pixels[e].copy(), data.pixels[pairs[e, 1]]))
            steps += 1
    goal = data.state[pairs[:, 1]]
    return success, solve_seconds, n_solves, frames, goal_errors(data.state[pairs[:, 0]], goal), goal_errors(final, goal)


def solve_all(cfg, model, pixels, proprio, goal_slots, goal_proprio, seed, solve, states=None):
    """One CEM solve for every episode: batched, or one episode at a time."""
    E = len(pixels)
    generators = episode_generators(seed, E, solve)
    slots, prop = model.encode(pixels, states), model.proprio(proprio)
    groups = [range(e, e + 1) for e in range(E)] if cfg.sequential else [range(E)]
    cost_batch = cfg.cost_batch or (CPU_COST_BATCH if model.device.type == "cpu" else E * cfg.samples)
    per_call = max(1, cost_batch // cfg.samples)  # episodes whose candidates share a predictor call
    plans = []
    for group in groups:
        idx = list(group)

        def cost_fn(candidates):  # (len(idx), N, H, A) -> (len(idx), N)
            costs = []
            for i in range(0, len(idx), per_call):
                part = idx[i:i + per_call]
                costs.append(model.costs(slots[part], prop[part], goal_slots[part], goal_proprio[part],
                                         candidates[i:i + per_call], cfg.history, cfg.proprio_weight,
                                         cfg.time_align))
            return torch.cat(costs)
        plans.append(cem(cost_fn, len(idx), cfg.horizon, model.action_dim,
                         [generators[i] for i in idx], cfg, model.device,
                         model.action_bounds() if cfg.clip_actions else None))
    return torch.cat(plans)


def save_gif(frames, path, scale=3):
    """Side-by-side (observation | goal) frames as an animated GIF, written atomically."""
    images = [Image.fromarray(np.concatenate([obs, np.full_like(obs[:, :2], 255), goal], axis=1))
              for obs, goal in frames]
    images = [im.resize((im.width * scale, im.height * scale), Image.NEAREST) for im in images]
    buffer = io.BytesIO()
    images[0].save(buffer, format="GIF", save_all=True, append_images=images[1:], duration=100,
                   loop=0)
    atomic_write_bytes(path, buffer.getvalue())


def evaluate(cfg: PlanConfig, progress=True):
    if not cfg.ckpt:
        raise ValueError("--ckpt is required: a run folder of train.py or its predictor.pt")
    check_protocol(cfg)
    try:
        device = torch.device(("cuda" if torch.cuda.is_available() else "cpu")
                              if cfg.device == "auto" else cfg.device)
    except RuntimeError as err:
        raise ValueError(f"--device {cfg.device!r}: expected auto, cpu, cuda or cuda:N") from err
    run_dir = Path(cfg.ckpt) if Path(cfg.ckpt).is_dir() else Path(cfg.ckpt).parent
    out = Path(cfg.out) if cfg.out else run_dir / f"plan-{cfg.policy}.json"
    check_results_path(out, "plan.py", ("config", "seeds"))  # before any planning
    model, data = load_world_model(cfg.ckpt, device, cfg.precision, cfg.allow_unfinished)
    return evaluate_model(cfg, model, data, out, progress)


def check_protocol(cfg: PlanConfig):
    """ValueError, with the flag to mend, for a protocol the planner cannot run."""
    if cfg.policy not in ("cem", "random", "replay"):
        raise ValueError(f"policy must be cem, random or replay, got {cfg.policy!r}")
    for name in ("episodes", "goal_offset", "budget", "horizon", "iterations"):
        if getattr(cfg, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(cfg, name)}")
    if not cfg.seeds or not cfg.init_std > 0 or min(cfg.proprio_weight, cfg.cost_batch, cfg.noise_beta) < 0:
        raise ValueError(f"need at least one seed, --init-std > 0, and --proprio-weight, --cost-batch (0: automatic) "
                         f"and --noise-beta >= 0, got {list(cfg.seeds)}, {cfg.init_std}, {cfg.proprio_weight}, "
                         f"{cfg.cost_batch}, {cfg.noise_beta}")
    if not 1 <= cfg.receding <= cfg.horizon or not 2 <= cfg.topk <= cfg.samples:
        raise ValueError("need 1 <= receding <= horizon and 2 <= topk <= samples")
    if cfg.split not in ("train", "val") or cfg.time_align not in ("right", "left") or cfg.history < 0:
        raise ValueError(f"need --split train|val, --time-align right|left and --history >= 0, got {cfg.split!r}, "
                         f"{cfg.time_align!r}, {cfg.history}")
    check_precision(cfg.precision)


def protocol_of(config):
    """A results file's config less what changes no result (seeds, output, gifs); fields it predates at defaults."""
    config = {**dataclasses.asdict(PlanConfig()), **config}
    return {k: v for k, v in config.items() if k not in ("resume", "out", "seeds", "gifs")}


def finished_seeds(results, out):
    """The seeds in the results file ``out`` that an earlier run wrote with the same protocol (``protocol_of``)
    and checkpoint; {} if there is none. Each seed's episodes and random streams depend on the seed alone, so a
    kept seed is the one an uninterrupted run gives, and a run may add seeds to a file; it may not drop any."""
    if not out.is_file():
        return {}
    earlier = read_json(out)
    ours, theirs = protocol_of(results["config"]), protocol_of(earlier.get("config", {}))
    differ = [k for k in ours if ours[k] != theirs[k]] + ["checkpoint"] * (earlier.get("checkpoint") != results["checkpoint"])
    if differ:
        raise ValueError(f"{out} holds results of another protocol or checkpoint ({', '.join(differ)} differ): "
                         "--resume keeps only seeds of the same ones (drop --resume to start over, or choose another --out)")
    keep = {str(seed) for seed in results["config"]["seeds"]}
    dropped = sorted(set(earlier["seeds"]) - keep, key=int)
    if dropped:
        raise ValueError(f"{out} holds seeds {', '.join(dropped)} that --seeds leaves out, and --resume would "
                         "drop them: add them to --seeds, or choose another --out")
    kept = {seed: row for seed, row in earlier["seeds"].items() if seed in keep}
    if kept:
        print(f"[plan] --resume: keeping seeds {', '.join(kept)} from {out}")
    return kept


def evaluate_model(cfg: PlanConfig, model: WorldModel, data, out: Path, progress=True):
    """Run the protocol of ``cfg`` on every seed with a loaded model; write and return the results (and ``out``)."""
    results = {"config": json.loads(json.dumps(dataclasses.asdict(cfg))), "seeds": {},
               "checkpoint": getattr(model, "checkpoint", None)}
    if cfg.resume:
        results["seeds"] = finished_seeds(results, out)
    start = time.perf_counter()
    bar = tqdm(cfg.seeds, desc=f"plan {cfg.policy}", disable=not progress)
    for i, seed in enumerate(bar):
        if str(seed) in results["seeds"]:
            continue
        success, seconds, n_solves, frames, start_errors, errors = run_seed(cfg, model, data, seed,
                                                                            cfg.gifs if i == 0 else 0)
        # episodes whose block starts off its goal pose: they need a push, the others mostly
        # need the agent moved
        push = (start_errors[:, 1] >= SUCCESS_DIST) | (start_errors[:, 2] >= np.degrees(SUCCESS_ANGLE))
        results["seeds"][str(seed)] = {
            "success_rate": float(success.mean()), "successes": success.astype(int).tolist(),
            "solve_seconds": seconds, "solves": n_solves,  # solves per episode
            "needs_push": push.astype(int).tolist(),
            "success_needing_push": float(success[push].mean()) if push.any() else None,
            "success_block_in_place": float(success[~push].mean()) if (~push).any() else None,
            # where each episode started and ended against its goal (the success test's parts)
            "start_block_px": start_errors[:, 1].round(2).tolist(),
            "start_angle_deg": start_errors[:, 2].round(2).tolist(),
            "final_agent_px": errors[:, 0].round(2).tolist(),
            "final_block_px": errors[:, 1].round(2).tolist(),
            "final_angle_deg": errors[:, 2].round(2).tolist()}
        for e, episode in enumerate(frames):
            save_gif(episode, out.with_name(f"{out.stem}-seed{seed}-episode{e}.gif"))
        atomic_write_json(out, results)  # the seeds done so far survive an interrupted run
        agent, block, angle = np.median(errors, axis=0)
        line = (f"seed {seed}: success {100 * success.mean():.1f} % ({success[push].sum()} of {push.sum()} "
                f"episodes whose block must be pushed, {success[~push].sum()} of {(~push).sum()} whose block "
                f"starts in place), {seconds:.0f} s solving; median end: agent {agent:.0f} px, block "
                f"{block:.0f} px, angle {angle:.0f} deg from the goal")
        if progress:
            bar.write(line)
        else:
            print(line, flush=True)
    rates = [r["success_rate"] for r in results["seeds"].values()]
    solve_total = sum(r["solve_seconds"] for r in results["seeds"].values())
    # one "solve" is one CEM optimisation for one episode
    n_solves = sum(r["solves"] for r in results["seeds"].values()) * cfg.episodes
    results.update(success_mean=float(np.mean(rates)), success_std=float(np.std(rates)),
                   wall_seconds=time.perf_counter() - start, solve_seconds=solve_total,
                   seconds_per_solve=solve_total / n_solves if n_solves else 0.0)
    atomic_write_json(out, results)
    return results, out


def main(argv=None):
    parser = build_parser(PlanConfig, PRESETS, "Plan on Push-T with a trained C-JEPA.")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (a line per seed still)")
    args = parser.parse_args(argv)
    cfg = config_from_args(PlanConfig, PRESETS, args, default_preset="paper")
    try:
        results, out = evaluate(cfg, progress=not args.no_progress)
    except (ValueError, OSError, FloatingPointError) as err:
        sys.exit(f"error: {error_line(err)}")
    print(f"success {100 * results['success_mean']:.1f} +/- {100 * results['success_std']:.1f} % "
          f"over {len(results['seeds'])} seeds; wall {results['wall_seconds']:.0f} s, "
          f"{results['seconds_per_solve']:.2f} s per episode solve; wrote {out}")


if __name__ == "__main__":
    main()
