"""Balanced codes: capacity-constrained assignment, Sinkhorn prices, dead-code reset, the spill step,
the text proxy's encoder, and a 20k-item proxy on which balanced prices beat the old default.

Real torch/numpy/sklearn, CPU-only, seconds.
"""

import json

import numpy as np
import pytest
import torch

from gr2.tokenizer import balanced, collisions, proxy, spill
from gr2.tokenizer.rqvae import RQVAE, RQVAEConfig, encode_codes, init_codebooks, train_rqvae, unique_fraction, utilization

torch.set_num_threads(1)


def skewed(n=4000, dim=8, codes=32, seed=0):
    """Most points packed near the origin: plain argmin leaves many codes empty and a few full."""
    g = torch.Generator().manual_seed(seed)
    x = torch.cat([torch.randn(int(n * 0.8), dim, generator=g) * 0.2, torch.randn(n - int(n * 0.8), dim, generator=g)])
    e = torch.randn(codes, dim, generator=g)
    return balanced.sq_distances(x, e)


# -- capacity-constrained assignment ---------------------------------------------------------------
@pytest.mark.parametrize(
    "capacity, unplaced",
    [
        (125, 0),  # 32 x 125 = 4000: exactly full
        (200, 0),
        (100, 800),  # 3,200 places for 4,000 items
        ([0] * 16 + [250] * 16, 0),  # per-code capacities; half the codes closed
    ],
)
def test_capacity_assign_respects_capacities(capacity, unplaced):
    d = skewed()
    a = balanced.capacity_assign(d, capacity)
    cap = torch.as_tensor(capacity).expand(32)
    counts = torch.bincount(a[a >= 0], minlength=32)
    assert (counts <= cap).all()
    assert int((a < 0).sum()) == unplaced
    assert torch.equal(a, balanced.capacity_assign(d, capacity))  # deterministic


def test_capacity_assign_keeps_nearest_when_there_is_room():
    d = skewed()
    assert torch.equal(balanced.capacity_assign(d, len(d)), d.argmin(1))


def test_balanced_kmeans_clusters_hold_at_most_n_over_k():
    g = torch.Generator().manual_seed(0)
    x = torch.cat([torch.randn(900, 4, generator=g) * 0.1, torch.randn(100, 4, generator=g) + 3])
    centers = balanced.balanced_kmeans(x, 10, 5, x[:10].clone())
    counts = torch.bincount(balanced.capacity_assign(balanced.sq_distances(x, centers), 100), minlength=10)
    assert counts.tolist() == [100] * 10


# -- Sinkhorn and prices ---------------------------------------------------------------------------
def test_sinkhorn_prices_make_a_skewed_assignment_near_uniform():
    d = skewed()
    mean = len(d) / d.shape[1]
    plain = torch.bincount(d.argmin(1), minlength=32)
    sk = torch.bincount(balanced.balanced_argmin(d, balanced.sinkhorn_prices(d, iters=50)), minlength=32)
    priced = torch.bincount(balanced.balanced_argmin(d, balanced.balanced_prices(d)), minlength=32)
    assert plain.max() > 3 * mean and plain.min() < 0.1 * mean
    assert sk.max() < plain.max() and (sk == 0).sum() == 0
    assert priced.max() <= 1.1 * mean and priced.min() >= 0.8 * mean


def test_online_prices_move_towards_equal_counts():
    d = skewed()
    prices = torch.zeros(32)
    for _ in range(300):
        balanced.update_prices(prices, d, balanced.balanced_argmin(d, prices), rate=0.5)
    counts = torch.bincount(balanced.balanced_argmin(d, prices), minlength=32)
    assert counts.max() < torch.bincount(d.argmin(1), minlength=32).max() / 2
    assert abs(float(prices.mean())) < 1e-4


# -- dead-code reset -------------------------------------------------------------------------------
@pytest.mark.parametrize("threshold, revived", [(0.0, False), (0.5, True)])
def test_dead_code_reset_revives_unused_codes(threshold, revived):
    x = proxy.clustered_embeddings(2000, 16, seed=1)
    cfg = RQVAEConfig(input_dim=16, hidden_dims=(32,), latent_dim=8, levels=2, codes=16, dead_code_threshold=threshold)
    torch.manual_seed(0)
    model = init_codebooks(RQVAE(cfg), x)
    model.codebooks.data[0, 8:] = 50.0  # half of level 0 far from every residual: dead
    model.ema_count[0, 8:] = 0.01  # EMA state agrees: nearly no items, centroid far away
    model.ema_sum[0, 8:] = 0.5
    assert utilization(encode_codes(model, x), 16)[0] == 0.5
    model.train()
    with torch.no_grad():
        for start in range(0, 2000, 100):
            model(torch.as_tensor(x[start : start + 100]))
    util = utilization(encode_codes(model, x), 16)[0]
    assert (util == 1.0) if revived else (util == 0.5)


