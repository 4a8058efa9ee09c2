"""RQ-VAE in torch: item embedding -> L codes of C entries each (the raw semantic ID).

Encoder MLP -> latent z; residual quantization: level l picks the nearest entry of codebook l to the
residual left by levels < l; decoder MLP reconstructs the input from the summed quantized vector
(straight-through estimator). Codebooks are initialized by k-means++ with a few Lloyd iterations on
each level's residuals, then trained either by EMA (cluster sizes and sums with decay, Laplace
smoothing, optional dead-code reset) or, when `ema=False`, by gradient on the codebook loss
||sg(r) - e||^2 (the "RQ-VAE without EMA" ablation). With `balance='prices'` a level picks
argmin ||r - e_c||^2 - b_c with per-code prices b that keep its codes evenly used (balanced.py).

loss = recon MSE + commitment * sum_l ||r_l - sg(e_l)||^2 (+ sum_l ||sg(r_l) - e_l||^2 when not EMA)
       (+ diversity_weight * mean_l (1 - H(mean soft assignment) / log C)).

This module is pure torch/numpy and single-process; distributed training wraps `train_rqvae`'s pieces.
"""

# Why one module of about 400 lines: the model, its k-means++ codebook init, its inference helpers and its
# training loop are one algorithm around the same codebook internals (RQVAE._assign, the EMA update, the
# balanced prices), and benchmarks reach all of them as `rqvae.<name>`. Cut at "model | fitting", each half
# would need the other's privates; the metrics, which did not, already moved out (metrics.py).

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from gr2.platform.sids import MAX_LEVELS
from gr2.tokenizer import balanced
from gr2.tokenizer.metrics import (  # noqa: F401  (re-exported: the metrics used to live here)
    code_metrics,
    largest_prefix_group,
    perplexity,
    unique_fraction,
    utilization,
)


@dataclass
class RQVAEConfig:
    input_dim: int
    hidden_dims: tuple[int, ...] = (512, 256)
    latent_dim: int = 64
    levels: int = 4
    codes: int = 256
    ema: bool = True
    decay: float = 0.99
    commitment: float = 0.25
    dead_code_threshold: float = 0.0  # min EMA cluster size (per batch) before a code is re-seeded; 0 disables
    diversity_weight: float = 0.0
    diversity_temperature: float = 1.0  # soft assignment = softmax(-distance / temperature)
    kmeans_iters: int = 20
    eps: float = 1e-5  # Laplace smoothing of EMA cluster sizes
    seed: int = 0
    # Balanced codes (gr2/tokenizer/balanced.py). The defaults here are the historical behaviour, so a
    # saved config.json without these keys loads as it was trained.
    init: str = "kmeans++"  # or "balanced": capacity-constrained Lloyd after the k-means++ seeding
    init_max_items: int = 0  # k-means init on a seeded sample of this many items; 0 = all
    balance: str = "none"  # or "prices": argmin of distance minus a learned per-code price
    balance_levels: str = "all"  # "all", "first" or "last": the levels that get prices
    price_rate: float = 0.1  # online price step per training batch (0: prices only from calibration)

    def __post_init__(self) -> None:
        self.hidden_dims = tuple(self.hidden_dims)
        self.validate()

    def validate(self) -> None:
        def positive_int(name: str, value, minimum: int = 1) -> None:
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise ValueError(f"RQVAEConfig.{name} must be an integer >= {minimum}, got {value!r}")

        positive_int("input_dim", self.input_dim)
        positive_int("latent_dim", self.latent_dim)
        positive_int("levels", self.levels)
        positive_int("codes", self.codes, 2)
        positive_int("kmeans_iters", self.kmeans_iters, 0)
        if self.levels > MAX_LEVELS:
            raise ValueError(
                f"RQVAEConfig.levels must be at most {MAX_LEVELS} (one SID letter per level), got {self.levels}"
            )
        for h in self.hidden_dims:
            if isinstance(h, bool) or not isinstance(h, int) or h < 1:
                raise ValueError(f"RQVAEConfig.hidden_dims must be positive integers, got {self.hidden_dims!r}")
        if not 0.0 < self.decay < 1.0:
            raise ValueError(f"RQVAEConfig.decay must be in (0, 1), got {self.decay}")
        for name in ("commitment", "dead_code_threshold", "diversity_weight"):
            if getattr(self, name) < 0:
                raise ValueError(f"RQVAEConfig.{name} must be >= 0, got {getattr(self, name)}")
        if self.diversity_temperature <= 0 or self.eps <= 0:
            raise ValueError("RQVAEConfig.diversity_temperature and eps must be > 0")
        positive_int("init_max_items", self.init_max_items, 0)
        for name, allowed in (("init", ("kmeans++", "balanced")), ("balance", ("none", "prices")), ("balance_levels", ("all", "first", "last"))):
            if getattr(self, name) not in allowed:
                raise ValueError(f"RQVAEConfig.{name} must be one of {allowed}, got {getattr(self, name)!r}")
        if self.price_rate < 0:
            raise ValueError(f"RQVAEConfig.price_rate must be >= 0, got {self.price_rate}")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["hidden_dims"] = list(self.hidden_dims)
        return d


