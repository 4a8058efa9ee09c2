"""SASRec (Kang & McAuley, ICDM 2018), the self-attentive sequential recommender: item embedding +
learned positional embedding, causal self-attention blocks, trained on the training split's sequences
with next-item prediction; a candidate's score is the dot product of the last hidden state with its
(tied) item embedding. Two stages ask it: eval ranks slates with it (a baseline, eval/baselines.py), and
the prompts' evidence notes are its ranks (models/evidence.py, fitted by `gr2 traces`), so it lives
below both. Sorting is stable: ties, and unknown items (score -inf), keep their incoming order.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F


def order_by_scores(scores: Sequence[float]) -> list[int]:
    """Indices sorted by descending score; stable, so ties and -inf keep the incoming order.
    NaN counts as -inf."""
    keys = [-(s if s == s else -math.inf) for s in (float(x) for x in scores)]
    return sorted(range(len(keys)), key=keys.__getitem__)


def training_sequences(rows: Iterable[tuple[Sequence[str], Sequence[str]]], split: str = "train") -> list[list[str]]:
    """Per user, the items whose position is labelled `split` (gold.sequences' ``items`` and its
    parallel ``split`` array), in time order; users with no such item are dropped."""
    out = []
    for items, splits in rows:
        seq = [str(i) for i, s in zip(items, splits) if s == split]
        if seq:
            out.append(seq)
    return out


# -- SASRec ----------------------------------------------------------------------------------------


@dataclass
class SASRecConfig:
    hidden: int = 64
    layers: int = 2
    heads: int = 2
    max_len: int = 50
    dropout: float = 0.2
    epochs: int = 20
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.0
    # "ce": full softmax over the catalog; "bce": sampled negatives per position (the paper); "sampled": softmax
    # over the target and `negatives` items drawn once per batch (the catalog-wide softmax is most of a step's
    # cost on a 12k-item catalog; sampled is several times faster, see docs/benchmarks.md)
    loss: str = "ce"
    negatives: int = 1  # loss="bce": negatives per position; loss="sampled": negatives shared by a batch
    max_seconds: float | None = None  # stop training (between batches) once this wall-clock budget is spent
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("hidden", "layers", "heads", "max_len", "epochs", "batch_size", "negatives"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < (0 if name == "epochs" else 1):
                raise ValueError(f"SASRecConfig.{name} must be a positive integer, got {v!r}")
        if self.hidden % self.heads:
            raise ValueError(f"SASRecConfig.hidden ({self.hidden}) must be divisible by heads ({self.heads})")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"SASRecConfig.dropout must be in [0, 1), got {self.dropout}")
        if self.lr <= 0:
            raise ValueError(f"SASRecConfig.lr must be > 0, got {self.lr}")
        if self.loss not in ("ce", "bce", "sampled"):
            raise ValueError(f"SASRecConfig.loss must be 'ce', 'bce' or 'sampled', got {self.loss!r}")


class SASRecNet(nn.Module):
    """Item ids 1..N (0 = padding, left-padded) -> hidden state per position."""

    def __init__(self, n_items: int, cfg: SASRecConfig):
        super().__init__()
        self.cfg = cfg
        self.item = nn.Embedding(n_items + 1, cfg.hidden, padding_idx=0)
        self.pos = nn.Embedding(cfg.max_len, cfg.hidden)
        self.drop = nn.Dropout(cfg.dropout)
        layer = nn.TransformerEncoderLayer(
            d_model=cfg.hidden,
            nhead=cfg.heads,
            dim_feedforward=cfg.hidden,
            dropout=cfg.dropout,
            activation="relu",
            batch_first=True,
            norm_first=True,
        )
        self.blocks = nn.TransformerEncoder(layer, num_layers=cfg.layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(cfg.hidden)
        nn.init.normal_(self.item.weight, std=cfg.hidden**-0.5)
        with torch.no_grad():
            self.item.weight[0].zero_()

    def forward(self, seq: torch.Tensor) -> torch.Tensor:
        b, n = seq.shape
        pad = seq == 0
        # Positions count back from the end (the latest item is always max_len - 1), so a left-padded batch
        # trimmed of its all-padding columns (see SASRec._batches) computes what the full width would.
        positions = torch.arange(self.cfg.max_len - n, self.cfg.max_len, device=seq.device)
        x = self.item(seq) * math.sqrt(self.cfg.hidden) + self.pos(positions)[None]
        x = self.drop(x) * (~pad)[..., None]
        # causal, and no attending to padding; every position may see itself so no row is fully masked
        causal = torch.ones(n, n, dtype=torch.bool, device=seq.device).triu(1)
        eye = torch.eye(n, dtype=torch.bool, device=seq.device)
        mask = (causal[None] | pad[:, None, :]) & ~eye[None]
        mask = mask.repeat_interleave(self.cfg.heads, dim=0)
        h = self.blocks(x, mask=mask)
        return self.norm(h) * (~pad)[..., None]


class SASRec:
    """SASRec re-ranker. ``fit`` trains on the training split's sequences; ``rank`` scores the
    candidates by <last hidden state of the history, item embedding>; unknown items get -inf."""

    name = "sasrec"

    def __init__(self, cfg: SASRecConfig | None = None, progress: Callable[[dict], None] | None = None, device: str = "cpu"):
        self.cfg = cfg or SASRecConfig()
        self.progress = progress
        self.device = torch.device(device)
        self.vocab: dict[str, int] = {}
        self.model: SASRecNet | None = None
        self.history: list[dict] = []
        self.stopped_early = False

    # -- data ------------------------------------------------------------------------------------

    def _windows(self, seqs: list[list[int]]) -> np.ndarray:
        """Non-overlapping windows of max_len + 1 ids taken from each sequence's end, left-padded."""
        width = self.cfg.max_len + 1
        rows = []
        for s in seqs:
            end = len(s)
            while end >= 2:
                chunk = s[max(0, end - width) : end]
                rows.append([0] * (width - len(chunk)) + chunk)
                end -= self.cfg.max_len
        return np.asarray(rows, dtype=np.int64).reshape(-1, width)

    def _encode_history(self, history: Sequence[str]) -> list[int]:
        ids = [self.vocab[h] for h in history if h in self.vocab]
        return ids[-self.cfg.max_len :]

    # -- training --------------------------------------------------------------------------------

    def fit(self, train_sequences: list[list[str]]) -> "SASRec":
        cfg = self.cfg
        items = sorted({str(i) for s in train_sequences for i in s})
        if not items:
            raise ValueError("SASRec.fit needs at least one training item")
        self.vocab = {item: i + 1 for i, item in enumerate(items)}
        n_items = len(items)
        data = self._windows([[self.vocab[str(i)] for i in s] for s in train_sequences])
        self.history = []
        self.stopped_early = False
        t_start = time.perf_counter()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(cfg.seed))
            model = SASRecNet(n_items, cfg).to(self.device)
            self.model = model
            if len(data) == 0:
                model.eval()
                return self
            opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, betas=(0.9, 0.98), weight_decay=cfg.weight_decay)
            gen = torch.Generator().manual_seed(int(cfg.seed) + 1)
            tensor = torch.from_numpy(data)
            model.train()
            step = 0
            for epoch in range(1, cfg.epochs + 1):
                total, batches = 0.0, 0
                for rows in self._batches(data, gen):
                    if cfg.max_seconds is not None and time.perf_counter() - t_start > cfg.max_seconds:
                        self.stopped_early = True
                        break
                    batch = tensor[rows].to(self.device)
                    batch = batch[:, int((batch != 0).any(0).nonzero()[0]) :]  # drop all-padding columns
                    loss = self._loss(model, batch, n_items, gen)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    total += float(loss.detach())
                    batches += 1
                    step += 1
                if batches:
                    row = {"epoch": epoch, "step": step, "loss": total / batches, "seconds": time.perf_counter() - t_start}
                    self.history.append(row)
                    if self.progress is not None:
                        self.progress(row)
                if self.stopped_early:
                    break
        model.eval()
        return self

    def _batches(self, data: np.ndarray, gen: torch.Generator) -> list[torch.Tensor]:
        """One epoch's batches of window rows: shuffled, then sorted by length within chunks of 50 batches,
        so a batch holds windows of similar length and loses its padding columns. Short-sequence data
        (Amazon Beauty: 8 items a user on average against max_len 50) trains several times faster than
        with every row padded to max_len; the shuffle keeps batches random across epochs."""
        lengths = torch.from_numpy((data != 0).sum(1))
        perm = torch.randperm(len(data), generator=gen)
        size = self.cfg.batch_size
        chunk = size * 50
        out = []
        for start in range(0, len(perm), chunk):
            part = perm[start : start + chunk]
            part = part[torch.argsort(lengths[part], stable=True)]
            out += [part[i : i + size] for i in range(0, len(part), size)]
        order = torch.randperm(len(out), generator=gen).tolist()
        return [out[i] for i in order]

    def _loss(self, model: SASRecNet, batch: torch.Tensor, n_items: int, gen: torch.Generator) -> torch.Tensor:
        inp, tgt = batch[:, :-1], batch[:, 1:]
        h = model(inp)
        valid = (inp != 0) & (tgt != 0)
        h, tgt = h[valid], tgt[valid]
        if self.cfg.loss == "ce":
            logits = h @ model.item.weight[1:].T  # [n, N]; class c = item id c + 1
            return F.cross_entropy(logits, tgt - 1)
        if self.cfg.loss == "sampled":
            neg = torch.randint(1, n_items + 1, (self.cfg.negatives,), generator=gen).to(tgt.device)
            pos_logit = (h * model.item(tgt)).sum(-1, keepdim=True)
            # uniform negatives: no log-Q correction needed; a negative that is the row's target is not one
            neg_logit = (h @ model.item(neg).T).masked_fill(neg[None, :] == tgt[:, None], -math.inf)
            logits = torch.cat([pos_logit, neg_logit], 1)
            return F.cross_entropy(logits, torch.zeros(len(tgt), dtype=torch.long, device=tgt.device))
        neg = torch.randint(1, n_items + 1, (tgt.shape[0], self.cfg.negatives), generator=gen).to(tgt.device)
        pos_logit = (h * model.item(tgt)).sum(-1)
        neg_logit = (h[:, None, :] * model.item(neg)).sum(-1)
        return F.binary_cross_entropy_with_logits(pos_logit, torch.ones_like(pos_logit)) + F.binary_cross_entropy_with_logits(
            neg_logit, torch.zeros_like(neg_logit)
        )

    # -- scoring ---------------------------------------------------------------------------------

    @torch.no_grad()
    def score_many(self, histories: Sequence[Sequence[str]], candidates: Sequence[Sequence[str]], batch_size: int = 512) -> list[list[float]]:
        """Scores per candidate; -inf for items not seen in training. A history with no known item
        gives every candidate a score of 0 (the incoming order survives)."""
        if self.model is None:
            raise RuntimeError("SASRec is not fitted; call fit() first")
        model = self.model
        model.eval()
        out: list[list[float]] = []
        emb = model.item.weight
        for start in range(0, len(histories), batch_size):
            hs = [self._encode_history(h) for h in histories[start : start + batch_size]]
            width = max([len(h) for h in hs] + [1])  # positions count from the end: no need to pad to L
            seq = torch.tensor([[0] * (width - len(h)) + h for h in hs], dtype=torch.long, device=self.device)
            last = model(seq)[:, -1] if len(hs) else None
            for j, cands in enumerate(candidates[start : start + batch_size]):
                ids = [self.vocab.get(c, 0) for c in cands]
                if not hs[j]:
                    out.append([0.0 if i else -math.inf for i in ids])
                    continue
                vals = (emb[torch.tensor(ids, dtype=torch.long, device=self.device)] @ last[j]).tolist()
                out.append([v if i else -math.inf for v, i in zip(vals, ids)])
        return out

    def rank_many(self, histories: Sequence[Sequence[str]], candidates: Sequence[Sequence[str]]) -> list[list[int]]:
        return [order_by_scores(s) for s in self.score_many(histories, candidates)]

    def rank(self, history: list[str], candidates: list[str]) -> list[int]:
        return self.rank_many([history], [candidates])[0]

    def config(self) -> dict:
        return asdict(self.cfg)
