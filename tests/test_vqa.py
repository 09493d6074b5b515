import json
from pathlib import Path

import numpy as np
import pytest
import torch

from collide_data import CollideConfig, generate
from questions import build_answer_vocab, build_vocab, load_questions
from predictor import Predictor, rollout
from vqa import PRESETS, evaluate, keep_frames, lr_factor, main, run_slots, train_vqa, video_slots
from vqa_model import Choice, Descriptive, VQAModel, build_examples, collate, score
from vqa_table import curve_rows, read_log, score_cells
from config import COLLIDE_PRESETS, build_predictor
from encoder import token_files


def tiny_model(**kw):
    args = dict(slot_dim=8, vocab_size=20, n_answers=5, dim=32, depth=2, heads=2, max_frames=4,
                max_words=10, dropout=0.0)
    return VQAModel(**{**args, **kw})


def test_score_per_option_and_per_question_by_hand():
    examples = {
        "descriptive": [Descriptive(0, q, (1,), answer=2) for q in range(3)],
        "choice": [
            *[Choice(0, 3, "explanatory", (1,), c, (2,), label) for c, label in enumerate([1, 0, 1])],
            *[Choice(1, 0, "explanatory", (1,), c, (2,), label) for c, label in enumerate([1, 0])],
            *[Choice(1, 1, "counterfactual", (1,), c, (2,), label) for c, label in enumerate([0, 0, 1, 1])],
        ],
    }
    predictions = {"descriptive": [2, 0, 2],                 # 2 of 3 right
                   "choice": [1, 0, 1,                        # explanatory q A: all 3 right
                              1, 1,                           # explanatory q B: 1 of 2 right
                              0, 0, 1, 0]}                    # counterfactual: 3 of 4 right
    s = score(predictions, examples)
    assert s["descriptive"]["question"] == pytest.approx(2 / 3)
    assert s["explanatory"]["option"] == pytest.approx(4 / 5)
    assert s["explanatory"]["question"] == pytest.approx(1 / 2)
    assert s["counterfactual"]["option"] == pytest.approx(3 / 4)
    assert s["counterfactual"]["question"] == 0.0
    assert s["predictive"]["option"] is None and s["predictive"]["questions"] == 0
    # all: questions (2 desc + 1 expl + 0 cf right) / 6; options (2 + 4 + 3) / (3 + 5 + 4)
    assert s["all"]["question"] == pytest.approx(3 / 6) and s["all"]["questions"] == 6
    assert s["all"]["option"] == pytest.approx(9 / 12) and s["all"]["options"] == 12
    with pytest.raises(ValueError, match="expected 9 choice predictions, got 8"):
        score({"descriptive": [2, 0, 2], "choice": [1] * 8}, examples)


def random_inputs(g, B=3, T=3, S=4, Lq=5, Lc=3):
    slots = torch.randn(B, T, S, 8, generator=g)
    words = lambda L: torch.randint(1, 20, (B, L), generator=g)
    return slots, words(Lq), torch.ones(B, Lq, dtype=torch.bool), words(Lc), torch.ones(B, Lc, dtype=torch.bool)


def test_permuting_slots_leaves_outputs_unchanged_unless_slots_have_positions():
    torch.manual_seed(0)
    model = tiny_model(dropout=0.1).eval()
    g = torch.Generator().manual_seed(1)
    slots, q, qm, c, cm = random_inputs(g)
    perm = torch.argsort(torch.rand(*slots.shape[:3], generator=g), dim=-1)  # (B, T, S), one per frame
    permuted = torch.gather(slots, 2, perm[..., None].expand_as(slots))
    assert not torch.equal(permuted, slots)
    a, b = model(slots, q, qm, c, cm), model(permuted, q, qm, c, cm)
    for key in ("answer_logits", "choice_logit"):
        torch.testing.assert_close(a[key], b[key], atol=1e-5, rtol=1e-5)
    # with a position per slot index (ALOE's, the paper preset) slot k is told from slot j
    torch.manual_seed(0)
    indexed = tiny_model(slot_positions=slots.shape[2]).eval()
    assert not torch.allclose(indexed(slots, q, qm, c, cm)["choice_logit"], indexed(permuted, q, qm, c, cm)["choice_logit"])
    with pytest.raises(ValueError, match="expected at most 2 slots"):
        tiny_model(slot_positions=2)(slots, q, qm, c, cm)