def _mlp(dims: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(dims) - 2:
            layers.append(nn.SiLU())
    return nn.Sequential(*layers)


_sq_distances = balanced.sq_distances  # [n, C] squared distances between rows of x and e


class RQVAE(nn.Module):
    """Encoder, residual quantizer with L codebooks [L, C, D], decoder."""

    def __init__(self, cfg: RQVAEConfig):
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        self.encoder = _mlp([cfg.input_dim, *cfg.hidden_dims, cfg.latent_dim])
        self.decoder = _mlp([cfg.latent_dim, *reversed(cfg.hidden_dims), cfg.input_dim])
        L, C, D = cfg.levels, cfg.codes, cfg.latent_dim
        # Trained by gradient only in the no-EMA ablation; with EMA it is updated in place under no_grad.
        self.codebooks = nn.Parameter(torch.randn(L, C, D) * 0.1, requires_grad=not cfg.ema)
        self.register_buffer("ema_count", torch.ones(L, C))
        self.register_buffer("ema_sum", self.codebooks.detach().clone())
        self.register_buffer("initialized", torch.zeros((), dtype=torch.bool))
        if cfg.balance != "none":  # per-code prices: only models that use them carry (and load) them
            self.register_buffer("code_bias", torch.zeros(L, C))
        self.code_bias: torch.Tensor | None = getattr(self, "code_bias", None)
        self._reset_gen = torch.Generator().manual_seed(int(cfg.seed) * 1000003 + 17)

    # -- quantization -----------------------------------------------------------------------------
    def quantize(self, z: torch.Tensor, update: bool = False) -> dict:
        cfg = self.cfg
        residual = z
        zq = torch.zeros_like(z)
        codes, commit, codebook, diversity = [], z.new_zeros(()), z.new_zeros(()), z.new_zeros(())
        for level in range(cfg.levels):
            e = self.codebooks[level]
            with torch.no_grad():
                idx = self._assign(level, residual, e, update)
            q = e[idx]
            commit = commit + F.mse_loss(residual, q.detach())
            if not cfg.ema:
                codebook = codebook + F.mse_loss(q, residual.detach())
            if cfg.diversity_weight > 0:
                # Distances of the live residual keep the gradient path to the encoder (and to e without EMA).
                soft = torch.softmax(-_sq_distances(residual, e) / cfg.diversity_temperature, dim=1).mean(0)
                entropy = -(soft * torch.log(soft + 1e-12)).sum()
                diversity = diversity + (1 - entropy / math.log(cfg.codes))
            if update and cfg.ema:
                self._ema_update(level, residual.detach(), idx)
            zq = zq + q
            residual = residual - q.detach()
            codes.append(idx)
        return {
            "zq": zq,
            "codes": torch.stack(codes, 1),
            "commit": commit,
            "codebook": codebook,
            "diversity": diversity / cfg.levels,
        }

    def _priced(self, level: int) -> bool:
        which = {"all": level, "first": 0, "last": self.cfg.levels - 1}[self.cfg.balance_levels]
        return self.code_bias is not None and level == which

    @torch.no_grad()
    def _assign(self, level: int, residual: torch.Tensor, e: torch.Tensor, update: bool) -> torch.Tensor:
        d = _sq_distances(residual, e)
        if not self._priced(level):
            return d.argmin(1)
        idx = balanced.balanced_argmin(d, self.code_bias[level])
        if update and self.cfg.price_rate > 0:
            balanced.update_prices(self.code_bias[level], d, idx, self.cfg.price_rate)
        return idx

    @torch.no_grad()
    def _ema_update(self, level: int, r: torch.Tensor, idx: torch.Tensor) -> None:
        cfg = self.cfg
        C = cfg.codes
        counts = torch.bincount(idx, minlength=C).to(r.dtype)
        sums = torch.zeros(C, r.shape[1], dtype=r.dtype, device=r.device).index_add_(0, idx, r)
        self.ema_count[level].mul_(cfg.decay).add_(counts, alpha=1 - cfg.decay)
        self.ema_sum[level].mul_(cfg.decay).add_(sums, alpha=1 - cfg.decay)
        n = self.ema_count[level].sum()
        smoothed = (self.ema_count[level] + cfg.eps) / (n + C * cfg.eps) * n
        self.codebooks.data[level] = self.ema_sum[level] / smoothed[:, None]
        if cfg.dead_code_threshold > 0:
            dead = (self.ema_count[level] < cfg.dead_code_threshold).nonzero().flatten()
            if dead.numel():
                pick = torch.randint(r.shape[0], (dead.numel(),), generator=self._reset_gen).to(r.device)
                fresh = r[pick]
                self.codebooks.data[level, dead] = fresh
                self.ema_count[level, dead] = cfg.dead_code_threshold
                self.ema_sum[level, dead] = fresh * cfg.dead_code_threshold
                if self.code_bias is not None:
                    self.code_bias[level, dead] = 0.0

    # -- forward ----------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> dict:
        cfg = self.cfg
        z = self.encoder(x)
        out = self.quantize(z, update=self.training)
        z_st = z + (out["zq"] - z).detach()  # straight-through: decoder gradient flows to the encoder
        recon = self.decoder(z_st)
        out["recon_loss"] = F.mse_loss(recon, x)
        loss = out["recon_loss"] + cfg.commitment * out["commit"]
        if not cfg.ema:
            loss = loss + out["codebook"]
        if cfg.diversity_weight > 0:
            loss = loss + cfg.diversity_weight * out["diversity"]
        out["loss"] = loss
        out["recon"] = recon
        out["z"] = z
        return out


# -- data helpers ---------------------------------------------------------------------------------
def _as_tensor(x, cfg: RQVAEConfig, device=None) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x)
    if t.ndim != 2:
        raise ValueError(f"RQ-VAE input must be a 2-D array [items, dim], got shape {tuple(t.shape)}")
    if t.shape[1] != cfg.input_dim:
        raise ValueError(
            f"data has input_dim={t.shape[1]} but RQVAEConfig.input_dim={cfg.input_dim}; "
            "set rqvae input_dim to the embedding size"
        )
    t = t.to(dtype=torch.float32, device=device)
    if not torch.isfinite(t).all():
        raise ValueError("RQ-VAE input contains NaN or infinite values")
    return t


