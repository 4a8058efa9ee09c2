"""DAPO pieces checked against hand-computed values."""

import math

import pytest
import torch

from gr2.training.dapo import (
    combine_stats,
    dapo_loss,
    dynamic_sampling_mask,
    group_advantages,
    keep_group,
    overlong_mask,
    overlong_penalty,
    token_entropy,
)


@pytest.mark.parametrize(
    "rewards",
    [
        [0.0, 1.0],  # two answers
        [0.3, -0.1, 0.5, 0.2],  # mixed signs
        [[1.0, 0.0, 0.0, 0.0], [0.2, 0.4, 0.6, 0.8]],  # batch of groups [B, G]
    ],
)
def test_advantages_zero_mean_unit_std_per_group(rewards):
    adv = group_advantages(torch.tensor(rewards))
    assert torch.allclose(adv.mean(dim=-1), torch.zeros(adv.shape[:-1]), atol=1e-6)
    assert torch.allclose(adv.std(dim=-1, correction=0), torch.ones(adv.shape[:-1]), atol=1e-4)


def test_advantages_hand_computed():
    # mean 0.5, population std 0.5 -> -1, +1
    assert torch.allclose(group_advantages(torch.tensor([0.0, 1.0]), eps=0.0), torch.tensor([-1.0, 1.0]))


@pytest.mark.parametrize(
    "rewards, keep",
    [
        ([0.2, 0.2, 0.2, 0.2], False),  # all equal: no signal
        ([0.0, 0.0, 0.0, 0.0], False),  # all zero (e.g. every answer invalid)
        ([0.2, 0.2, 0.2, 0.3], True),  # one differs
    ],
)
def test_keep_group(rewards, keep):
    assert keep_group(torch.tensor(rewards)) is keep


def test_all_equal_group_gives_zero_advantage_and_is_dropped():
    rewards = torch.tensor([[0.2, 0.2, 0.2], [0.0, 0.5, 1.0], [1.0, 1.0, 1.0]])
    adv = group_advantages(rewards)
    assert torch.equal(adv[0], torch.zeros(3)) and torch.equal(adv[2], torch.zeros(3))
    assert dynamic_sampling_mask(rewards).tolist() == [False, True, False]


def test_dynamic_sampling_mask_needs_2d():
    with pytest.raises(ValueError):
        dynamic_sampling_mask(torch.tensor([1.0, 2.0]))


def _one_token_loss(ratio, adv, **kw):
    logp_old = torch.zeros(1, 1)
    logp_new = torch.full((1, 1), math.log(ratio))
    return dapo_loss(logp_new, logp_old, torch.tensor([adv]), torch.ones(1, 1), **kw)


@pytest.mark.parametrize(
    "ratio, adv, expected_loss, clipped",
    [
        (1.5, 1.0, -1.28, True),  # positive advantage: capped at 1 + eps_high = 1.28
        (0.5, -1.0, 0.8, True),  # negative advantage: floored at 1 - eps_low = 0.8 -> -min(-0.5, -0.8)
        (1.5, -1.0, 1.5, False),  # negative advantage, ratio up: unclipped (pessimistic side)
        (0.5, 1.0, -0.5, False),  # positive advantage, ratio down: unclipped
        (1.25, 2.0, -2.5, False),  # inside 1.28: clip-higher leaves room a symmetric 0.2 would not
        (0.75, -2.0, 1.6, True),  # 0.75 < 0.8: clipped at 0.8 * 2
    ],
)
def test_clip_higher_is_asymmetric(ratio, adv, expected_loss, clipped):
    loss, stats = _one_token_loss(ratio, adv)
    assert loss.item() == pytest.approx(expected_loss, abs=1e-5)
    assert stats["clip_fraction"] == (1.0 if clipped else 0.0)


def test_symmetric_clip_would_cut_what_clip_higher_keeps():
    loss_sym, stats = _one_token_loss(1.25, 1.0, eps_low=0.2, eps_high=0.2)
    assert loss_sym.item() == pytest.approx(-1.2) and stats["clip_fraction"] == 1.0


