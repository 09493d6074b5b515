"""What a run is: the config of the whole pipeline, its presets, and how to open a run.

``TrainConfig`` holds every setting, with the CPU preset as defaults and the paper's values as
the ``paper`` preset (FACTS section 2); every preset trains the paper's method, and our additions
are grouped at the end of the dataclass (``OURS``; docs/additions.md). Stage outputs are named
by a hash of the fields they depend on (``data_dir``, ``encoder_hash``). ``open_run`` and
``load_checkpoint`` are the loading API plan.py, vqa.py and the diagnostics use. A run, dataset
or checkpoint written before a field existed is not converted: it is refused with a message
saying to make it again (docs/training.md#older-runs).
"""

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from collide_data import CollideConfig, generate, load_collide
from common import config_from_dict, config_to_dict, short_hash
from files import load_weights, read_json
from data import PushTDataConfig, collect, load_dataset
from masking import MASK_DRAWS, MASK_KINDS
from predictor import Predictor
from masks import N_MOMENTS
from slots import SlotEncoder


# ---------------------------------------------------------------------------------------
# The config, our additions and the presets
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TrainConfig:
    """Every setting of the pipeline; defaults are the CPU preset."""
    dataset: str = "pusht"        # pusht | collide
    masked: int = 1               # M, object slots hidden per sample (0 = OC-JEPA)
    mask_kind: str = "object"     # object | token | tube | none
    seed: int = 0                 # predictor seed (data and encoder have their own)
    # -- data (data.PushTDataConfig or collide_data.CollideConfig)
    episodes: int = 1000          # Push-T episodes, or collide videos
    min_steps: int = 100          # Push-T episode length
    max_steps: int = 100
    video_observed: int = 32      # collide: observed frames per video
    video_future: int = 8         # collide: held-out frames after them
    frame_substeps: int = 4       # collide: physics steps per frame
    render_size: int = 64
    val_fraction: float = 0.1     # (collide: test split the same size)
    data_seed: int = 0
    policy: str = "expert"        # Push-T collection policy: expert (expert.py, ours: the paper's data was expert;
                                  # docs/expert.md measured it) | weak (SWM's weak expert, the cpu data before those measurements)
    expert_noise: float = 0.03    # std of the scripted expert's action noise
    # -- slot encoder (slots.SlotEncoder)
    backbone: str = "cnn"         # cnn | dinov2
    dinov2_path: str = ""         # local dinov2_vits14_pretrain.pth for backbone dinov2
    image_size: int = 64          # frames are resized to this before the encoder
    n_slots: int = 4
    slot_dim: int = 128
    cnn_channels: int = 32
    cnn_fullres: bool = True      # stride-2 CNN features upsampled and joined with the pixels: slot attention at full size
    decoder: str = "attention"    # cnn: attention (slot attention's masks paint one colour per slot, ours) | broadcast;
                                  # dinov2: mlp | mixer (SlotMixer, the official VideoSAUR config's)
    decoder_channels: int = 32    # (broadcast decoder)
    decoder_size: int = 32        # the broadcast decoder reconstructs frames averaged down to this
    decoder_rgb: str = "slot"     # slot: one colour per slot | pixel: RGB per pixel (Locatello)
    slot_init: str = "query"      # query: learned queries, straight-through (BO-QSA) | noise: mu + sigma * noise
    recon_weight: float = 20.0    # pixel weight 1 + this * |pixel - background colour| (0: plain MSE)
    encoder_plain_steps: int = 0  # the last this many encoder steps train with plain MSE (recon_weight 0)
    encoder_plain_lr: float = 0.0  # those steps at this constant learning rate (0: the cosine schedule goes on)
    cnn_stride2: bool = True
    n_iters_first: int = 3
    n_iters: int = 2
    encoder_clip_len: int = 4
    encoder_steps: int = 1500
    encoder_batch: int = 8
    encoder_lr: float = 1e-3
    encoder_warmup: int = 200
    encoder_clip: float = 1.0     # gradient-norm clipping of the encoder (0: none)
    encoder_schedule: str = "cosine"  # after the warmup: cosine to 10 % | exponential: halved over the run (VideoSAUR)
    encoder_stride: int = 0       # env steps between a training clip's frames (0: frameskip)
    encoder_flip: float = 0.0     # probability that a training clip is mirrored left to right (VideoSAUR)
    similarity_weight: float = 0.0  # dinov2: weight of VideoSAUR's temporal-similarity loss (videosaur.time_similarity)
    similarity_temp: float = 0.15   # its softmax temperature
    encoder_seed: int = 0
    encoder_data: str = "all_moving"  # Push-T: the encoder trains on all_moving data (App. D.1) | predictor: on the predictor's
    tokens: str = "slots"         # slots (C-JEPA) | patches: the frozen encoder's feature map (DINO-WM, App. H)
    patch_grid: int = 8           # patches: the feature map average-pooled to patch_grid x patch_grid tokens
    # -- predictor (predictor.Predictor); frames are frameskip env steps apart
    n_history: int = 3
    n_future: int = 1
    frameskip: int = 5
    predictor_dim: int = 64       # transformer width (the paper: 128, the slot size)
    depth: int = 3
    heads: int = 4
    dim_head: int = 16
    mlp_dim: int = 256
    dropout: float = 0.1
    aux: str = "nodes"            # nodes (the paper) | concat (the DINO-WM ablation)
    causal: bool = False          # True: block-causal over time (OC-DINO-WM)
    aux_dim: int = 0              # aux concat: size of the action and proprio embeddings (0: the width; DINO-WM: 10)
    epochs: int = 10
    batch_size: int = 64
    lr: float = 5e-4              # AdamW, constant
    action_lr: float = 5e-4
    proprio_lr: float = 5e-4      # App. E (the official Push-T script: 1e-4)
    # -- bookkeeping
    val_every: int = 500
    val_batches: int = 20
    ckpt_every: int = 500
    # -- our additions: each off (its default) is the paper's method; OURS describes them and
    #    docs/additions.md has each one's measured effect
    random_history: bool = False  # each step trains on the last h of the n_history frames, h in 1..n_history
    slot_residual: bool = False   # a hidden slot = its last visible value + predicted change
    proprio_residual: bool = False  # future proprio = last observed + predicted change
    future_action: str = "query"  # visible: the future frame's action token shows its action
    proprio_space: str = "embedding"  # raw: proprio predicted and scored as the z-scored 4 numbers
    mask_moments: float = 0.0     # > 0: each slot followed by this times its mask's moments (masks.mask_moments)
    position_weight: float = 0.0  # attention decoder: + this * each slot's spread in place (masks.mask_spread)
    slot_mode: str = "video"      # the predictor's slots: video (chains of frames) | frame: each frame alone, as plan.py
    slot_norm: bool = False       # the predictor reads and writes slots centred and scaled per slot and feature
    # -- probes: not improvements; each changes one term of the paper's method to test why it
    #    behaves as it does (its default is the paper's; PROBES)
    history_weight: float = 1.0   # weight of the hidden-history term of the loss (the paper: 1:1 with the future)
    masked_draw: str = "fixed"    # uniform: each sample hides 0 .. M slots, drawn per sample (the paper: always M)