def _check_enough_items(n: int, cfg: RQVAEConfig) -> None:
    if n < cfg.codes:
        raise ValueError(
            f"fitting on {n} items needs at least C={cfg.codes} items; lower rqvae codes or add items"
        )


# -- k-means++ initialization ---------------------------------------------------------------------
def kmeans(x: torch.Tensor, k: int, iters: int, generator: torch.Generator) -> torch.Tensor:
    """k-means++ seeding then `iters` Lloyd iterations; deterministic given the generator. -> [k, D]."""
    n = x.shape[0]
    if n < k:
        raise ValueError(f"k-means on {n} points needs at least k={k} points")
    first = int(torch.randint(n, (1,), generator=generator))
    centers = [x[first]]
    closest = (x - x[first]).pow(2).sum(1)
    for _ in range(1, k):
        cumulative = closest.double().cumsum(0).cpu()
        total = float(cumulative[-1])
        if total > 0:  # D^2 sampling (searchsorted: no category limit, unlike torch.multinomial)
            u = torch.rand(1, generator=generator, dtype=torch.float64) * total
            j = min(int(torch.searchsorted(cumulative, u, right=True)), n - 1)
        else:  # fewer distinct points than k: any point will do
            j = int(torch.randint(n, (1,), generator=generator))
        centers.append(x[j])
        closest = torch.minimum(closest, (x - x[j]).pow(2).sum(1))
    c = torch.stack(centers)
    for _ in range(iters):
        assign = _sq_distances(x, c).argmin(1)
        counts = torch.bincount(assign, minlength=k).to(x.dtype)
        sums = torch.zeros_like(c).index_add_(0, assign, x)
        nonempty = counts > 0
        c = torch.where(nonempty[:, None], sums / counts.clamp_min(1)[:, None], c)  # empty clusters keep their center
    return c


