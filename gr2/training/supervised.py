"""The supervised stages' step (mid-training, SFT): the weighted next-token loss over packed rows.

`LmLoss` is the hook the shared worker loop (loop.py) calls once per optimizer step: it takes
`grad_accum` micro-batches from the worker's Ray Data shard (passing over it again and again until the
step budget is spent), and after a restart skips the micro-batches trained on before it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from gr2.platform.precision import cpu_autocast
from gr2.training.engines import peak_mem_mb

if TYPE_CHECKING:
    from gr2.training.loop import LoopSettings, WorkerRun

METRIC_FIELDS = ["step", "epoch", "loss", "lr", "tokens_per_s", "tokens", "peak_mem_mb", "wall_s"]


def loss_positions(labels: torch.Tensor) -> torch.Tensor | None:
    """The positions whose logits some row's loss reads (position p predicts token p + 1), for the
    model's `logits_to_keep`; None when that is every position. An SFT row's prompt carries no loss, and
    the output layer over a 49k vocabulary is a sixth of a 135M model's forward FLOPs, so computing it
    only where the answers are saves that much, and the fp32 logits of the prompt are never written."""
    keep = (labels[:, 1:] != -100).any(0).nonzero().squeeze(-1)
    return keep if 0 < len(keep) < labels.shape[1] - 1 else None


def weighted_lm_loss(logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor,
                     positions: torch.Tensor | None = None) -> torch.Tensor:
    """Next-token cross-entropy, each target token weighted; normalised by the number of target tokens
    (so a reasoning weight below 1 lowers the pull of reasoning tokens rather than rescaling the loss).
    `positions`: the logits are those of these positions only (`loss_positions`), else of every one."""
    if positions is None:
        logits, labels, weights = logits[:, :-1], labels[:, 1:], weights[:, 1:]
    else:
        labels, weights = labels[:, positions + 1], weights[:, positions + 1]
    logits, weights = logits.float(), weights.float()
    mask = labels != -100
    ce = torch.nn.functional.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), labels.clamp(min=0).reshape(-1), reduction="none"
    ).view_as(weights)
    return (ce * weights * mask).sum() / mask.sum().clamp(min=1)


class LmLoss:
    """The StageHook of mid-training and SFT (loop.StageHook)."""

    rl = False
    fields = METRIC_FIELDS
    tag = "train"
    tensorboard = ("loss", "lr", "tokens_per_s", "peak_mem_mb")

    def seed(self, s: LoopSettings, rank: int) -> int:
        return s.seed  # every rank the same: the data shards differ, not the model

    def prepare_model(self, model) -> None:
        model.config.use_cache = False  # a training forward never reuses keys and values

    def start(self, w: WorkerRun, shard, state: dict) -> None:
        self.micro, self.tokens = state["micro_batches"], state["tokens"]
        self.batches = self._micro_batches(w, shard, skip=self.micro)
        self.losses, self.window_tokens = [], 0

    def _micro_batches(self, w: WorkerRun, shard, skip: int):
        """Passes over the shard without end: every worker does one micro-batch per micro-step even when
        shards differ by a batch, so the collectives stay matched. The first `skip` were trained on
        before a restart."""
        while True:
            seen = 0
            for batch in shard.iter_torch_batches(batch_size=w.settings.batch_size):
                seen += 1
                if skip:
                    skip -= 1
                    continue
                yield batch
            if not seen:
                raise RuntimeError(f"worker {w.rank} received an empty data shard; use fewer workers or more data")

    def step(self, w: WorkerRun) -> None:
        """One optimizer step: `grad_accum` micro-batches (DeepSpeed steps the optimizer on the last)."""
        for _ in range(w.settings.grad_accum):
            self._micro_step(w, next(self.batches))

    def _micro_step(self, w: WorkerRun, batch: dict) -> None:
        s, engine, device = w.settings, w.engine, w.engine.device
        self.micro += 1
        # Rows are padded to the stage's row length; a batch whose rows are all shorter is cut to its
        # longest row (padding only ever trails), so no compute goes to columns of padding.
        width = int(batch["attention_mask"].sum(1).max())
        batch = {k: v[:, :width] for k, v in batch.items()}
        ids = batch["input_ids"].to(device)
        attn = batch["attention_mask"].to(device)
        labels = batch["labels"].to(device)
        keep = loss_positions(labels)
        extra = {} if keep is None else {"logits_to_keep": keep}
        with cpu_autocast(s.autocast and not w.use_gpu):
            if s.document_masking:  # every packed row carries position_ids (examples.pack)
                # Position ids that restart per example and no 2-D mask: transformers then builds a
                # block-diagonal causal mask, so packed examples never see each other (as at inference).
                # It only does so without a KV cache.
                out = engine(input_ids=ids, position_ids=batch["position_ids"].to(device), use_cache=False, **extra)
            else:
                out = engine(input_ids=ids, attention_mask=attn, **extra)
        loss = weighted_lm_loss(out.logits, labels, batch["weights"].to(device), keep)
        engine.backward(loss)
        engine.step()
        self.losses.append(loss.item())
        n_tok = int(attn.sum())
        self.window_tokens += n_tok
        self.tokens += n_tok * w.world

    def row(self, w: WorkerRun, seconds: float) -> dict:
        """The metrics of the steps since the last row (mean loss, throughput), then a new window."""
        row = {"epoch": round(self.micro / max(1, w.settings.micro_batches_per_epoch), 3),
               "loss": sum(self.losses) / len(self.losses), "tokens_per_s": self.window_tokens / max(seconds, 1e-9),
               "tokens": self.tokens, "peak_mem_mb": peak_mem_mb(w.use_gpu)}
        self.losses, self.window_tokens = [], 0
        return row

    def progress(self) -> dict:
        """What a checkpoint records for the resumed run to skip and count on from."""
        return {"micro_batches": self.micro, "tokens": self.tokens}