# One line each: what an addition of ours changes against the paper's method (its value there
# is the field's default, and every preset keeps it).
OURS = {
    "random_history": "trains on 1..n_history history frames, as the planner starts from one",
    "slot_residual": "predicts each hidden slot's change since it was last visible",
    "proprio_residual": "predicts the proprio's change since the last observed frame",
    "future_action": "shows the predicted frame's action to the predictor",
    "proprio_space": "predicts and scores raw z-scored proprio, not its embedding",
    "mask_moments": "appends each slot's mask moments (share, centre, spread) to the slot",
    "position_weight": "charges slot attention's masks for their spread in place",
    "slot_mode": "trains the predictor on each frame's slots alone, as the planner encodes its observation",
    "slot_norm": "centres and scales each slot entry by its training mean and spread in and out of the predictor",
}
PAPER_METHOD = {name: getattr(TrainConfig(), name) for name in OURS}
# Probes and where they are measured
PROBES = {"history_weight": "docs/masking.md#what-the-history-term-does",
          "masked_draw": "docs/masking.md#fewer-hidden-rows-at-m--4"}
PROBE_DEFAULTS = {name: getattr(TrainConfig(), name) for name in PROBES}   # the paper's term
# Additions newer than some runs, at the value those runs trained with (probes: PROBE_DEFAULTS)
ADDED_SINCE = {"slot_norm": False}