def test_logits_stay_float32_under_bf16_autocast():
    torch.manual_seed(0)
    model = tiny_model().eval()
    inputs = random_inputs(torch.Generator().manual_seed(1))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(*inputs)
    assert out["answer_logits"].dtype == out["choice_logit"].dtype == torch.float32
    full = model(*inputs)  # the bf16 body moves the logits only a little
    torch.testing.assert_close(out["answer_logits"], full["answer_logits"], atol=0.1, rtol=0.05)


def test_padded_words_do_not_change_outputs():
    torch.manual_seed(0)
    model = tiny_model().eval()
    g = torch.Generator().manual_seed(2)
    slots, q, qm, c, cm = random_inputs(g)
    extra = lambda x: torch.cat([x, torch.randint(1, 20, (x.shape[0], 3), generator=g)], dim=1)
    off = lambda m: torch.cat([m, torch.zeros(m.shape[0], 3, dtype=torch.bool)], dim=1)
    a = model(slots, q, qm, c, cm)
    b = model(slots, extra(q), off(qm), extra(c), off(cm))
    for key in ("answer_logits", "choice_logit"):
        torch.testing.assert_close(a[key], b[key], atol=1e-5, rtol=1e-5)
    longer = extra(q)
    shown = model(slots, longer, torch.ones_like(longer, dtype=torch.bool), c, cm)
    assert not torch.allclose(a["answer_logits"], shown["answer_logits"])  # shown, the words matter


def test_hidden_frames_do_not_change_outputs_and_official_questions_read_observed_frames():
    torch.manual_seed(0)
    model = tiny_model().eval()
    g = torch.Generator().manual_seed(3)
    slots, q, qm, c, cm = random_inputs(g)                      # 3 frames
    changed = slots.clone()
    changed[:, 2:] = torch.randn(changed[:, 2:].shape, generator=g)
    frames = torch.tensor([[0, 2]] * 3)
    a, b = model(slots, q, qm, c, cm, frames=frames), model(changed, q, qm, c, cm, frames=frames)
    torch.testing.assert_close(a["choice_logit"], b["choice_logit"], atol=1e-5, rtol=1e-5)
    assert not torch.allclose(model(slots, q, qm, c, cm)["choice_logit"], model(changed, q, qm, c, cm)["choice_logit"])
    early = slots.clone()   # a window from frame 1 on is blind to frame 0
    early[:, 0] = torch.randn(early[:, 0].shape, generator=g)
    late = torch.tensor([[1, 3]] * 3)
    torch.testing.assert_close(model(slots, q, qm, c, cm, frames=late)["choice_logit"],
                               model(early, q, qm, c, cm, frames=late)["choice_logit"], atol=1e-5, rtol=1e-5)
    # the paper's protocol: a predictive question reads the last 2 frames, the others the 2 observed
    batch = [Choice(0, 0, kind, (1, 2), 0, (3,), 1) for kind in ("explanatory", "predictive", "counterfactual")]
    inputs, _ = collate(batch, slots, "cpu", observed=2)
    assert inputs["frames"].tolist() == [[0, 2], [1, 3], [0, 2]]
    inputs, _ = collate([Descriptive(1, 0, (1, 2), 0)], slots, "cpu", observed=2)
    assert inputs["frames"].tolist() == [[0, 2]]
    assert "frames" not in collate(batch, slots, "cpu")[0]     # ours: every frame


