"""The ALOE-style answering model and its inputs (paper, VQA experiments; FACTS section 7).

One transformer over the sequence

    [CLS] + frames x slots + question words (+ choice words)

- Slots are a set by default: a slot token is Linear(slot) + time embedding + type embedding,
  with no slot-index embedding, so permuting the slots of a frame leaves every answer unchanged;
  ``slot_positions`` (the paper preset's, ALOE's) adds one per slot index.
- A multiple-choice question (explanatory, predictive, counterfactual) becomes one sequence per
  (question, choice) pair with a yes / no logit (BCE); a descriptive question is one sequence
  whose CLS output is classified over the answers seen in training (cross-entropy).
Question files become examples here (``build_examples``, ``question_examples`` for a dataset) and
examples batches (``collate``, with the frames each question reads);
predictions are scored as CLEVRER scores them (``score``); ``vqa.py`` trains the model.
"""

from dataclasses import dataclass

import einops
import numpy as np
import torch
from torch import nn

from predictor import Block
from questions import QUESTION_TYPES, build_answer_vocab, build_vocab, encode

CLS, SLOT, QUESTION, CHOICE = 0, 1, 2, 3  # rows of the token-type embedding


# ---------------------------------------------------------------------------------------
# The answering model
# ---------------------------------------------------------------------------------------
class VQAModel(nn.Module):
    """One pre-LN transformer over [CLS] + T x S slot tokens + question words (+ choice words).

    The CLS output feeds two heads: ``answer_logits`` (B, n_answers), a classifier over the
    descriptive answers, and ``choice_logit`` (B,), whether the given choice is correct.
    Padded words (mask False) are hidden from every query by a key padding mask. The blocks'
    feed-forward width is ``mlp_dim`` (default 4 x dim); each head is a linear map, or with
    ``head_mlp`` an MLP with one hidden layer of that size (ALOE's: 128). A slot token carries
    its frame's position; with ``slot_positions`` (at least the slot count) also one learned for
    its slot index, so slot k can be told from slot j (ALOE learns a position per token, and its
    slots keep their order over time); without, the slots of a frame are a set.
    """

    def __init__(self, slot_dim: int, vocab_size: int, n_answers: int, dim: int = 128, depth: int = 4,
                 heads: int = 4, max_frames: int = 160, max_words: int = 64, dropout: float = 0.1,
                 mlp_dim: int | None = None, head_mlp: int = 0, slot_positions: int = 0):
        super().__init__()
        for name, value in (("slot_dim", slot_dim), ("vocab_size", vocab_size), ("dim", dim),
                            ("heads", heads), ("max_frames", max_frames), ("max_words", max_words)):
            if value < 1:
                raise ValueError(f"expected {name} >= 1, got {value}")
        if dim % heads:
            raise ValueError(f"expected dim divisible by heads, got dim {dim} and {heads} heads")
        self.slot_dim, self.vocab_size, self.n_answers = slot_dim, vocab_size, n_answers
        self.max_frames, self.max_words = max_frames, max_words

        self.cls = nn.Parameter(0.02 * torch.randn(dim))
        self.slot_in = nn.Linear(slot_dim, dim)
        self.word_emb = nn.Embedding(vocab_size, dim)
        self.time_pos = nn.Parameter(0.02 * torch.randn(max_frames, dim))
        self.slot_pos = nn.Parameter(0.02 * torch.randn(slot_positions, dim)) if slot_positions else None
        self.word_pos = nn.Parameter(0.02 * torch.randn(max_words, dim))  # shared by question and choice
        self.type_emb = nn.Parameter(0.02 * torch.randn(4, dim))
        self.blocks = nn.ModuleList(Block(dim, heads, dim // heads, mlp_dim or 4 * dim, dropout) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)
        def head(n_out):
            return nn.Sequential(nn.Linear(dim, head_mlp), nn.ReLU(), nn.Linear(head_mlp, n_out)) if head_mlp \
                else nn.Linear(dim, n_out)
        self.answer_head, self.choice_head = head(n_answers), head(1)

    def _check_words(self, name, words, mask, batch):
        if words.ndim != 2 or words.dtype != torch.long:
            raise ValueError(f"expected {name} word ids long (B, L), got {words.dtype} {tuple(words.shape)}")
        if words.shape[0] != batch or words.shape[1] > self.max_words:
            raise ValueError(f"expected {name} of shape ({batch}, L <= max_words = {self.max_words}), "
                             f"got {tuple(words.shape)}")
        if mask is None or mask.shape != words.shape or mask.dtype != torch.bool:
            got = None if mask is None else f"{mask.dtype} {tuple(mask.shape)}"
            raise ValueError(f"expected a bool {name}_mask of shape {tuple(words.shape)}, got {got}")
        if words.numel() and not 0 <= int(words.min()) <= int(words.max()) < self.vocab_size:
            raise ValueError(f"expected {name} word ids in [0, {self.vocab_size}), got ids "
                             f"from {int(words.min())} to {int(words.max())}")

    def _words(self, words, kind):
        """Word tokens (B, L, dim): embedding + position in its own text + type."""
        return self.word_emb(words) + self.word_pos[:words.shape[1]] + self.type_emb[kind]

    def forward(self, slots, question, question_mask, choice=None, choice_mask=None, frames=None) -> dict:
        """slots: (B, T, S, D); question: (B, Lq) long word ids; question_mask: (B, Lq) bool, True
        at real words; choice, choice_mask: (B, Lc), or None for descriptive questions; frames:
        (B, 2) long, the first frame each example reads and the frame after its last (the slot
        tokens of other frames are hidden from every query), or None for all T.
        Returns {"answer_logits": (B, n_answers), "choice_logit": (B,)}."""
        if slots.ndim != 4 or slots.shape[-1] != self.slot_dim:
            raise ValueError(f"expected slots of shape (B, T, S, {self.slot_dim}), got {tuple(slots.shape)}")
        B, T, S, _ = slots.shape
        if not 1 <= T <= self.max_frames:
            raise ValueError(f"expected 1 <= T <= max_frames = {self.max_frames}, got T = {T}")
        if self.slot_pos is not None and S > len(self.slot_pos):
            raise ValueError(f"expected at most {len(self.slot_pos)} slots (slot_positions), got {S}")
        self._check_words("question", question, question_mask, B)
        if (choice is None) != (choice_mask is None):
            raise ValueError("expected choice and choice_mask both given or both None")
        if choice is not None:
            self._check_words("choice", choice, choice_mask, B)

        cls = einops.repeat(self.cls + self.type_emb[CLS], "d -> b 1 d", b=B)
        slot_tok = self.slot_in(slots) + self.time_pos[:T, None] + self.type_emb[SLOT]  # (B, T, S, dim)
        if self.slot_pos is not None:
            slot_tok = slot_tok + self.slot_pos[:S]
        tokens = [cls, einops.rearrange(slot_tok, "b t s d -> b (t s) d"), self._words(question, QUESTION)]
        seen = question_mask.new_ones(B, T)
        if frames is not None:
            t, frames = torch.arange(T, device=slots.device)[None], frames.to(slots.device)
            seen = (frames[:, :1] <= t) & (t < frames[:, 1:])  # (B, T)
        keep = [question_mask.new_ones(B, 1), einops.repeat(seen, "b t -> b (t s)", s=S), question_mask]
        if choice is not None:
            tokens.append(self._words(choice, CHOICE))
            keep.append(choice_mask)
        x = torch.cat(tokens, dim=1)  # (B, L, dim), L = 1 + T * S + Lq (+ Lc)
        keep = torch.cat(keep, dim=1)  # (B, L), True at keys any token may attend
        allowed = einops.rearrange(keep, "b l -> b 1 1 l")  # broadcast over heads and queries
        for block in self.blocks:
            x = block(x, allowed)
        out = self.norm(x[:, 0])  # (B, dim), the CLS token
        with torch.autocast(out.device.type, enabled=False):  # float32 logits under bf16 autocast:
            out = out.float()                                  # no ties from rounding in argmax
            return {"answer_logits": self.answer_head(out), "choice_logit": self.choice_head(out)[:, 0]}


# ---------------------------------------------------------------------------------------
# Examples: question files -> (video, words, target)
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Descriptive:
    """One descriptive question; answer indexes the answer vocabulary, -1 = outside it."""
    video: int
    question_id: int
    question: tuple
    answer: int


@dataclass(frozen=True)
class Choice:
    """One (question, choice) pair of a multiple-choice question; label 1 = correct, 0 = wrong."""
    video: int
    question_id: int
    question_type: str
    question: tuple
    choice_id: int
    choice: tuple
    label: int


def build_examples(question_scenes, vocab, answer_vocab, unknown_answers="raise"):
    """Flatten question files (``questions.load_questions``) into {"descriptive": [Descriptive],
    "choice": [Choice]}, one Choice per choice of every multiple-choice question.

    The video of a question is its scene's "scene_index" (the row of the slots array).
    Words go through ``collision.encode``, so an unknown word raises its error. A descriptive
    question whose answer is missing or not in ``answer_vocab``, or a multiple-choice question
    with a choice lacking a "correct" / "wrong" answer, is handled by ``unknown_answers``:
    "raise" (an error), "skip" (left out) or "wrong" (a descriptive question is kept with answer
    -1, which no prediction matches: the honest choice for scoring held-out splits).
    """
    if unknown_answers not in ("raise", "skip", "wrong"):
        raise ValueError(f"expected unknown_answers in ('raise', 'skip', 'wrong'), got {unknown_answers!r}")
    answer_index = {a: i for i, a in enumerate(answer_vocab)}
    examples = {"descriptive": [], "choice": []}
    for scene in question_scenes:
        video = int(scene["scene_index"])
        for q in scene["questions"]:
            where = f"scene {video} question {q['question_id']}"
            if q["question_type"] == "descriptive":
                answer = q.get("answer")
                if answer not in answer_index:
                    if unknown_answers == "skip":
                        continue
                    if answer is None:
                        raise ValueError(f"{where} has no answer; pass unknown_answers='skip'")
                    if unknown_answers == "raise":
                        raise ValueError(f"{where}: answer {answer!r} is not one of the {len(answer_vocab)} "
                                         "answers of the classifier (built from the training questions); "
                                         "pass unknown_answers='skip', or 'wrong' to score it as a miss")
                words = tuple(encode(q["question"], vocab))
                examples["descriptive"].append(Descriptive(video, q["question_id"], words,
                                                           answer_index.get(answer, -1)))
                continue
            answers = [c.get("answer") for c in q["choices"]]
            if any(a not in ("correct", "wrong") for a in answers):
                if unknown_answers == "skip":
                    continue
                raise ValueError(f"{where}: expected every choice answered 'correct' or 'wrong', "
                                 f"found {answers}; pass unknown_answers='skip'")
            words = tuple(encode(q["question"], vocab))
            for c in q["choices"]:
                examples["choice"].append(Choice(
                    video, q["question_id"], q["question_type"], words, c["choice_id"],
                    tuple(encode(c["choice"], vocab)), int(c["answer"] == "correct")))
    return examples


def question_examples(data, max_words):
    """(word vocabulary, answer vocabulary, {split: build_examples(...)}) of a collide dataset.

    The word vocabulary covers the question and choice texts of every split (texts are inputs,
    not labels); the answer vocabulary holds the training answers only, and a held-out
    descriptive question with another answer counts as wrong (``unknown_answers="wrong"``).
    A question or choice longer than ``max_words`` is an error."""
    vocab = build_vocab([s for split in data.questions.values() for s in split])
    answers = build_answer_vocab(data.questions["train"])
    examples = {split: build_examples(scenes, vocab, answers, "raise" if split == "train" else "wrong")
                for split, scenes in data.questions.items()}
    longest = max(len(text) for ex in examples.values() for e in ex["descriptive"] + ex["choice"]
                  for text in (e.question, getattr(e, "choice", ())))
    if longest > max_words:
        raise ValueError(f"the longest question or choice has {longest} words; expected at most "
                         f"max_words = {max_words} (pass --max-words {longest})")
    return vocab, answers, examples


def _pad(texts, device):
    """Word ids long (B, L) padded with 0 and mask bool (B, L), L = the longest text."""
    ids = torch.zeros(len(texts), max(map(len, texts)), dtype=torch.long)
    for i, text in enumerate(texts):
        ids[i, :len(text)] = torch.tensor(text, dtype=torch.long)
    mask = torch.arange(ids.shape[1])[None] < torch.tensor([len(t) for t in texts])[:, None]
    return ids.to(device), mask.to(device)


def collate(batch, slots_per_video, device, observed=None, sample=0, generator=None):
    """(inputs, target) of a list of Descriptive or of Choice examples: inputs are the keyword
    arguments of VQAModel.forward, target (B,) the answer ids (long) or the labels (float).
    Both kinds in one batch is an error.

    observed: None (every question's window is every frame), or the number of leading frames
    that were observed (the paper's ALOE loader): a predictive question's window is then as
    many frames, the last ones, predicted frames included, and every other question's the
    observed frames. Without ``sample`` a question reads its whole window (the slots of other
    frames are hidden, ``frames``); with ``sample`` = n it reads n frames of it, window // n
    apart, from a start drawn uniformly among those that fit: ALOE's 25 frames 5 apart from a
    random start of CLEVRER's 128. The start is drawn from ``generator`` (a CPU torch.Generator;
    training) for each example, or without one once per question, fixed by its video and
    question id (scoring), so the choices of a question read the same frames, as in ALOE's
    loader, and a score repeats. The slots are then gathered to (B, n, S, D), so time positions
    count the sampled frames from 0, as ALOE's do."""
    kinds = {type(e) for e in batch}
    if len(kinds) != 1:
        raise ValueError(f"expected a batch of one example kind, got {sorted(k.__name__ for k in kinds)}")
    videos = torch.tensor([e.video for e in batch])
    T = slots_per_video.shape[1]
    length = T if observed is None else observed
    first = torch.tensor([T - length if getattr(e, "question_type", None) == "predictive" else 0 for e in batch])
    if sample:
        offset = length // sample
        if offset < 1:
            raise ValueError(f"cannot sample {sample} frames from a window of {length}")
        span = length - (sample - 1) * offset   # the starts that fit
        if generator is None:
            draws = [np.random.default_rng([e.video, e.question_id]).integers(span) for e in batch]
            first = first + torch.tensor(draws)
        else:
            first = first + torch.randint(span, (len(batch),), generator=generator)
        picked = first[:, None] + offset * torch.arange(sample)   # (B, n) frame indices
        inputs = {"slots": slots_per_video[videos[:, None], picked].to(device)}  # (B, n, S, D)
    else:
        inputs = {"slots": slots_per_video[videos].to(device)}  # (B, T, S, D)
        if observed is not None:
            inputs["frames"] = torch.stack([first, first + length], dim=1).to(device)
    inputs["question"], inputs["question_mask"] = _pad([e.question for e in batch], device)
    if kinds == {Choice}:
        inputs["choice"], inputs["choice_mask"] = _pad([e.choice for e in batch], device)
        target = torch.tensor([e.label for e in batch], dtype=torch.float)
    else:
        target = torch.tensor([e.answer for e in batch], dtype=torch.long)
    return inputs, target.to(device)


def check_videos(slots_per_video, examples):
    if slots_per_video.ndim != 4:
        raise ValueError("expected slots per video of shape (V, T, S, D), "
                         f"got {tuple(slots_per_video.shape)}")
    videos = [e.video for kind in examples.values() for e in kind]
    if videos and not 0 <= min(videos) <= max(videos) < len(slots_per_video):
        raise ValueError(f"questions refer to videos {min(videos)} to {max(videos)}, but the slots "
                         f"hold {len(slots_per_video)} videos")


# ---------------------------------------------------------------------------------------
# CLEVRER-style scores
# ---------------------------------------------------------------------------------------
MULTIPLE_CHOICE = QUESTION_TYPES[1:]      # explanatory, predictive, counterfactual


def _share(hits):
    return sum(hits) / len(hits) if hits else None


def score(predictions, examples):
    """Accuracies (fractions in [0, 1], None where a type has no questions), as CLEVRER scores them.

    predictions: {"descriptive": [answer id], "choice": [0 / 1]} aligned with ``examples``
    (``build_examples`` output). A multiple-choice question is the group of its Choice examples
    with the same (video, question_id).
    - descriptive: {"question"}: share of questions answered right.
    - explanatory, predictive, counterfactual: {"option"}: share of choices right;
      {"question"}: share of questions with every choice right.
    - all: {"question"}: share of all questions right, pooled over the four types (a descriptive
      question right, a multiple-choice question with every choice right), so each type weighs by
      its number of questions. This is how the "avg" column of the paper's CLEVRER table pools:
      its five rows are fit exactly by one weighting of the four per-question columns (about
      72 / 12 / 4.5 / 12 %), the shares of the four types among the questions.
      {"option"}: share right over every descriptive question and every choice, pooled.
    Every entry also carries its counts ("questions", and "options" for multiple choice).
    """
    for kind in ("descriptive", "choice"):
        if len(predictions[kind]) != len(examples[kind]):
            raise ValueError(f"expected {len(examples[kind])} {kind} predictions, "
                             f"got {len(predictions[kind])}")
    descriptive = [int(p) == e.answer for p, e in zip(predictions["descriptive"], examples["descriptive"])]
    options = {t: [] for t in MULTIPLE_CHOICE}
    questions = {}  # (video, question_id) -> (question type, every choice so far right)
    for p, e in zip(predictions["choice"], examples["choice"]):
        right = int(p) == e.label
        options[e.question_type].append(right)
        kind, all_right = questions.get((e.video, e.question_id), (e.question_type, True))
        if kind != e.question_type:
            raise ValueError(f"video {e.video} question {e.question_id} has choices of types "
                             f"{kind!r} and {e.question_type!r}")
        questions[(e.video, e.question_id)] = (kind, all_right and right)

    result = {"descriptive": {"question": _share(descriptive), "questions": len(descriptive)}}
    for t in MULTIPLE_CHOICE:
        whole = [right for kind, right in questions.values() if kind == t]
        result[t] = {"option": _share(options[t]), "question": _share(whole),
                     "options": len(options[t]), "questions": len(whole)}
    every_question = descriptive + [right for _, right in questions.values()]
    every_option = descriptive + [right for t in MULTIPLE_CHOICE for right in options[t]]
    result["all"] = {"question": _share(every_question), "option": _share(every_option),
                     "questions": len(every_question), "options": len(every_option)}
    return result


def format_table(scores):
    """The scores as a text table in percent: type, per option, per question, questions."""
    def pct(x):
        return "-" if x is None else f"{100 * x:.2f}"
    lines = [f"{'type':<16}{'per option':>12}{'per question':>14}{'questions':>11}"]
    for t in (*QUESTION_TYPES, "all"):
        s = scores[t]
        lines.append(f"{t:<16}{pct(s.get('option')):>12}{pct(s['question']):>14}{s['questions']:>11}")
    return "\n".join(lines)