def test_token_level_aggregation_differs_from_sample_mean():
    # ratio 1 everywhere -> per-token loss = -A.
    # sample 0: A=2, 1 valid token; sample 1: A=-1, 3 valid tokens.
    # token-level: (-2 + 3 * 1) / 4 = 0.25; per-sample mean: (-2 + 1) / 2 = -0.5
    logp = torch.zeros(2, 3)
    mask = torch.tensor([[1, 0, 0], [1, 1, 1]], dtype=torch.bool)
    loss, stats = dapo_loss(logp, logp, torch.tensor([2.0, -1.0]), mask)
    assert loss.item() == pytest.approx(0.25)
    assert loss.item() != pytest.approx(-0.5)
    assert stats["n_tokens"] == 4.0


def test_mask_excludes_padding():
    mask = torch.tensor([[1, 1, 0, 0]], dtype=torch.bool)
    old = torch.zeros(1, 4)
    clean = torch.zeros(1, 4)
    junk = torch.tensor([[0.0, 0.0, 50.0, float("-inf")]])  # garbage where padded
    loss_clean, _ = dapo_loss(clean, old, torch.tensor([1.0]), mask)
    junk.requires_grad_(True)
    loss_junk, stats = dapo_loss(junk, old, torch.tensor([1.0]), mask)
    assert loss_junk.item() == pytest.approx(loss_clean.item())
    assert stats["ratio_mean"] == pytest.approx(1.0) and stats["clip_fraction"] == 0.0
    loss_junk.backward()
    assert torch.isfinite(junk.grad).all() and junk.grad[0, 2:].abs().sum() == 0


def test_gradient_flows_to_logp_new():
    logp_new = torch.tensor([[-1.0, -2.0]], requires_grad=True)
    logp_old = logp_new.detach().clone()
    loss, _ = dapo_loss(logp_new, logp_old, torch.tensor([1.0]), torch.ones(1, 2))
    loss.backward()
    # ratio 1, d(-r A)/d logp = -A * r = -1, divided by 2 tokens
    assert torch.allclose(logp_new.grad, torch.tensor([[-0.5, -0.5]]))


@pytest.mark.parametrize(
    "ref_shift, kl_coef, kl_positive, loss_moves",
    [
        (0.0, 0.1, False, False),  # reference equals the policy: k3 = 0
        (0.5, 0.0, True, False),  # policies differ but kl_coef 0: reported, not in the loss
        (0.5, 0.1, True, True),  # policies differ and KL on: positive, in the loss
    ],
)
def test_kl_term(ref_shift, kl_coef, kl_positive, loss_moves):
    logp_new = torch.tensor([[-1.0, -2.0, -0.5]])
    logp_ref = logp_new + ref_shift
    mask = torch.ones(1, 3)
    base, _ = dapo_loss(logp_new, logp_new, torch.tensor([1.0]), mask)
    loss, stats = dapo_loss(logp_new, logp_new, torch.tensor([1.0]), mask, logp_ref=logp_ref, kl_coef=kl_coef)
    k3 = math.exp(ref_shift) - ref_shift - 1
    assert stats["kl"] == pytest.approx(k3, abs=1e-6)
    assert (stats["kl"] > 0) is kl_positive
    assert (abs(loss.item() - base.item()) > 1e-9) is loss_moves
    assert loss.item() == pytest.approx(base.item() + kl_coef * k3, abs=1e-6)


def test_kl_is_zero_without_reference():
    _, stats = dapo_loss(torch.zeros(1, 2), torch.zeros(1, 2), torch.tensor([1.0]), torch.ones(1, 2), kl_coef=0.5)
    assert stats["kl"] == 0.0


@pytest.mark.parametrize(
    "length, expected",
    [
        (10, 0.0),  # short
        (80, 0.0),  # exactly max_len - cache_len
        (90, -0.5),  # half way into the cache window
        (100, -1.0),  # exactly max_len
        (130, -1.0),  # beyond max_len
    ],
)
def test_overlong_penalty(length, expected):
    assert overlong_penalty([length], max_len=100, cache_len=20).item() == pytest.approx(expected)