PRESETS = {
    "cpu": TrainConfig(),
    "paper": TrainConfig(
        episodes=2000, min_steps=100, max_steps=200, render_size=224, policy="expert", backbone="dinov2",
        image_size=196, slot_dim=128, n_iters=2, slot_init="noise",
        # VideoSAUR as App. D.1 trains it: 100k steps of 64 clips of 6 frames 2 env steps apart, Adam
        # at 1e-4 per 32 samples, 2k warmup then exponential decay, clipping at 0.05, the
        # temporal-similarity loss at 0.25 (temperature 0.15); where the text is silent, the official
        # code's SlotMixer decoder, left-right flips and noisy initial slots
        # (docs/faithful.md#the-paper-presets-encoder)
        encoder_clip_len=6, encoder_stride=2, encoder_steps=100_000, encoder_batch=64, encoder_lr=2e-4,
        encoder_warmup=2000, encoder_schedule="exponential", encoder_clip=0.05, similarity_weight=0.25,
        similarity_temp=0.15, decoder="mixer", encoder_flip=0.5,
        # heads of 64 as App. E says (the official code's nn.MultiheadAttention(128, 16) has heads of 8)
        predictor_dim=128, depth=6, heads=16, dim_head=64, mlp_dim=2048, epochs=30,
        batch_size=256,
        patch_grid=14,  # --model dino-wm: DINOv2's whole 14 x 14 map of patches, as the paper's DINO-WM
        val_every=2000, ckpt_every=2000),
    "tiny": TrainConfig(
        episodes=12, min_steps=30, max_steps=40, val_fraction=0.25, image_size=32, cnn_channels=16,
        decoder_channels=8, decoder_size=16,
        slot_dim=32, encoder_clip_len=2, encoder_steps=6, encoder_batch=4, encoder_warmup=2,
        predictor_dim=16, depth=1, heads=2, dim_head=8, mlp_dim=32, epochs=1, batch_size=8, val_every=4,
        val_batches=2, ckpt_every=4),
}
# The collide world (collision.py), CLEVRER's settings where they carry over (FACTS section 2): 7
# slots, M = 4 (the paper's best there), history 6, frameskip 2; 4 predicted frames cover the 8
# held-out frames. The cpu preset keeps the encoder recipe it was measured with (stride-2
# features, a broadcast decoder with per-pixel RGB, plain MSE, lr 4e-4, no clipping, noisy slot
# init; the tiny preset the same decoder), trained on the videos themselves (every object already
# moves). The predictor trains on video-mode slots: VQA reads whole observed videos, and objects
# alike in kind need the propagation to keep their slots. (policy is Push-T's: the collide
# presets keep the value their runs were made with.)
COLLIDE_PRESETS = {
    "cpu": dataclasses.replace(PRESETS["cpu"], dataset="collide", masked=4, episodes=2000, n_slots=7,
                               frameskip=2, n_history=6, n_future=4, cnn_fullres=False, decoder="broadcast",
                               decoder_rgb="pixel", recon_weight=0.0, encoder_clip_len=2, encoder_steps=4000,
                               encoder_batch=16, encoder_lr=4e-4, encoder_clip=0.0, slot_init="noise",
                               encoder_data="predictor", policy="weak"),
    "paper": dataclasses.replace(PRESETS["paper"], dataset="collide", masked=4, episodes=20000, policy="weak",
                                 video_observed=128, video_future=32, render_size=128,
                                 val_fraction=0.25, n_slots=7, frameskip=2, n_history=6, n_future=10,
                                 encoder_data="predictor",
                                 # CLEVRER's VideoSAUR (App. D.1): batch 32 (so lr 1e-4), weight 0.3
                                 encoder_batch=32, encoder_lr=1e-4, similarity_weight=0.3),
    "tiny": dataclasses.replace(PRESETS["tiny"], dataset="collide", episodes=16, video_observed=12,
                                video_future=4, frame_substeps=10, n_slots=4, frameskip=2,
                                cnn_fullres=False, decoder="broadcast",
                                n_history=2, n_future=2, encoder_data="predictor", policy="weak"),
}
DATASETS = {"pusht": PRESETS, "collide": COLLIDE_PRESETS}