def test_aloe_reads_25_frames_5_apart_from_a_random_start_of_its_window():
    T, observed = 160, 128   # CLEVRER: 128 observed frames rolled out to 160
    slots = torch.arange(T, dtype=torch.float)[None, :, None, None].expand(2, T, 3, 4)   # slot = frame index
    batch = [Choice(v, 0, kind, (1, 2), 0, (3,), 1) for v in (0, 1) for kind in ("explanatory", "predictive")] * 50
    g = torch.Generator().manual_seed(0)
    inputs, _ = collate(batch, slots, "cpu", observed=observed, sample=25, generator=g)
    assert inputs["slots"].shape == (200, 25, 3, 4) and "frames" not in inputs   # positions count from 0
    read = inputs["slots"][:, :, 0, 0].long()
    assert (read.diff(dim=1) == 5).all()   # 128 // 25 frames apart
    first = read[:, 0].view(100, 2)        # explanatory, predictive
    assert set(first[:, 0].tolist()) == set(range(8))         # the starts that fit in frames 0..127
    assert set(first[:, 1].tolist()) == set(range(32, 40))    # shifted to end among the last 128
    assert read.max() == 159 and read[0::2].max() <= 127
    again, _ = collate(batch, slots, "cpu", observed=observed, sample=25, generator=torch.Generator().manual_seed(0))
    assert torch.equal(again["slots"], inputs["slots"])   # the generator fixes the draws
    # scoring (no generator): one draw per question, shared by its choices, the same every time
    choices = [Choice(1, q, "counterfactual", (1,), c, (3,), 0) for q in range(40) for c in range(3)]
    starts = collate(choices, slots, "cpu", observed=observed, sample=25)[0]["slots"][:, 0, 0, 0].view(40, 3)
    assert (starts == starts[:, :1]).all() and len(set(starts[:, 0].tolist())) > 4
    assert torch.equal(starts, collate(choices, slots, "cpu", observed=observed, sample=25)[0]["slots"][:, 0, 0, 0]
                       .view(40, 3))
    ours, _ = collate(batch[:1], slots, "cpu", sample=40)     # protocol ours: the window is every frame
    assert ours["slots"][0, :, 0, 0].diff().eq(4).all() and ours["slots"][0, 0, 0, 0] < 4
    with pytest.raises(ValueError, match="cannot sample 9 frames from a window of 8"):
        collate(batch, slots, "cpu", observed=8, sample=9)


def test_model_rejects_bad_shapes():
    model = tiny_model()
    slots, q, qm, c, cm = random_inputs(torch.Generator().manual_seed(3))
    with pytest.raises(ValueError, match=r"expected slots of shape \(B, T, S, 8\), got \(3, 3, 4, 7\)"):
        model(slots[..., :7], q, qm)
    with pytest.raises(ValueError, match="T <= max_frames = 4, got T = 5"):
        model(torch.zeros(3, 5, 4, 8), q, qm)
    with pytest.raises(ValueError, match=r"bool question_mask of shape \(3, 5\)"):
        model(slots, q, qm[:, :4])
    with pytest.raises(ValueError, match="both given or both None"):
        model(slots, q, qm, c)


def write_question_file(path):
    scenes = [{"scene_index": 7, "video_filename": "video_00007", "questions": [
        {"question_id": 0, "question_type": "descriptive", "question": "What shape is the red object?",
         "answer": "cube"},
        {"question_id": 1, "question_type": "explanatory",
         "question": "Which of the following is responsible for the collision?",
         "choices": [{"choice_id": 0, "choice": "The red cube", "answer": "correct"},
                     {"choice_id": 1, "choice": "The blue cube", "answer": "wrong"},
                     {"choice_id": 2, "choice": "The red sphere", "answer": "correct"}]},
        {"question_id": 2, "question_type": "counterfactual",
         "question": "Without the red cube, what will happen?",
         "choices": [{"choice_id": 0, "choice": "The blue cube collides", "answer": "wrong"},
                     {"choice_id": 1, "choice": "The red sphere collides", "answer": "correct"}]},
    ]}]
    path.write_text(json.dumps(scenes))
    return load_questions(path)