def test_overlong_penalty_without_cache_is_a_step():
    assert overlong_penalty([100, 101], max_len=100, cache_len=0).tolist() == [0.0, -1.0]


def test_overlong_mask_drops_truncated_samples_from_the_loss():
    keep = overlong_mask(torch.tensor([False, True]))
    assert keep.tolist() == [True, False]
    mask = torch.ones(2, 2, dtype=torch.bool) & keep[:, None]
    loss, stats = dapo_loss(torch.zeros(2, 2), torch.zeros(2, 2), torch.tensor([1.0, -5.0]), mask)
    assert loss.item() == pytest.approx(-1.0) and stats["n_tokens"] == 2.0


@pytest.mark.parametrize(
    "logits, expected",
    [
        ([[[0.0, 0.0, 0.0, 0.0]]], math.log(4)),  # uniform over 4
        ([[[0.0, -float("inf"), -float("inf")]]], 0.0),  # one-hot (masked vocab)
    ],
)
def test_token_entropy(logits, expected):
    assert token_entropy(torch.tensor(logits), torch.ones(1, 1)) == pytest.approx(expected, abs=1e-6)


def test_token_entropy_ignores_padding():
    logits = torch.tensor([[[0.0, 0.0], [10.0, -10.0]]])  # valid token uniform, pad near one-hot
    assert token_entropy(logits, torch.tensor([[1, 0]])) == pytest.approx(math.log(2), abs=1e-6)


@pytest.mark.parametrize("text, expected", [
    ('{"reasoning":"1. likes \\"Nails\\"",', '1. likes "Nails"'),
    ('{"reasoning":"broken \\q escape",', "broken \\q escape"),
    ('{"reasoning": "spaced",', "spaced"),
    ("no json at all", "no json at all"),
])
def test_free_reasoning_recovers_the_reasoning_of_a_sampled_answer(text, expected):
    from gr2.training.rl import free_reasoning

    assert free_reasoning(text) == expected


@pytest.mark.parametrize("generated, expected", [
    ([5, 6, 7, 8], True),  # four new tokens, the cap: the reasoning was cut (overlong)
    ([5, 6, 2, 0], False),  # end-of-text before the cap: short, not overlong
    ([5, 6, 0, 0], False),  # padded after a stop string or another answer's end
    ([5, 6, 7], False),  # shorter than the cap
])
def test_only_a_reasoning_that_hit_the_cap_counts_as_truncated(generated, expected):
    # an early end-of-text used to count as truncated too, so a policy that learned to stop early got
    # no gradient at all and stayed there (measured: DAPO at lr 3e-4 on Beauty, entropy nan from step 5)
    from gr2.training.rl import hit_cap

    assert hit_cap(generated, eos_id=2, pad_id=0, max_new_tokens=4) is expected


@pytest.mark.parametrize("stats, entropy, loss", [
    # token-weighted entropy: 30 tokens at 1.0 and 10 at 3.0
    ([{"entropy": 1.0, "n_tokens": 30.0, "loss": 0.2}, {"entropy": 3.0, "n_tokens": 10.0, "loss": 0.4}], 1.5, 0.3),
    # a micro-batch whose answers were all cut by overlong filtering has no tokens and no entropy
    ([{"entropy": float("nan"), "n_tokens": 0.0, "loss": 0.0}, {"entropy": 2.0, "n_tokens": 5.0, "loss": 0.5}], 2.0, 0.25),
    ([{"entropy": float("nan"), "n_tokens": 0.0, "loss": 0.0}], float("nan"), 0.0),
])
def test_combine_stats_weights_entropy_by_tokens_and_skips_empty_batches(stats, entropy, loss):
    out = combine_stats(stats)
    assert (math.isnan(out["entropy"]) and math.isnan(entropy)) or out["entropy"] == pytest.approx(entropy)
    assert out["loss"] == pytest.approx(loss)