# The models of the paper's Push-T table, each as the fields it sets over a preset
# (train.py --model): C-JEPA is the presets themselves.
MODELS = {
    "c-jepa": {},
    "oc-jepa": {"masked": 0},
    "oc-dino-wm": {"masked": 0, "causal": True, "aux": "concat"},
    "dino-wm": {"tokens": "patches", "masked": 0, "causal": True, "aux": "concat", "aux_dim": 10},
}
STAGES = ("data", "encoder", "slots", "predictor")


# Counts that must be at least 1, and rates that must be positive, checked before any stage runs.
AT_LEAST_ONE = ("episodes", "min_steps", "max_steps", "render_size", "image_size", "n_slots", "slot_dim", "cnn_channels",
                "n_iters_first", "n_iters", "encoder_clip_len", "encoder_steps", "encoder_batch", "n_history", "n_future",
                "frameskip", "predictor_dim", "depth", "heads", "dim_head", "mlp_dim", "epochs", "batch_size",
                "val_every", "val_batches", "ckpt_every", "video_observed", "video_future", "frame_substeps")
POSITIVE = ("lr", "action_lr", "proprio_lr", "encoder_lr")


def check_config(cfg: TrainConfig):
    """Raise ValueError, naming the flag, for a config no stage can run."""
    for name in AT_LEAST_ONE:
        if getattr(cfg, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(cfg, name)}")
    for name in POSITIVE:
        if not getattr(cfg, name) > 0:
            raise ValueError(f"--{name.replace('_', '-')} must be positive, got {getattr(cfg, name)}")
    if not 0 < cfg.val_fraction < 1 or not 0 <= cfg.dropout < 1 or cfg.encoder_warmup < 0 or cfg.encoder_clip < 0:
        raise ValueError(f"need 0 < --val-fraction < 1, 0 <= --dropout < 1, --encoder-warmup >= 0 and "
                         f"--encoder-clip >= 0, got {cfg.val_fraction}, {cfg.dropout}, {cfg.encoder_warmup}, "
                         f"{cfg.encoder_clip}")
    if cfg.encoder_stride < 0 or not 0 <= cfg.encoder_flip <= 1 or not cfg.similarity_temp > 0:
        raise ValueError(f"need --encoder-stride >= 0, 0 <= --encoder-flip <= 1 and --similarity-temp > 0, got "
                         f"{cfg.encoder_stride}, {cfg.encoder_flip} and {cfg.similarity_temp}")
    decoders = {"cnn": ("attention", "broadcast"), "dinov2": ("mlp", "mixer")}.get(cfg.backbone, (cfg.decoder,))
    if cfg.decoder not in decoders:
        raise ValueError(f"--decoder must be one of {'|'.join(decoders)} with --backbone {cfg.backbone}, "
                         f"got {cfg.decoder!r}")
    if cfg.similarity_weight < 0 or (cfg.similarity_weight and (cfg.backbone != "dinov2" or cfg.encoder_clip_len < 2)):
        raise ValueError(f"--similarity-weight (>= 0, got {cfg.similarity_weight}) is VideoSAUR's loss on "
                         "DINOv2's keys from frame t to t + 1: it needs --backbone dinov2 and --encoder-clip-len >= 2")
    if cfg.dataset not in DATASETS:
        raise ValueError(f"unknown dataset {cfg.dataset!r}; available: {', '.join(DATASETS)}")
    if cfg.mask_kind not in MASK_KINDS:
        raise ValueError(f"mask kind must be one of {MASK_KINDS}, got {cfg.mask_kind!r}")
    if cfg.history_weight < 0:
        raise ValueError(f"--history-weight must be >= 0, got {cfg.history_weight}")
    if cfg.masked_draw not in MASK_DRAWS or (cfg.masked_draw != "fixed" and cfg.mask_kind != "object"):
        raise ValueError(f"--masked-draw must be one of {'|'.join(MASK_DRAWS)} (not fixed only with --mask-kind object), "
                         f"got {cfg.masked_draw!r} with --mask-kind {cfg.mask_kind}")
    if not 0 <= cfg.masked <= cfg.n_slots:
        raise ValueError(f"--masked must be between 0 and n_slots = {cfg.n_slots}, got {cfg.masked}")
    if cfg.masked and (cfg.mask_kind == "none" or (cfg.n_history < 2 and cfg.mask_kind != "tube")):
        raise ValueError(f"--masked {cfg.masked} hides nothing with --mask-kind {cfg.mask_kind} and --n-history "
                         f"{cfg.n_history} (frame 0 is never hidden): use --masked 0")
    if cfg.slot_mode not in ("frame", "video"):
        raise ValueError(f"slot mode must be frame or video, got {cfg.slot_mode!r}")
    if cfg.slot_mode == "frame" and cfg.slot_init != "query":
        raise ValueError("--slot-mode frame needs --slot-init query: with noisy initial slots, slot k "
                         "of one frame is not the same object as slot k of the next; use --slot-mode video")
    if not 0 <= cfg.encoder_plain_steps <= cfg.encoder_steps:
        raise ValueError(f"--encoder-plain-steps must be between 0 and --encoder-steps = {cfg.encoder_steps}, "
                         f"got {cfg.encoder_plain_steps}")
    if cfg.encoder_plain_steps and not (cfg.backbone == "cnn" and cfg.recon_weight):
        raise ValueError("--encoder-plain-steps switches the CNN's weighted pixel loss to plain MSE: it needs "
                         "--backbone cnn and --recon-weight > 0")
    if cfg.encoder_plain_lr < 0 or (cfg.encoder_plain_lr and not cfg.encoder_plain_steps):
        raise ValueError(f"--encoder-plain-lr sets the learning rate of the --encoder-plain-steps: it needs "
                         f"a value >= 0 and --encoder-plain-steps > 0, got {cfg.encoder_plain_lr} and "
                         f"{cfg.encoder_plain_steps}")
    if cfg.position_weight < 0 or (cfg.position_weight and not (cfg.backbone == "cnn" and cfg.decoder == "attention")):
        raise ValueError(f"--position-weight (>= 0, got {cfg.position_weight}) charges slot attention's masks "
                         f"for their spread: it needs --backbone cnn --decoder attention")
    if cfg.mask_moments < 0:
        raise ValueError(f"--mask-moments weighs each slot's mask moments: it must be >= 0, got {cfg.mask_moments}")
    for name, allowed in (("aux", ("nodes", "concat")), ("backbone", ("cnn", "dinov2")),
                          ("future_action", ("query", "visible")), ("proprio_space", ("embedding", "raw")),
                          ("encoder_data", ("all_moving", "predictor")),
                          ("encoder_schedule", ("cosine", "exponential")),
                          ("policy", ("weak", "expert"))):   # all-moving data is the encoder's alone
        if getattr(cfg, name) not in allowed:
            raise ValueError(f"--{name.replace('_', '-')} must be one of {'|'.join(allowed)}, "
                             f"got {getattr(cfg, name)!r}")
    if not cfg.expert_noise >= 0:
        raise ValueError(f"--expert-noise is a standard deviation: at least 0, got {cfg.expert_noise}")
    if cfg.tokens not in ("slots", "patches"):
        raise ValueError(f"--tokens must be slots or patches, got {cfg.tokens!r}")
    if cfg.aux_dim < 0 or cfg.patch_grid < 1:
        raise ValueError(f"need --aux-dim >= 0 and --patch-grid >= 1, got {cfg.aux_dim} and {cfg.patch_grid}")
    if cfg.aux_dim and cfg.aux != "concat":
        raise ValueError("--aux-dim sizes the action and proprio embeddings concatenated to every token: "
                         "it needs --aux concat")
    if cfg.tokens == "patches":
        if cfg.dataset != "pusht" or cfg.masked or cfg.mask_moments:   # (each frame's patches alone, any slot mode)
            raise ValueError("patch tokens are the Push-T planning baseline, not objects: they take no object "
                             "mask or mask moments (use --model dino-wm on --dataset pusht)")
        grid = feature_grid(cfg)
        if cfg.patch_grid > grid:
            raise ValueError(f"--patch-grid {cfg.patch_grid} is finer than the encoder's {grid} x {grid} feature map")
    if cfg.encoder_data == "all_moving" and cfg.dataset != "pusht":
        raise ValueError("--encoder-data all_moving is a Push-T collection mode: use --encoder-data predictor "
                         f"on {cfg.dataset}")