def test_build_examples_one_per_choice_with_labels(tmp_path):
    scenes = write_question_file(tmp_path / "questions.json")
    vocab = build_vocab(scenes)
    ex = build_examples(scenes, vocab, ["cube", "sphere"])
    (d,) = ex["descriptive"]
    assert (d.video, d.question_id, d.answer) == (7, 0, 0)
    assert [vocab["what"], vocab["?"]] == [d.question[0], d.question[-1]]
    assert [(e.question_type, e.question_id, e.choice_id, e.label) for e in ex["choice"]] == [
        ("explanatory", 1, 0, 1), ("explanatory", 1, 1, 0), ("explanatory", 1, 2, 1),
        ("counterfactual", 2, 0, 0), ("counterfactual", 2, 1, 1)]
    assert ex["choice"][1].choice == tuple(vocab[w] for w in ("the", "blue", "cube"))
    assert all(e.video == 7 for e in ex["choice"])

    with pytest.raises(ValueError, match="answer 'cube' is not one of the 1 answers"):
        build_examples(scenes, vocab, ["sphere"])
    assert build_examples(scenes, vocab, ["sphere"], unknown_answers="skip")["descriptive"] == []
    assert build_examples(scenes, vocab, ["sphere"], unknown_answers="wrong")["descriptive"][0].answer == -1
    del vocab["collision"]
    with pytest.raises(ValueError, match="word 'collision' .* is not in the vocabulary"):
        build_examples(scenes, vocab, ["cube"])


def synthetic_task(n_videos, seed):
    """Videos of 2 frames x 3 slots x 8 features. Descriptive "what color is marked?": a marked
    slot (feature 0 = 1, at a random index) holds +-1 in feature 1 -> "red" / "blue". Predictive,
    two choices: "one positive" is correct iff feature 2 of every slot is > 0, "two positive" iff
    feature 3 is."""
    g = torch.Generator().manual_seed(seed)
    slots = 0.1 * torch.randn(n_videos, 2, 3, 8, generator=g)
    marked = torch.randint(3, (n_videos,), generator=g)
    color = torch.randint(2, (n_videos,), generator=g)
    signs = torch.randint(2, (n_videos, 2), generator=g)
    scenes = []
    for v in range(n_videos):
        slots[v, :, marked[v], 0] = 1.0
        slots[v, :, marked[v], 1] = 2.0 * color[v] - 1
        slots[v, :, :, 2:4] += 2.0 * signs[v] - 1
        choices = [{"choice_id": k, "choice": f"{name} positive",
                    "answer": "correct" if signs[v, k] else "wrong"} for k, name in enumerate(["one", "two"])]
        scenes.append({"scene_index": v, "video_filename": f"video_{v}", "questions": [
            {"question_id": 0, "question_type": "descriptive", "question": "What color is marked?",
             "answer": ["blue", "red"][color[v]]},
            {"question_id": 1, "question_type": "predictive", "question": "Which is positive?",
             "choices": choices}]})
    return slots, scenes


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_tiny_model_learns_a_function_of_the_slots(precision):
    slots, scenes = synthetic_task(160, seed=0)
    vocab, answers = build_vocab(scenes), build_answer_vocab(scenes)
    train = build_examples(scenes[:96], vocab, answers)
    held_out = build_examples(scenes[96:], vocab, answers)

    def fit(steps, seed):
        torch.manual_seed(seed)
        model = VQAModel(8, len(vocab), len(answers), dim=32, depth=2, heads=2, max_frames=2,
                         max_words=6, dropout=0.1)
        return train_vqa(model, slots, train, held_out, steps, batch_size=32, lr=3e-3,
                         generator=torch.Generator().manual_seed(seed), device="cpu", progress=False,
                         val_every=2, precision=precision)

    model, log = fit(60, seed=0)
    s = evaluate(model, slots, held_out, batch_size=64, device="cpu", precision=precision)
    assert s["descriptive"]["question"] >= 0.85, s        # chance 0.5
    assert s["predictive"]["option"] >= 0.85, s           # chance 0.5
    assert s["predictive"]["question"] >= 0.7, s          # chance 0.25
    assert log[-1]["val"] == s
    assert {"descriptive_loss", "choice_loss"} <= set(log[0])
    assert fit(4, seed=1)[1] == fit(4, seed=1)[1]         # fixed by the generator, dropout included
    with pytest.raises(ValueError, match="precision"):
        evaluate(model, slots, held_out, batch_size=64, device="cpu", precision="fp16")