@torch.no_grad()
def init_codebooks(model: RQVAE, x, max_items: int | None = None) -> RQVAE:
    """Fit each level's codebook by k-means++ on that level's residuals (after levels < l).

    Deterministic given `model.cfg.seed`. With `max_items` (default `cfg.init_max_items`, 0 = all), a
    seeded sample of that many rows is used. EMA state is reset to the fitted codebooks (cluster sizes
    normalised to a mean of 1 per code). `cfg.init='balanced'` runs capacity-constrained Lloyd
    iterations after the seeding; with prices, each level's prices are calibrated on the sample too.
    """
    cfg = model.cfg
    device = model.codebooks.device
    x = _as_tensor(x, cfg, device)
    _check_enough_items(x.shape[0], cfg)
    gen = torch.Generator().manual_seed(int(cfg.seed))
    max_items = max_items if max_items is not None else (cfg.init_max_items or None)
    if max_items is not None and x.shape[0] > max_items:
        _check_enough_items(max_items, cfg)
        x = x[torch.randperm(x.shape[0], generator=gen)[:max_items].to(device)]
    was_training = model.training
    model.eval()
    residual = model.encoder(x)
    for level in range(cfg.levels):
        level_gen = torch.Generator().manual_seed(int(cfg.seed) * 7919 + level)
        if cfg.init == "balanced":
            seeds = kmeans(residual, cfg.codes, 0, level_gen)
            centers = balanced.balanced_kmeans(residual, cfg.codes, cfg.kmeans_iters, seeds)
        else:
            centers = kmeans(residual, cfg.codes, cfg.kmeans_iters, level_gen)
        model.codebooks.data[level] = centers
        d = _sq_distances(residual, centers)
        if model._priced(level):
            model.code_bias[level] = balanced.balanced_prices(d, iters=30)  # a start: training and calibration refine them
        assign = balanced.balanced_argmin(d, model.code_bias[level] if model._priced(level) else None)
        counts = torch.bincount(assign, minlength=cfg.codes).to(centers.dtype)
        counts = counts / counts.mean()
        model.ema_count[level] = counts
        model.ema_sum[level] = centers * counts[:, None]
        residual = residual - centers[assign]
    model.initialized.fill_(True)
    model.train(was_training)
    return model