def describe_method(cfg: TrainConfig) -> str:
    """One line: the method ``cfg`` trains, naming every field that differs from the paper's."""
    ours = [f"{k}={getattr(cfg, k)}" for k in OURS if getattr(cfg, k) != PAPER_METHOD[k]]
    ablations = [f"{k}={getattr(cfg, k)}" for k, paper in (("mask_kind", "object"), ("aux", "nodes"),
                                                             ("aux_dim", 0), ("causal", False))
                 if getattr(cfg, k) != paper]
    name = "C-JEPA" if cfg.masked else "OC-JEPA (no masking)"
    if cfg.tokens == "patches":
        name = f"patch tokens ({cfg.patch_grid} x {cfg.patch_grid}: the DINO-WM baseline)"
    line = f"[method] {name}, M = {cfg.masked}"
    line += f"; the paper's ablations: {', '.join(ablations)}" if ablations else ""
    line += f"; our additions on: {', '.join(ours)}" if ours else "; the paper's method, none of our additions"
    probes = [f"{k}={getattr(cfg, k)}" for k, paper in PROBE_DEFAULTS.items() if getattr(cfg, k) != paper]
    line += f"; probes: {', '.join(probes)}" if probes else ""
    return line + " (--print-config shows every field)"


# ---------------------------------------------------------------------------------------
# The data and the folders stages write, named by hashes
# ---------------------------------------------------------------------------------------
def data_config(cfg: TrainConfig) -> PushTDataConfig | CollideConfig:
    if cfg.dataset == "collide":
        return CollideConfig(name=cfg.dataset, videos=cfg.episodes, n_observed=cfg.video_observed,
                             n_future=cfg.video_future, frame_substeps=cfg.frame_substeps,
                             render_size=cfg.render_size, val_fraction=cfg.val_fraction,
                             test_fraction=cfg.val_fraction, seed=cfg.data_seed)
    return PushTDataConfig(name=cfg.dataset, episodes=cfg.episodes, min_steps=cfg.min_steps,
                           max_steps=cfg.max_steps, render_size=cfg.render_size,
                           val_fraction=cfg.val_fraction, seed=cfg.data_seed, policy=cfg.policy,
                           expert_noise=cfg.expert_noise)