def test_interrupted_training_resumes_to_the_same_model(tmp_path):
    slots, scenes = synthetic_task(64, seed=0)
    vocab, answers = build_vocab(scenes), build_answer_vocab(scenes)
    train, held_out = build_examples(scenes[:48], vocab, answers), build_examples(scenes[48:], vocab, answers)

    def fit(checkpoint, stop_at=None, config=None, steps=9):
        torch.manual_seed(0)
        model = VQAModel(8, len(vocab), len(answers), dim=16, depth=1, heads=2, max_frames=2,
                         max_words=6, dropout=0.2)
        calls = [0]
        forward = model.forward

        def dying_forward(*args, **kw):
            calls[0] += model.training
            if calls[0] == stop_at:
                raise KeyboardInterrupt
            return forward(*args, **kw)
        model.forward = dying_forward
        return train_vqa(model, slots, train, held_out, steps, batch_size=8, lr=3e-3,
                         generator=torch.Generator().manual_seed(0), device="cpu", progress=False,
                         val_every=4, checkpoint=checkpoint, config=config or {"run": 1})

    whole, whole_log = fit(tmp_path / "whole.pt")
    with pytest.raises(KeyboardInterrupt):   # 2 forward passes a step: dies in step 7
        fit(tmp_path / "cut.pt", stop_at=13)
    assert torch.load(tmp_path / "cut.pt", weights_only=True)["step"] == 4
    resumed, resumed_log = fit(tmp_path / "cut.pt")
    assert resumed_log == whole_log and [r["step"] for r in whole_log if "val" in r] == [4, 8, 9]
    for a, b in zip(whole.state_dict().values(), resumed.state_dict().values()):
        torch.testing.assert_close(a, b)
    with pytest.raises(ValueError, match="another config"):
        fit(tmp_path / "cut.pt", config={"run": 2})
    # a state saved by an older version, without a field the config has now, is refused
    with pytest.raises(ValueError, match=r"older version of this code \(it lacks \['precision'\]\)"):
        fit(tmp_path / "cut.pt", config={"run": 1, "precision": "fp32"})
    # a finished run of 8 steps trained on to 9 ends as the run of 9 did
    short, short_log = fit(tmp_path / "short.pt", steps=8)
    assert short_log == [r for r in whole_log if r["step"] <= 8]
    longer, longer_log = fit(tmp_path / "short.pt", steps=9)
    assert longer_log == whole_log
    for a, b in zip(whole.state_dict().values(), longer.state_dict().values()):
        torch.testing.assert_close(a, b)
    with pytest.raises(ValueError, match="has trained 9 steps, more than the 8 asked for"):
        fit(tmp_path / "short.pt", steps=8)
    # a loss that turns NaN stops the run before the step is saved: the checkpoint stays at 4
    torch.manual_seed(0)
    model = VQAModel(8, len(vocab), len(answers), dim=16, depth=1, heads=2, max_frames=2, max_words=6)
    calls = []

    def poison(module, inputs, out):  # from training step 7 on (two forward passes a step)
        calls.append(module.training)
        return out * float("nan") if sum(calls) >= 13 and module.training else out
    model.choice_head.register_forward_hook(poison)
    with pytest.raises(FloatingPointError, match="the loss is nan at step 7"):
        train_vqa(model, slots, train, held_out, 9, batch_size=8, lr=3e-3, generator=torch.Generator().manual_seed(0),
                  device="cpu", progress=False, val_every=4, checkpoint=tmp_path / "nan.pt", config={"run": 1})
    assert torch.load(tmp_path / "nan.pt", weights_only=True)["step"] == 4