# Why the naive-vs-conditional ablation needs answers whose validity varies: when every answer of a
# group is a valid permutation (constrained rollouts), the naive format bonus is one constant added to
# every reward, and group normalisation removes it. Only the conditional gate, or a group that mixes
# valid and invalid answers, gives the format term any weight in the advantages.
COPY, PROMOTE, DEMOTE = list(range(10)), [3, 0, 1, 2, 4, 5, 6, 7, 8, 9], [0, 1, 2, 4, 3, 5, 6, 7, 8, 9]


@pytest.mark.parametrize(
    "orders, naive_equals_promotion_only, gated_equals_promotion_only",
    [
        ([COPY, PROMOTE, DEMOTE, PROMOTE], True, False),  # all valid: the naive bonus cancels
        ([COPY, COPY, DEMOTE, PROMOTE], True, False),
        ([COPY, None, None, PROMOTE], False, False),  # validity varies: the bonus matters
    ],
)
def test_naive_format_bonus_cancels_in_all_valid_groups(orders, naive_equals_promotion_only, gated_equals_promotion_only):
    from gr2.training.rewards import score_response

    labels = [0, 0, 0, 1, 0, 0, 0, 0, 0, 0]  # target at input position 3

    def advantages(alpha: float, conditional: bool) -> torch.Tensor:
        rewards = [score_response(o, labels, alpha=alpha, conditional=conditional, invalid_penalty=-1.0).total for o in orders]
        return group_advantages(torch.tensor(rewards))

    promotion_only = advantages(0.0, False)
    assert torch.allclose(advantages(0.2, False), promotion_only, atol=1e-5) == naive_equals_promotion_only
    assert torch.allclose(advantages(0.2, True), promotion_only, atol=1e-5) == gated_equals_promotion_only


def test_a_steps_row_describes_every_rollout_not_only_the_groups_kept_for_the_update():
    """A group whose answers all got one reward is dropped by dynamic sampling, but it is still what the
    policy wrote: a policy that copies the slate in every answer must show valid 100%, copies 100%, kept 0."""
    from gr2.training.rl import DapoStep

    def group(rewards, valid, copy):
        parts = [{"promotion": 0.0, "format": 1.0, "format_counted": 1.0, "valid": v, "copy": c} for v, c in zip(valid, copy)]
        return {"rewards": torch.tensor(rewards), "parts": parts, "lengths": [10] * len(rewards), "truncated": [False] * len(rewards)}

    copies = group([0.5, 0.5], [1.0, 1.0], [1.0, 1.0])  # no variance: dropped
    mixed = group([1.0, 0.0], [1.0, 0.0], [0.0, 0.0])  # kept
    step = object.__new__(DapoStep)
    step.rollouts, step.groups, step.stats = [copies, mixed], [mixed], {"loss": 0.1}
    row = step.row(None, 1.0)
    assert row["valid_rate"] == 0.75 and row["order_copy_rate"] == 0.5 and row["kept_group_ratio"] == 0.5
    assert row["reward"] == pytest.approx(0.5) and row["loss"] == 0.1
    step.rollouts, step.groups, step.stats = [copies], [], {}
    row = step.row(None, 1.0)
    assert (row["valid_rate"], row["order_copy_rate"], row["kept_group_ratio"], row["response_len"]) == (1.0, 1.0, 0.0, 10.0)


def test_a_resumed_rl_run_goes_on_through_the_slates_and_draws_afresh():
    """After a restart the shard skips the slates taken before it (passes wrap around), and every step
    samples with its own seed: a paused run's turns once replayed the same slates and draws."""
    import ray

    from gr2.platform.ray_cluster import ensure_ray
    from gr2.training.rl import _cycle, step_seed

    ensure_ray(num_cpus=2)  # the suite's one local Ray, as the training jobs start it
    ds = ray.data.from_items([{"i": i} for i in range(5)])
    fresh = _cycle(ds)
    assert [next(fresh)["i"] for _ in range(7)] == [0, 1, 2, 3, 4, 0, 1]
    resumed = _cycle(ds, skip=7)
    assert [next(resumed)["i"] for _ in range(4)] == [2, 3, 4, 0]
    assert len({step_seed(7, step) for step in range(100)}) == 100
    assert step_seed(7, 0) == 7 and step_seed(8, 0) != step_seed(7, 1)