def encoder_data_config(cfg: TrainConfig) -> PushTDataConfig | CollideConfig:
    """The data the encoder trains on: on Push-T by default the all-moving variant of the
    predictor's data (App. D.1: every object moves randomly, so the block takes every pose)."""
    if cfg.encoder_data == "all_moving":
        return dataclasses.replace(data_config(cfg), policy="all_moving")
    return data_config(cfg)


def data_dir(root, data_cfg) -> Path:
    """The folder of a dataset, named by a hash of its config."""
    return Path(root) / "data" / f"{data_cfg.name}-{short_hash(config_to_dict(data_cfg))}"


def make_dataset(data_cfg, path, workers=0, progress=True):
    """Collect (Push-T) or generate (collide) the dataset ``data_cfg`` into ``path``."""
    make = generate if isinstance(data_cfg, CollideConfig) else collect
    return make(data_cfg, path, workers=workers, progress=progress, overwrite=True)


def open_dataset(cfg: TrainConfig, path, data_cfg=None):
    """Load the dataset of ``cfg`` (the predictor's, or ``data_cfg``) from ``path``, checking
    it was made with that config."""
    load = load_collide if cfg.dataset == "collide" else load_dataset
    return load(path, expect=data_config(cfg) if data_cfg is None else data_cfg)