def test_the_paper_head_trains_as_app_f_says_on_a_cosine_schedule(tmp_path):
    paper = PRESETS["paper"]
    assert (paper.dim, paper.depth, paper.heads, paper.mlp_dim, paper.head_mlp) == (144, 12, 8, 512, 128)
    assert paper.slot_positions
    assert (paper.frame_stride, paper.every_offset, paper.sample_frames) == (1, True, 25)   # ALOE's frames
    assert (paper.lr, paper.weight_decay, paper.schedule, paper.warmup) == (1e-3, 0.0, "cosine", 0.1)
    factor = lr_factor("cosine", 0.25, 8)   # 2 warm-up steps, then a half cosine over 6, from and to 1 %
    assert [factor(s) for s in (1, 2, 5, 8)] == pytest.approx([0.505, 1.0, 0.505, 0.01])
    assert lr_factor("constant", 0.25, 8)(5) == 1.0
    slots, scenes = synthetic_task(32, seed=0)
    vocab, answers = build_vocab(scenes), build_answer_vocab(scenes)
    train = build_examples(scenes, vocab, answers)

    def fit(steps, checkpoint):
        torch.manual_seed(0)
        model = VQAModel(8, len(vocab), len(answers), dim=16, depth=1, heads=2, max_frames=2, max_words=6,
                         mlp_dim=24, head_mlp=12)
        assert model.blocks[0].ff.net[1].out_features == 24 and model.choice_head[0].out_features == 12
        return train_vqa(model, slots, train, None, steps, batch_size=8, lr=1e-3, weight_decay=0.0,
                         generator=torch.Generator().manual_seed(0), device="cpu", progress=False, val_every=4,
                         checkpoint=checkpoint, config={"run": 1, "steps": steps}, schedule="cosine", warmup=0.25,
                         grad_clip=0.0)

    _, log = fit(8, tmp_path / "cosine.pt")
    assert [r["lr"] for r in log] == pytest.approx([1e-3 * factor(s) for s in range(1, 9)])
    with pytest.raises(ValueError, match="differing fields: \\['steps'\\]"):   # the schedule spans the steps
        fit(9, tmp_path / "cosine.pt")


def test_keep_frames_counts_back_from_the_last_frame():
    slots = torch.arange(20.0).reshape(1, 20, 1, 1)                  # a run's 16 observed + 4 predicted
    assert keep_frames(slots, 2).flatten().tolist() == list(range(1, 20, 2))     # 15 (last seen), 19
    assert keep_frames(slots, 3).flatten().tolist() == [1, 4, 7, 10, 13, 16, 19]
    assert torch.equal(keep_frames(slots, 1), slots)
    with pytest.raises(ValueError, match="frame_stride"):
        keep_frames(slots, 0)


def test_video_slots_appends_rollout_and_keeps_observed():
    torch.manual_seed(0)
    predictor = Predictor(3, 8, action_dim=0, proprio_dim=0, depth=1, heads=2, dim_head=8, mlp_dim=16,
                          max_frames=4)
    observed = torch.randn(5, 6, 3, 8, generator=torch.Generator().manual_seed(1))
    out = video_slots(observed, predictor, n_future=2, history=3, batch_size=2)
    assert out.shape == (5, 8, 3, 8)
    assert torch.equal(out[:, :6], observed)
    assert predictor.training                            # its mode is restored
    with torch.no_grad():
        expected = rollout(predictor.eval(), observed, None, None, 2, 3)["slots"]
    torch.testing.assert_close(out[:, 6:], expected)