# -- prices in the model ---------------------------------------------------------------------------
def test_prices_are_saved_loaded_and_old_configs_still_load(tmp_path):
    from safetensors.torch import load_file, save_file

    x = proxy.clustered_embeddings(3000, 16)
    cfg = RQVAEConfig(input_dim=16, hidden_dims=(32,), latent_dim=8, levels=3, codes=16, balance="prices")
    model, _ = train_rqvae(x, cfg, epochs=1, batch_size=256, log_every=0)
    assert model.code_bias.abs().sum() > 0
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp_path / "m.safetensors"))
    again = RQVAE(RQVAEConfig(**json.loads(json.dumps(cfg.to_dict()))))
    again.load_state_dict(load_file(str(tmp_path / "m.safetensors")))
    assert torch.equal(encode_codes(again, x), encode_codes(model, x))
    old = {k: v for k, v in cfg.to_dict().items() if k not in ("init", "init_max_items", "balance", "balance_levels", "price_rate")}
    legacy = RQVAE(RQVAEConfig(**old))
    assert legacy.code_bias is None and "code_bias" not in legacy.state_dict()


@pytest.mark.parametrize("kw, message", [({"balance": "sinkhorn"}, "balance"), ({"init": "x"}, "init"),
                                         ({"balance_levels": "middle"}, "balance_levels"), ({"price_rate": -1.0}, "price_rate")])
def test_balance_options_are_validated(kw, message):
    with pytest.raises(ValueError, match=message):
        RQVAEConfig(input_dim=4, **kw)


# -- spill ---------------------------------------------------------------------------------------
def test_spill_empties_overfull_groups_and_never_moves_kept_items():
    C, L = 8, 3
    rng = np.random.default_rng(0)
    spread = rng.normal(size=(400, 8))
    tight = rng.normal(size=(1, 8)) + 0.01 * rng.normal(size=(40, 8))  # 40 near-copies: one prefix
    x = np.concatenate([spread, tight]).astype(np.float32)
    cfg = RQVAEConfig(input_dim=8, hidden_dims=(16,), latent_dim=8, levels=L, codes=C, balance="prices")
    model, _ = train_rqvae(x, cfg, epochs=2, batch_size=64, log_every=0)
    codes = encode_codes(model, x).numpy()
    keep = np.zeros(len(x), bool)
    keep[400:403] = True  # three of the copies were assigned (distinct SIDs) in an earlier run
    codes[400:403, L - 1] = [0, 1, 2]
    movers = spill.movers_mask(codes, C, keep)
    assert movers.sum() >= 30 and not movers[keep].any()
    new, moved = spill.spill(codes, movers, spill.residuals(model, x[movers], L - 2), model)
    assert (new[~movers] == codes[~movers]).all()  # only movers change, and only below the first L-2 codes
    assert (new[:, : L - 2] == codes[:, : L - 2]).all() and moved.sum() > 0
    _, counts = np.unique(new[:, : L - 1], axis=0, return_counts=True)
    assert counts.max() <= C
    final, _, overflow = collisions.redraw_last_level(new, C, seed=0, keep=keep)
    assert not overflow and unique_fraction(final) == 1.0


# -- the text proxy --------------------------------------------------------------------------------
def test_text_embeddings_equal_the_sklearn_pipeline():
    from sklearn.feature_extraction.text import TfidfTransformer

    cat = proxy.text_catalog(300, seed=3)
    titles = [cat.title(i) for i in range(300)]
    assert len(set(titles)) > 250 and all(len(t.split()) >= 4 for t in titles)
    fast = proxy.text_embeddings(cat, dim=32, n_features=2**14, idf_items=300, seed=0)
    counts = proxy._vectorizer(2**14).transform(titles)
    tfidf = TfidfTransformer(norm=None).fit_transform(counts)
    proj = np.random.default_rng([0, 0x9C0]).standard_normal((2**14, 32), dtype=np.float32) / np.sqrt(32)
    ref = np.asarray(tfidf @ proj, np.float32)
    ref /= np.linalg.norm(ref, axis=1, keepdims=True)
    assert np.allclose(fast, ref, atol=1e-5)
    same_family = cat.family[:, None] == cat.family[None, :]
    sims = fast @ fast.T
    assert sims[same_family & ~np.eye(300, dtype=bool)].mean() > sims[~same_family].mean() + 0.3


# -- a small proxy: the old default against balanced prices -------------------------------------------
def test_balanced_prices_use_every_first_level_code_and_raise_uniqueness():
    # Measured 2026-12-04: old default 0.25 utilization / 0.665 unique; prices 1.0 / 0.797 (about 13 s).
    x = proxy.clustered_embeddings(20_000, 64)
    out = {}
    for name, kw in {"old": {}, "prices": {"balance": "prices", "dead_code_threshold": 0.5}}.items():
        cfg = RQVAEConfig(input_dim=64, hidden_dims=(256,), latent_dim=32, levels=3, codes=256, seed=0, **kw)
        model, _ = train_rqvae(x, cfg, epochs=3, batch_size=512, log_every=0)
        codes = encode_codes(model, x).numpy()
        out[name] = (utilization(codes, 256)[0], unique_fraction(codes))
    assert out["prices"][0] == 1.0 and out["old"][0] < 0.5, out
    assert out["prices"][1] > out["old"][1] + 0.08, out