ENCODER_FIELDS = ("backbone", "dinov2_path", "image_size", "n_slots", "slot_dim", "cnn_channels",
                  "cnn_fullres", "decoder", "decoder_channels", "decoder_size", "decoder_rgb", "recon_weight",
                  "position_weight", "encoder_plain_steps", "encoder_plain_lr", "slot_init",
                  "cnn_stride2", "n_iters_first", "n_iters", "encoder_clip_len", "encoder_steps",
                  "encoder_batch", "encoder_lr", "encoder_warmup", "encoder_clip", "encoder_schedule",
                  "encoder_stride", "encoder_flip", "similarity_weight", "similarity_temp", "encoder_seed",
                  "frameskip")


def encoder_config(cfg: TrainConfig) -> dict:
    """The settings the encoder stage depends on (the data's included)."""
    return {"data": config_to_dict(encoder_data_config(cfg)),
            **{name: getattr(cfg, name) for name in ENCODER_FIELDS}}


def config_hash(cfg: TrainConfig) -> str:
    """The short hash planning results record (plan.py --resume, plan_table.py compare it); a field
    of ADDED_SINCE at its value there is left out, so a run keeps the hash it had before it existed."""
    return short_hash({k: v for k, v in config_to_dict(cfg).items() if k not in ADDED_SINCE or v != ADDED_SINCE[k]})


def encoder_hash(cfg: TrainConfig) -> str:
    """The short hash naming the encoder folder of ``cfg``."""
    return short_hash(encoder_config(cfg))


# ---------------------------------------------------------------------------------------
# Opening runs
# ---------------------------------------------------------------------------------------
OLDER_RUNS = "older runs are not converted: make it again (docs/training.md#older-runs)"


def check_same_fields(stored, expected, where):
    """Refuse a stored config whose fields are not ``expected``'s: it was written by an older
    version of this code. A probe or slot_norm, added since, is filled in with its default: a
    run made before it existed trained the paper's method, which is that default."""
    stored.update({k: v for k, v in {**PROBE_DEFAULTS, **ADDED_SINCE}.items() if k in expected and k not in stored})
    missing, unknown = sorted(set(expected) - set(stored)), sorted(set(stored) - set(expected))
    if missing or unknown:
        found = ", ".join(f"{what} {names}" for what, names in (("it lacks", missing), ("it has", unknown)) if names)
        raise ValueError(f"{where} was written by an older version of this code ({found}); {OLDER_RUNS}")