# -- inference ------------------------------------------------------------------------
@torch.no_grad()
def encode_codes(model: RQVAE, x, batch_size: int = 4096) -> torch.Tensor:
    """Argmin codes of every row, in eval mode (no EMA updates). -> LongTensor [n, L] on the CPU."""
    cfg = model.cfg
    device = model.codebooks.device
    x = _as_tensor(x, cfg, "cpu")
    was_training = model.training
    model.eval()
    out = []
    for start in range(0, x.shape[0], batch_size):
        z = model.encoder(x[start : start + batch_size].to(device))
        out.append(model.quantize(z, update=False)["codes"].cpu())
    model.train(was_training)
    if not out:
        return torch.zeros(0, cfg.levels, dtype=torch.long)
    return torch.cat(out).long()


@torch.no_grad()
def reconstruction_loss(model: RQVAE, x, batch_size: int = 4096) -> float:
    """Mean squared reconstruction error over all rows, in eval mode (no EMA updates)."""
    cfg = model.cfg
    device = model.codebooks.device
    x = _as_tensor(x, cfg, "cpu")
    was_training = model.training
    model.eval()
    total = 0.0
    for start in range(0, x.shape[0], batch_size):
        batch = x[start : start + batch_size].to(device)
        total += float(model(batch)["recon_loss"]) * batch.shape[0]
    model.train(was_training)
    return total / max(x.shape[0], 1)


# -- training -------------------------------------------------------------------------------------
def train_rqvae(
    x,
    cfg: RQVAEConfig,
    epochs: int = 20,
    batch_size: int = 256,
    lr: float = 1e-3,
    log_every: int = 1,
    device: str | torch.device | None = None,
    init_max_items: int | None = None,
    on_log=None,
) -> tuple[RQVAE, list[dict]]:
    """Train an RQ-VAE on x [n, input_dim] with Adam; deterministic given cfg.seed (on the CPU).

    The codebooks are k-means++ initialized first. `history` holds one dict per logged epoch (every
    `log_every` epochs and the last; epoch 0 is the state right after initialization) with mean
    losses over the epoch and the code metrics on all of x.
    """
    cfg.validate()
    if epochs < 0 or batch_size < 1 or lr <= 0:
        raise ValueError(f"need epochs >= 0, batch_size >= 1 and lr > 0; got {epochs}, {batch_size}, {lr}")
    device = torch.device(device or "cpu")
    data = _as_tensor(x, cfg, "cpu")
    n = data.shape[0]
    _check_enough_items(n, cfg)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(cfg.seed))
        model = RQVAE(cfg).to(device)
    init_codebooks(model, data, max_items=init_max_items)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=lr)
    gen = torch.Generator().manual_seed(int(cfg.seed) + 1)
    history: list[dict] = []

    def log(epoch: int, sums: dict, steps: int, seconds: float) -> None:
        row = {"epoch": epoch, **{k: v / steps for k, v in sums.items() if steps}, "seconds": seconds}
        row["eval_recon_loss"] = reconstruction_loss(model, data)
        row.update(code_metrics(encode_codes(model, data), cfg.codes))
        history.append(row)
        if on_log is not None:
            on_log(row)

    log(0, {}, 0, 0.0)
    model.train()
    for epoch in range(1, epochs + 1):
        t0 = time.perf_counter()
        sums = {"loss": 0.0, "recon_loss": 0.0, "commit": 0.0, "codebook": 0.0, "diversity": 0.0}
        steps = 0
        perm = torch.randperm(n, generator=gen)
        for start in range(0, n, batch_size):
            batch = data[perm[start : start + batch_size]].to(device)
            out = model(batch)
            opt.zero_grad(set_to_none=True)
            out["loss"].backward()
            opt.step()
            for k in sums:
                sums[k] += float(out[k].detach())
            steps += 1
        if epoch == epochs and model.code_bias is not None:  # final prices on the fit data, level by level
            balanced.calibrate_prices(model, data.to(device))
        if (log_every and epoch % log_every == 0) or epoch == epochs:
            log(epoch, sums, steps, time.perf_counter() - t0)
    model.eval()
    return model, history