def test_command_line_on_a_tiny_collide_dataset(tmp_path, capsys):
    cfg = CollideConfig(videos=6, n_observed=6, n_future=2, frame_substeps=10, render_size=16,
                        val_fraction=0.2, test_fraction=0.2, seed=3)
    generate(cfg, tmp_path / "collide", workers=1, progress=False)
    slots = np.random.default_rng(0).standard_normal((6, 8, 3, 4)).astype(np.float32)
    np.save(tmp_path / "slots.npy", slots)
    main(["--preset", "tiny", "--steps", "2", "--data", str(tmp_path / "collide"),
          "--slots", str(tmp_path / "slots.npy"), "--out", str(tmp_path / "vqa.json"), "--device", "cpu"])
    result = json.loads((tmp_path / "vqa.json").read_text())
    assert result["config"]["steps"] == 2 and result["config"]["dim"] == PRESETS["tiny"].dim
    assert result["steps"] == 2
    assert set(result["test"]) == {"descriptive", "explanatory", "predictive", "counterfactual", "all"}
    assert "per question" in capsys.readouterr().out
    # the training state is kept next to the result; a second run must say what to do with it
    assert (tmp_path / "vqa.pt").is_file()
    # diagnostics/vqa_table.py --curve reads the same log from either file
    rows = curve_rows(read_log(tmp_path / "vqa.json"))
    assert [r[0] for r in rows] == [2] and rows[0][3] == score_cells([result["val"]])
    losses = [np.mean([e[k] for e in result["log"] if k in e]) for k in ("choice_loss", "descriptive_loss")]
    np.testing.assert_allclose(rows[0][1:3], losses)
    assert curve_rows(read_log(tmp_path / "vqa.pt")) == rows
    args = ["--preset", "tiny", "--steps", "2", "--data", str(tmp_path / "collide"), "--slots",
            str(tmp_path / "slots.npy"), "--out", str(tmp_path / "vqa.json"), "--device", "cpu"]
    with pytest.raises(SystemExit, match="pass --resume to continue it"):
        main(args)
    main(args + ["--resume"])   # finished: scored again, the same numbers
    assert json.loads((tmp_path / "vqa.json").read_text())["test"] == result["test"]
    main(args[:3] + ["3"] + args[4:] + ["--resume"])   # trained on to 3 steps
    longer = json.loads((tmp_path / "vqa.json").read_text())
    assert longer["config"]["steps"] == 3 and [e["step"] for e in longer["log"] if "val" not in e] == [1, 2, 3]
    with pytest.raises(SystemExit, match="has trained 3 steps, more than the 2 asked for"):
        main(args + ["--resume"])
    # --epochs (App. F's unit): an epoch draws as many examples as the training set holds
    main(args[:-4] + ["--out", str(tmp_path / "epochs.json"), "--device", "cpu", "--epochs", "1.5"])
    by_epochs = json.loads((tmp_path / "epochs.json").read_text())
    n_train = sum(by_epochs["n_examples"]["train"].values())
    assert by_epochs["steps"] == int(np.ceil(1.5 * n_train / (2 * PRESETS["tiny"].batch_size))) != 2
    assert [e["step"] for e in by_epochs["log"] if "val" not in e] == list(range(1, by_epochs["steps"] + 1))
    assert PRESETS["paper"].epochs == 400
    np.save(tmp_path / "other.npy", slots)   # the same shape, other slots
    with pytest.raises(SystemExit, match=r"differing fields: \['slots'\]"):
        main(args[:7] + [str(tmp_path / "other.npy")] + args[8:] + ["--resume"])
    np.save(tmp_path / "slots.npy", slots[:, :7])
    with pytest.raises(SystemExit, match=r"error: .*expected float32 slots of shape \(6, 8, S, D\)"):
        main(["--preset", "tiny", "--data", str(tmp_path / "collide"), "--slots", str(tmp_path / "slots.npy"),
              "--out", str(tmp_path / "bad.json")])
    with pytest.raises(SystemExit, match="error: .*config.json is missing"):  # one line, no traceback
        main(["--preset", "tiny", "--run", str(tmp_path / "no-run")])
    main(["--preset", "tiny", "--steps", "2", "--protocol", "ours", "--data", str(tmp_path / "collide"),
          "--slots", str(tmp_path / "other.npy"), "--out", str(tmp_path / "ours.json"), "--device", "cpu"])
    ours = json.loads((tmp_path / "ours.json").read_text())
    assert ours["config"]["protocol"] == "ours" and result["config"]["protocol"] == "official"   # the default
    slots[2, 5, 1, 0] = np.nan   # slots of a diverged encoder: refused before any training
    np.save(tmp_path / "nan.npy", slots)
    with pytest.raises(SystemExit, match="error: the slots from .*nan.npy hold NaN or inf values"):
        main(["--preset", "tiny", "--data", str(tmp_path / "collide"), "--slots", str(tmp_path / "nan.npy"),
              "--out", str(tmp_path / "nan.json")])
    assert not (tmp_path / "nan.pt").exists() and not (tmp_path / "nan.json").exists()