def load_checkpoint(path, config=None, may_differ=()):
    """Load a checkpoint; with ``config``, fail clearly if it was made for another config
    (fields in ``may_differ`` are not compared)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    ckpt = load_weights(path)
    if not isinstance(ckpt, dict) or not {"model", "config", "step"} <= set(ckpt):
        raise ValueError(f"{path} is not a checkpoint of this project (expected keys model, "
                         "config, step)")
    if config is not None:
        check_same_fields(ckpt["config"], config, path)
        diff = sorted(k for k in config if k not in may_differ and ckpt["config"][k] != config[k])
        if "tokens" in diff:
            kind = {"slots": "slot-token", "patches": "patch-token"}
            raise ValueError(f"{path} is a {kind[ckpt['config']['tokens']]} model where a "
                             f"{kind[config['tokens']]} model was expected (train.py --tokens, --model)")
        if diff:
            raise ValueError(f"{path} was made for another config; differing fields: {diff}")
    return ckpt


def read_run(path, dataset, purpose):
    """The config of a run of train.py: a run folder or a file in it. Returns (cfg, info,
    run_dir); ``info`` is the run's config.json (its "data" and "encoder" folders). Fails
    clearly when the run is missing, older than this code, or was trained on another dataset
    than ``dataset`` (the message starts with ``purpose``)."""
    path = Path(path)
    run_dir = path.parent if path.is_file() else path
    info_path = run_dir / "config.json"
    if not info_path.is_file():
        raise FileNotFoundError(f"{info_path} is missing: expected a run folder of train.py or the "
                                "predictor.pt inside one")
    info = read_json(info_path)
    check_same_fields(info["config"], config_to_dict(TrainConfig()), info_path)
    cfg = config_from_dict(TrainConfig, info["config"])
    if cfg.dataset != dataset:
        raise ValueError(f"{purpose}; {run_dir} was trained on {cfg.dataset!r}")
    return cfg, info, run_dir


def open_run(path, dataset, purpose):
    """A finished or unfinished run of train.py with its predictor: ``read_run``'s (cfg, info,
    run_dir) and the predictor checkpoint."""
    cfg, info, run_dir = read_run(path, dataset, purpose)
    return cfg, info, run_dir, load_checkpoint(run_dir / "predictor.pt", config_to_dict(cfg))


# ---------------------------------------------------------------------------------------
# The models a config builds
# ---------------------------------------------------------------------------------------
def build_encoder(cfg: TrainConfig, random_backbone=False) -> SlotEncoder:
    """The slot encoder of ``cfg``. ``random_backbone`` lets a dinov2 one keep the ViT's random
    initialisation where no weights are given (benchmarks: a forward pass takes as long)."""
    if cfg.backbone == "dinov2" and not cfg.dinov2_path and not random_backbone:
        raise ValueError("backbone dinov2 needs the frozen ViT-S/14 weights: pass --dinov2-path "
                         "/path/to/dinov2_vits14_pretrain.pth (or use --backbone cnn)")
    return SlotEncoder(backbone=cfg.backbone, image_size=cfg.image_size, n_slots=cfg.n_slots,
                       slot_dim=cfg.slot_dim, n_iters_first=cfg.n_iters_first,
                       n_iters=cfg.n_iters, cnn_channels=cfg.cnn_channels,
                       cnn_stride2=cfg.cnn_stride2, cnn_full_res=cfg.cnn_fullres, decoder=cfg.decoder,
                       decoder_channels=cfg.decoder_channels,
                       decoder_size=cfg.decoder_size, decoder_rgb=cfg.decoder_rgb,
                       recon_weight=cfg.recon_weight, position_weight=cfg.position_weight,
                       slot_init=cfg.slot_init, similarity_weight=cfg.similarity_weight,
                       similarity_temp=cfg.similarity_temp, dinov2_weights=cfg.dinov2_path or None)


def feature_grid(cfg: TrainConfig) -> int:
    """The side of the encoder's feature map that patch tokens pool (SlotEncoder.patch_features):
    the CNN's last convolution (stride 2 when cnn_stride2), or DINOv2's 14-pixel patches."""
    if cfg.backbone == "dinov2":
        return cfg.image_size // 14
    return cfg.image_size // 2 if cfg.cnn_stride2 else cfg.image_size


def slot_dim_seen(cfg: TrainConfig) -> int:
    """The size of a token as the predictor sees it: a slot (plus its mask moments if used), or
    a patch's features (the CNN's channels, DINOv2's 384)."""
    if cfg.tokens == "patches":
        return 384 if cfg.backbone == "dinov2" else cfg.cnn_channels
    return cfg.slot_dim + (N_MOMENTS if cfg.mask_moments else 0)


def tokens_per_frame(cfg: TrainConfig) -> int:
    """Slots, or patches, of one frame."""
    return cfg.patch_grid ** 2 if cfg.tokens == "patches" else cfg.n_slots


def build_predictor(cfg: TrainConfig) -> Predictor:
    """The predictor of ``cfg``; on collide there are no action or proprio nodes."""
    controlled = cfg.dataset == "pusht"
    return Predictor(n_slots=tokens_per_frame(cfg), slot_dim=slot_dim_seen(cfg), dim=cfg.predictor_dim,
                     action_dim=2 * cfg.frameskip if controlled else 0, proprio_dim=4 if controlled else 0,
                     depth=cfg.depth, heads=cfg.heads, dim_head=cfg.dim_head, mlp_dim=cfg.mlp_dim, dropout=cfg.dropout,
                     max_frames=max(16, cfg.n_history + cfg.n_future), aux=cfg.aux, aux_dim=cfg.aux_dim or None,
                     causal=cfg.causal, n_history=cfg.n_history, proprio_space=cfg.proprio_space,
                     future_action=cfg.future_action, proprio_residual=cfg.proprio_residual,
                     slot_residual=cfg.slot_residual, slot_norm=cfg.slot_norm, token_pos=cfg.tokens == "patches")
