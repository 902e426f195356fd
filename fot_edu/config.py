"""Typed configuration: model, data and training, with tiny CPU defaults and named presets.

Every field says why it has its default. A bad value raises a ``ValueError`` naming the field,
the value and what is allowed, when the config is built (``__post_init__``), so a typo fails at
once and not twenty minutes into training.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

MEMORY_KINDS = ("fot", "mt")  # fot: one softmax (eq. 1); mt: Memorizing Transformer gate
MEMORY_POSITIONS = ("none", "rope")  # memory layers: position-free (unit q, k, temperature) or
# LongLLaMA's (RoPE kept in the window, memory keys as if at position 0, plain dot products)
TASKS = ("dictionary", "code", "books", "proofs", "retrieval")
BYTE_CORPORA = ("code", "books", "proofs")  # tasks of plain bytes (repeated strings fit in)
REPEAT_MIXES = ("none", "synthetic", "strings", "cross", "cross-phrase", "phrases")  # fot_edu.data.repeats.MIXES
NEGATIVE_KINDS = ("neighbours", "hard")
TRAIN_MODES = ("crossbatch", "plain", "stream")  # stream: windows in order, memory of earlier ones
CROSSBATCH_SCOPES = ("local", "global")  # several processes: negatives from the own rank or all


def _check(ok: bool, name: str, value: Any, allowed: str) -> None:
    if not ok:
        raise ValueError(f"{name}={value!r} is not allowed: {allowed}")


@dataclass
class ModelConfig:
    vocab_size: int = 256  # byte-level text; the dictionary task sets its own small vocabulary
    d_model: int = 128  # the paper's small models use 1024; 128 trains in minutes on a CPU
    n_layers: int = 3
    n_heads: int = 4
    d_ff: int = 512  # feed-forward width, 4 x d_model as usual
    memory_layers: tuple[int, ...] | None = None  # None: one layer at ~2/3 depth; (): vanilla
    memory_kind: str = "fot"  # "fot" (single softmax) or "mt" (gated separate memory attention)
    memory_position: str = "none"  # "none" or "rope" (LongLLaMA): see fot_edu.model
    max_window: int = 1024  # longest local window (RoPE table size); memory has no such limit
    tau_init: float = 10.0  # initial per-head temperature of the normalised q.k logits
    rope_base: float = 10000.0
    dropout: float = 0.0  # 0 keeps CPU runs bit-reproducible; tiny models do not need it
    smear_keys: tuple[int, ...] = ()  # layers whose keys mix in the previous token's key
    # (Olsson et al. 2022; fot_edu.smear): copying in one head. (): none, as FoT and LongLLaMA
    qk_conv: tuple[int, ...] = ()  # layers whose queries and keys mix the last
    # qk_conv_width tokens' (So et al. 2021; fot_edu.qk_conv). (): none, as FoT and LongLLaMA
    qk_conv_width: int = 4

    def __post_init__(self) -> None:
        if isinstance(self.memory_layers, list):
            self.memory_layers = tuple(self.memory_layers)
        if isinstance(self.smear_keys, list):
            self.smear_keys = tuple(self.smear_keys)
        if isinstance(self.qk_conv, list):
            self.qk_conv = tuple(self.qk_conv)
        for name in ("vocab_size", "d_model", "n_layers", "n_heads", "d_ff", "max_window"):
            value = getattr(self, name)
            _check(isinstance(value, int) and value >= 1, name, value, "a positive integer")
        _check(self.d_model % self.n_heads == 0, "d_model", self.d_model,
               f"a multiple of n_heads={self.n_heads}")
        _check(self.memory_kind in MEMORY_KINDS, "memory_kind", self.memory_kind, f"one of {MEMORY_KINDS}")
        _check(self.memory_position in MEMORY_POSITIONS, "memory_position", self.memory_position,
               f"one of {MEMORY_POSITIONS}")
        _check(self.memory_position == "none" or self.memory_kind == "fot", "memory_position",
               self.memory_position, f"'none' with memory_kind={self.memory_kind!r} (RoPE-kept "
               "memory layers are FoT's single softmax, as in LongLLaMA)")
        if self.memory_layers is None:
            self.memory_layers = (max(0, round(2 * self.n_layers / 3) - 1),)
        bad = [i for i in self.memory_layers if not (isinstance(i, int) and 0 <= i < self.n_layers)]
        _check(not bad, "memory_layers", self.memory_layers,
               f"layer indices in 0..{self.n_layers - 1} (n_layers={self.n_layers})")
        _check(len(set(self.memory_layers)) == len(self.memory_layers), "memory_layers",
               self.memory_layers, "distinct indices")
        _check(isinstance(self.smear_keys, tuple) and len(set(self.smear_keys)) == len(self.smear_keys)
               and all(isinstance(i, int) and not isinstance(i, bool) and 0 <= i < self.n_layers
                       for i in self.smear_keys), "smear_keys", self.smear_keys,
               f"a tuple of distinct layer indices in 0..{self.n_layers - 1} (n_layers={self.n_layers})")
        _check(isinstance(self.qk_conv, tuple) and len(set(self.qk_conv)) == len(self.qk_conv)
               and all(isinstance(i, int) and not isinstance(i, bool) and 0 <= i < self.n_layers
                       for i in self.qk_conv), "qk_conv", self.qk_conv,
               f"a tuple of distinct layer indices in 0..{self.n_layers - 1} (n_layers={self.n_layers})")
        _check(not set(self.qk_conv) & set(self.smear_keys), "qk_conv", self.qk_conv,
               f"layers without smeared keys (smear_keys={self.smear_keys}): one or the other")
        _check(isinstance(self.qk_conv_width, int) and not isinstance(self.qk_conv_width, bool)
               and self.qk_conv_width >= 2, "qk_conv_width", self.qk_conv_width, "an integer >= 2")
        _check(self.tau_init > 0, "tau_init", self.tau_init, "a positive number")
        _check(0.0 <= self.dropout < 1.0, "dropout", self.dropout, "in [0, 1)")

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads


@dataclass
class DataConfig:
    task: str = "dictionary"  # "dictionary" (synthetic lookup), a corpus: "code", "books", "proofs",
    # or "retrieval" (needles in book text: the curriculum passkey-fot is trained on)
    window: int = 64  # n: tokens in one window (C_prev and C_curr each have n tokens)
    # dictionary lookup (DESIGN §2, paper App. D), scaled down to train in minutes
    num_symbols: int = 32  # alphabet size of keys and values
    key_len: int = 2  # tokens per key
    value_len: int = 2  # tokens per value
    entries_per_window: int = 10  # definitions (retrieval: needles) in C_prev, questions in C_curr
    doc_windows: int = 4  # stream training: windows of a dictionary document (definitions, mixed
    # definitions and questions, ..., questions), so the asked definitions are only in memory
    large: bool = False  # corpora: the uncut versions (`python -m fot_edu data build --large`)
    repeats: tuple[tuple[int, str], ...] = ()  # ((step, mix), ...): from `step` on, training
    # batches carry repeated random strings (fot_edu.data.repeats.MIXES): data that pays for copying

    def __post_init__(self) -> None:
        _check(self.task in TASKS, "task", self.task, f"one of {TASKS}")
        for name in ("window", "num_symbols", "key_len", "value_len", "entries_per_window",
                     "doc_windows"):
            value = getattr(self, name)
            _check(isinstance(value, int) and value >= 1, name, value, "a positive integer")
        _check(self.window >= 2, "window", self.window, "at least 2 tokens")
        self.repeats = tuple(tuple(pair) if isinstance(pair, (list, tuple)) else pair
                             for pair in self.repeats)
        _check(all(isinstance(p, tuple) and len(p) == 2 for p in self.repeats), "repeats",
               self.repeats, "pairs (step, mix)")
        _check(all(isinstance(s, int) and s >= 0 and m in REPEAT_MIXES for s, m in self.repeats)
               and [s for s, _ in self.repeats] == sorted({s for s, _ in self.repeats})
               and (not self.repeats or self.task in BYTE_CORPORA), "repeats", self.repeats,
               f"((step, mix), ...) with steps >= 0 increasing, mixes from {REPEAT_MIXES}, "
               f"on a byte corpus {BYTE_CORPORA}")
        if self.task == "dictionary":
            need = self.entries_per_window * self.entry_len
            _check(need <= self.window, "entries_per_window", self.entries_per_window,
                   f"at most {self.window // self.entry_len} entries of {self.entry_len} tokens "
                   f"in a window of {self.window}")
            _check(self.num_symbols ** self.key_len >= self.entries_per_window, "num_symbols",
                   self.num_symbols, "enough symbols for distinct keys in a window")


    @property
    def entry_len(self) -> int:
        """Tokens of one dictionary entry: marker, key, ``<v>``, value."""
        return 2 + self.key_len + self.value_len


@dataclass
class TrainConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    mode: str = "crossbatch"  # "crossbatch" (memory layers see C_prev: FoT with d>=1), "plain",
    # or "stream" (each row reads its documents window by window, memory of the earlier windows: MT)
    d: int = 1  # crossbatch dimension: own C_prev + (d - 1) other documents' C_prev
    d_schedule: tuple[tuple[int, int], ...] = ()  # ((step, d), ...): from `step` on train with d
    negatives: str = "neighbours"  # "neighbours": rows i+1..i+d-1; "hard": most similar C_prev
    crossbatch_scope: str = "local"  # torchrun: "global" takes negatives from every rank (d <= b)
    batch_size: int = 32  # b: documents per step (with torchrun: all ranks together)
    memory_k: int | None = 32  # stream: memory keys per query, top-k (Wu et al.: 32); None: all
    memory_capacity: int = 2048  # stream: tokens each row's memory keeps (FIFO), per layer and head
    steps: int = 1200
    lr: float = 2e-3
    betas: tuple[float, float] = (0.9, 0.98)
    weight_decay: float = 0.1
    warmup_steps: int = 100
    min_lr_ratio: float = 0.1  # cosine decay ends at lr * min_lr_ratio
    grad_clip: float = 1.0
    eval_every: int = 200
    eval_batches: int = 4
    checkpoint_every: int = 200
    seed: int = 0
    base: str | None = None  # continue a vanilla checkpoint (a shipped name or a path): its layers
    # named in model.memory_layers become memory layers (the LongLLaMA recipe, fot_edu.training.longllama)

    def __post_init__(self) -> None:
        if isinstance(self.model, dict):
            self.model = ModelConfig(**self.model)
        if isinstance(self.data, dict):
            self.data = DataConfig(**self.data)
        self.d_schedule = tuple(tuple(int(x) for x in pair) for pair in self.d_schedule)
        self.betas = tuple(self.betas)
        _check(self.mode in TRAIN_MODES, "mode", self.mode, f"one of {TRAIN_MODES}")
        _check(self.negatives in NEGATIVE_KINDS, "negatives", self.negatives, f"one of {NEGATIVE_KINDS}")
        _check(self.crossbatch_scope in CROSSBATCH_SCOPES, "crossbatch_scope", self.crossbatch_scope,
               f"one of {CROSSBATCH_SCOPES}")
        for name in ("batch_size", "steps", "eval_every", "eval_batches", "checkpoint_every"):
            value = getattr(self, name)
            _check(isinstance(value, int) and value >= 1, name, value, "a positive integer")
        _check(isinstance(self.warmup_steps, int) and self.warmup_steps >= 0, "warmup_steps",
               self.warmup_steps, "a non-negative integer")
        _check(self.lr > 0, "lr", self.lr, "a positive number")
        for d in (self.d, *(d for _, d in self.d_schedule)):
            _check(isinstance(d, int) and 1 <= d <= self.batch_size, "d", d,
                   f"an integer in 1..batch_size={self.batch_size}")
        steps = [s for s, _ in self.d_schedule]
        _check(steps == sorted(steps), "d_schedule", self.d_schedule, "steps in increasing order")
        if self.mode != "plain":
            _check(bool(self.model.memory_layers), "model.memory_layers", self.model.memory_layers,
                   f"at least one memory layer for mode={self.mode!r}")
        if self.mode == "stream":
            self._check_stream()
        if self.model.memory_kind == "mt" and self.mode == "crossbatch":
            _check(self.d == 1 and not self.d_schedule, "d", self.d, "1 with no d_schedule for "
                   "memory_kind='mt' (MT trains on its own previous window)")
        _check(self.data.window <= self.model.max_window, "data.window", self.data.window,
               f"at most model.max_window={self.model.max_window}")

    def _check_stream(self) -> None:
        why = "for mode='stream' (no crossbatch: a row reads only its own document's earlier windows)"
        _check(self.d == 1, "d", self.d, f"1 {why}")
        _check(not self.d_schedule, "d_schedule", self.d_schedule, f"empty {why}")
        _check(not self.data.repeats, "data.repeats", self.data.repeats, f"empty {why}")
        _check(self.data.task != "retrieval", "data.task", self.data.task,
               "a dictionary or corpus task for mode='stream' (retrieval comes as pairs only)")
        _check(self.memory_k is None or (isinstance(self.memory_k, int) and self.memory_k >= 1),
               "memory_k", self.memory_k, "a positive integer, or None for all of memory")
        _check(isinstance(self.memory_capacity, int) and self.memory_capacity >= self.data.window,
               "memory_capacity", self.memory_capacity,
               f"an integer of at least data.window={self.data.window} tokens")
        data = self.data
        if data.task == "dictionary":
            _check(data.doc_windows >= 2, "data.doc_windows", data.doc_windows,
                   "at least 2 for mode='stream' (definitions, then questions)")
            E = data.entries_per_window  # defined in window 0, E // 2 more in each middle one
            fresh = E + E // 2 * (data.doc_windows - 2)
            _check(data.num_symbols ** data.key_len >= fresh, "data.doc_windows", data.doc_windows,
                   f"few enough windows for {fresh} distinct keys of num_symbols={data.num_symbols} "
                   f"** key_len={data.key_len}")

    @property
    def d_max(self) -> int:
        """The largest crossbatch dimension of the run: ``d`` or a later ``d_schedule`` entry."""
        return max([self.d] + [d for _, d in self.d_schedule])

    def d_at(self, step: int) -> int:
        """The crossbatch dimension d in force at ``step`` (the last schedule entry at or before it)."""
        d = self.d
        for start, value in self.d_schedule:
            if step >= start:
                d = value
        return d

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "TrainConfig":
        return cls(**data)

    def replace(self, **changes) -> "TrainConfig":
        """A copy with fields changed; ``model__d_model=64`` reaches into a sub-config."""
        top = {k: v for k, v in changes.items() if "__" not in k}
        nested: dict[str, dict] = {}
        for key, value in changes.items():
            if "__" in key:
                part, name = key.split("__", 1)
                nested.setdefault(part, {})[name] = value
        for part, values in nested.items():
            top[part] = dataclasses.replace(getattr(self, part), **values)
        return dataclasses.replace(self, **top)