def test_run_slots_roll_a_collide_run_forward(tiny_collide_run, tmp_path):
    _, out = tiny_collide_run
    cfg = COLLIDE_PRESETS["tiny"]
    slots, data, n_observed = run_slots(out)
    fs = cfg.frameskip
    n_obs = len(range(0, cfg.video_observed, fs))
    n_all = len(range(0, cfg.video_observed + cfg.video_future, fs))
    assert slots.shape == (cfg.episodes, n_all, cfg.n_slots, cfg.slot_dim) and n_observed == n_obs
    info = json.loads((out / "config.json").read_text())
    frame_slots = np.load(token_files(Path(info["encoder"]), COLLIDE_PRESETS["tiny"])[0])
    v = 3  # the observed part is the encoder's slots of frames 0, fs, 2 fs, ... of the video
    start = data.episode_starts[v]
    np.testing.assert_array_equal(slots[v, :n_obs].numpy(), frame_slots[start:start + cfg.video_observed:fs])
    assert not np.allclose(slots[v, n_obs:].numpy(), frame_slots[start + n_obs * fs::fs][:n_all - n_obs])
    main(["--preset", "tiny", "--steps", "2", "--run", str(out), "--out", str(tmp_path / "vqa.json"),
          "--device", "cpu"])
    result = json.loads((tmp_path / "vqa.json").read_text())
    assert result["slots"] == str(out) and set(result["val"]) >= {"counterfactual", "all"}


def test_run_slots_roll_out_every_offset_and_interleave_them(tiny_collide_run):
    _, out = tiny_collide_run
    cfg = COLLIDE_PRESETS["tiny"]   # 12 observed + 4 held-out frames, frameskip 2, history 2, blocks of 2
    chain, _, _ = run_slots(out)
    slots, data, n_observed = run_slots(out, every_offset=True)
    length = cfg.video_observed + cfg.video_future
    assert slots.shape == (cfg.episodes, length, cfg.n_slots, cfg.slot_dim) and n_observed == cfg.video_observed
    info = json.loads((out / "config.json").read_text())
    frame_slots = torch.from_numpy(np.load(token_files(Path(info["encoder"]), cfg)[0]))
    starts = data.episode_starts[:-1]
    observed = frame_slots[starts[:, None] + np.arange(cfg.video_observed)]
    assert torch.equal(slots[:, :cfg.video_observed], observed)           # every observed frame
    torch.testing.assert_close(slots[:, 12::2], chain[:, 6:])              # offset 0: the chain's rollout
    predictor = build_predictor(cfg)
    predictor.load_state_dict(torch.load(out / "predictor.pt", weights_only=True)["model"])
    odd = video_slots(observed[:, [9, 11]], predictor, 2, cfg.n_history, block=cfg.n_future)
    torch.testing.assert_close(slots[:, 13::2], odd[:, 2:])                # offset 1: frames 9, 11 -> 13, 15
    assert not torch.allclose(slots[:, 13::2], frame_slots[starts[:, None] + np.array([13, 15])])


def test_run_slots_refuse_a_push_t_run(tiny_run):
    _, out = tiny_run
    with pytest.raises(ValueError, match="needs a collide run"):
        run_slots(out)


def test_command_line_needs_a_run_or_data_and_slots(capsys):
    for argv in ([], ["--data", "d"], ["--run", "r", "--slots", "s.npy"]):
        with pytest.raises(SystemExit):
            main(argv)
        assert "either --run RUN_DIR or both --data DIR and --slots FILE.npy" in capsys.readouterr().err


