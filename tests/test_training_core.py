"""Pure parts of the training stage: examples, packing, mixture, SID tokens, loss, schedule, decoding."""

import json
import math

import numpy as np
import pytest
import torch

from gr2.models.generation import SidTrie, beam_search_sids
from gr2.models.lm import load_model
from gr2.models.text import Example, sequential, tokenize_example
from gr2.platform.sids import SID_BEGIN, parse_sid, sid_string, wrap
from gr2.rerank.catalog import CatalogItem, load_catalog
from gr2.training import engines, supervised
from gr2.training import examples as ex
from gr2.training import model as lm

ITEMS = [
    CatalogItem(f"i{n}", sid_string([n % 4, n // 4 % 4, n % 3]), f"Item number {n}", ("Beauty", ["Skin", "Hair"][n % 2]), ["Acme", "Zen"][n % 3 == 0])
    for n in range(12)
]


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    path = lm.build_small_model(tmp_path_factory.mktemp("m"), [i.title for i in ITEMS] * 20, vocab_size=300, hidden=32,
                                layers=1, heads=2, max_positions=256)
    model, tok = load_model(path)
    info = lm.add_sid_tokens(model, tok, levels=3, codes=4)
    return model, tok, info


def test_alignment_and_sequence_examples_never_use_eval_positions():
    alignment = ex.item_alignment(ITEMS[0])
    assert [a.task for a in alignment] == ["item_alignment"] * 2
    assert wrap(ITEMS[0].sid) in alignment[0].prompt and "Item number 0" in alignment[0].completion
    assert alignment[1].completion.strip() == wrap(ITEMS[0].sid)
    seq = ITEMS[:6]
    out = ex.sequence_examples(seq, ["train"] * 4 + ["valid", "test"], history_len=2)
    sequential = [e for e in out if e.task == "sequential"]
    assert len(sequential) == 3  # targets: train positions 1..3
    text = " ".join(e.prompt + e.completion for e in out)
    assert wrap(seq[4].sid) not in text and wrap(seq[5].sid) not in text
    assert sequential[-1].prompt.count(SID_BEGIN) == 2  # history_len
    persona = [e for e in out if e.task == "persona"][0]
    assert "Skin" in persona.completion and "Hair" in persona.completion


def test_candidate_listing_copies_the_prompts_list_into_an_answers_ranking():
    from gr2.rerank.prompt import build_rerank_messages, format_response, parse_response
    from gr2.rerank.slate import ItemText

    cands = ITEMS[:3]
    e = ex.candidate_listing(cands)
    assert e.task == "candidate_listing"
    user = build_rerank_messages([], [ItemText(c.item_id, c.sid, c.title) for c in cands])[1]["content"]
    listing_line = e.prompt.split("\n")[0]
    assert listing_line + "\n" in user, "the same line the re-rank prompt shows"
    answer = format_response("r", [c.sid for c in cands])
    assert e.completion.strip()[len('{"ranking":'):] in answer  # the ranking exactly as an answer writes it
    assert parse_response(e.completion, [c.sid for c in cands]).ranking == [c.sid for c in cands]


@pytest.mark.parametrize(
    "available, weights, expected",
    [
        ({"item_alignment": 100, "sequential": 1000, "persona": 100}, {"item_alignment": 1, "sequential": 1, "persona": 0.5},
         {"item_alignment": 100, "sequential": 100, "persona": 50}),
        ({"item_alignment": 100, "sequential": 10, "persona": 100}, {"item_alignment": 1, "sequential": 1, "persona": 0},
         {"item_alignment": 10, "sequential": 10, "persona": 0}),
        ({"item_alignment": 40, "sequential": 0, "persona": 5}, {"item_alignment": 1, "sequential": 1, "persona": 1},
         {"item_alignment": 5, "sequential": 0, "persona": 5}),
    ],
)
def test_mixture_counts_follow_weights(available, weights, expected):
    assert ex.mixture_counts(available, weights) == expected


def test_mixture_rejects_unknown_tasks_and_empty_mixtures():
    with pytest.raises(ValueError, match="unknown mid-training task"):
        ex.mixture_counts({"sequential": 3}, {"sequentail": 1})
    with pytest.raises(ValueError, match="no mid-training examples"):
        ex.mixture_counts({"sequential": 0}, {"sequential": 1})


def test_sid_tokens_are_single_tokens_and_initialised_at_the_mean(small):
    model, tok, info = small
    assert info["added"] == 3 * 4 + 2 and info["vocab_after"] == info["vocab_before"] + 14
    sid = wrap(ITEMS[5].sid)
    ids = tok(sid, add_special_tokens=False)["input_ids"]
    assert len(ids) == 5 and tok.decode(ids) == sid
    emb = model.get_input_embeddings().weight.detach()
    old, new = emb[: info["vocab_before"]], emb[info["vocab_before"] :]
    assert torch.allclose(new.mean(0), old.mean(0), atol=3 * float(old.std(0).mean()) * 0.1)
    again = lm.add_sid_tokens(model, tok, levels=3, codes=4)
    assert again["added"] == 0  # idempotent


def test_tokenize_and_pack_mask_prompts_and_keep_examples_whole(small):
    _, tok, _ = small
    e1 = Example("t", "Item " + wrap(ITEMS[1].sid) + " is:", " Item number 1.")
    e2 = Example("t", "Why?", "", parts=[(" because", 0.5), (" " + wrap(ITEMS[2].sid), 1.0)])
    t1, t2 = tokenize_example(tok, e1), tokenize_example(tok, e2)
    assert t1[0][0] == tok.bos_token_id and t1[0][-1] == tok.eos_token_id
    prompt_len = len(tok("Item " + wrap(ITEMS[1].sid) + " is:", add_special_tokens=False)["input_ids"])
    answer_len = len(tok(" Item number 1.", add_special_tokens=False)["input_ids"])
    assert t1[1][: 1 + prompt_len] == [0.0] * (len(t1[0]) - answer_len - 1)
    assert set(t2[1]) == {0.0, 0.5, 1.0}
    max_len = len(t1[0]) + len(t2[0]) + 1
    packed = ex.pack([t1, t2, t1], max_len, tok.pad_token_id)
    assert packed["input_ids"].shape == (2, max_len)
    assert packed["attention_mask"][0].sum() == len(t1[0]) + len(t2[0])
    assert ((packed["labels"] == -100) == (packed["weights"] == 0)).all()
    assert packed["cut"].tolist() == [0, 0] and packed["longest"].tolist() == [max(len(t1[0]), len(t2[0])), len(t1[0])]
    # positions restart with each example (document masking); padding sits at 0
    n1, n2 = len(t1[0]), len(t2[0])
    assert packed["position_ids"][0].tolist() == list(range(n1)) + list(range(n2)) + [0]
    assert packed["position_ids"][1].tolist() == list(range(n1)) + [0] * (max_len - n1)
    # a too-long example keeps its completion: cut from the left, and the cut is counted
    cut = ex.pack([t1, t2], 6, tok.pad_token_id)
    assert cut["input_ids"][0].tolist() == t1[0][-6:]
    assert cut["cut"].tolist() == [1, 1]
    assert cut["longest"].tolist() == [len(t1[0]), len(t2[0])]


def test_packed_examples_do_not_see_each_other_with_restarting_positions(small):
    """What the training loop relies on for document masking: given a packed row's position ids and no
    2-D mask (and no KV cache, which turns the detection off), the model scores the second example
    exactly as it scores that example alone."""
    model, tok, _ = small
    e1 = Example("t", "Item " + wrap(ITEMS[1].sid) + " is:", " Item number 1.")
    e2 = Example("t", "Item " + wrap(ITEMS[2].sid) + " is:", " Item number 2.")
    t1, t2 = tokenize_example(tok, e1), tokenize_example(tok, e2)
    packed = ex.pack([t1, t2], len(t1[0]) + len(t2[0]) + 3, tok.pad_token_id)
    ids, pos = torch.tensor(packed["input_ids"]), torch.tensor(packed["position_ids"])
    model.eval()
    with torch.no_grad():
        masked = model(input_ids=ids, position_ids=pos, use_cache=False).logits[0, len(t1[0]) : len(t1[0]) + len(t2[0])]
        alone = model(input_ids=torch.tensor([t2[0]])).logits[0]
        causal = model(input_ids=ids, use_cache=False).logits[0, len(t1[0]) : len(t1[0]) + len(t2[0])]
    assert torch.allclose(masked, alone, atol=1e-4)
    assert not torch.allclose(causal, alone, atol=1e-4)  # without it, the second example sees the first


def test_weighted_loss_ignores_masked_tokens_and_scales_by_weight():
    torch.manual_seed(0)
    logits = torch.randn(1, 5, 7)
    labels = torch.tensor([[-100, 3, 4, -100, 1]])
    full = supervised.weighted_lm_loss(logits, labels, torch.tensor([[0, 1.0, 1.0, 0, 1.0]]))
    ce = torch.nn.functional.cross_entropy(logits[0, :-1], labels[0, 1:].clamp(min=0), reduction="none")
    assert math.isclose(full.item(), (ce[0] + ce[1] + ce[3]).item() / 3, rel_tol=1e-5)
    half = supervised.weighted_lm_loss(logits, labels, torch.tensor([[0, 0.5, 0.5, 0, 0.5]]))
    assert math.isclose(half.item(), full.item() / 2, rel_tol=1e-5)


@pytest.mark.parametrize("labels, kept", [
    ([[-100, -100, 3, 4, -100, -100]], [1, 2]),                 # an SFT row: the answer at the end of the prompt
    ([[-100, 3, -100, -100, -100], [-100, -100, -100, 4, 5]], [0, 2, 3]),  # the union over the batch's rows
    ([[-100, 3, 4, 5]], None),                                  # every position is read: keep them all
    ([[-100, -100, -100]], None),                               # no target: nothing to narrow
])
def test_loss_positions_are_those_some_row_reads(labels, kept):
    got = supervised.loss_positions(torch.tensor(labels))
    assert (got.tolist() if got is not None else None) == kept


def test_loss_on_kept_logits_equals_the_full_loss_with_the_same_gradients(small):
    """The training loop computes logits only where a loss is read (`logits_to_keep`): same loss, same
    gradients, on a real model, for a batch whose rows put their answers at different places."""
    model, _, _ = small
    torch.manual_seed(0)
    ids = torch.randint(5, 200, (2, 12))
    labels = torch.full_like(ids, -100)
    labels[0, 8:11], labels[1, 4:7] = ids[0, 8:11], ids[1, 4:7]
    weights = (labels != -100).float() * torch.tensor([0.5] * 6 + [1.0] * 6)
    model.train()
    grads = []
    for narrow in (False, True):
        model.zero_grad()
        keep = supervised.loss_positions(labels) if narrow else None
        out = model(input_ids=ids, **({"logits_to_keep": keep} if narrow else {}))
        loss = supervised.weighted_lm_loss(out.logits, labels, weights, keep)
        loss.backward()
        grads.append((loss.item(), [p.grad.clone() for p in model.parameters() if p.grad is not None]))
        if narrow:
            assert out.logits.shape[1] == len(keep) == 6  # positions 3-5 and 7-9 of 11
    (full, g_full), (kept, g_kept) = grads
    assert math.isclose(full, kept, rel_tol=1e-5)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(g_full, g_kept))


@pytest.mark.parametrize("step, expected", [(0, 0.1), (9, 1.0), (10, 1.0), (55, 0.5), (100, 0.0)])
def test_cosine_schedule_with_warmup(step, expected):
    assert math.isclose(engines.cosine_with_warmup(100, 10)(step), expected, abs_tol=1e-9)


@pytest.mark.parametrize("use_gpu, precision, bf16", [(False, "auto", False), (True, "auto", True), (False, "bf16", True)])
def test_deepspeed_precision_follows_device(use_gpu, precision, bf16):
    cfg = engines.deepspeed_config(2, precision, 4, 2, 1.0, use_gpu)
    assert cfg["bf16"]["enabled"] is bf16 and cfg["zero_optimization"]["stage"] == 2
    assert cfg["gradient_accumulation_steps"] == 2 and cfg["gradient_clipping"] == 1.0


def test_constrained_beam_search_returns_only_catalog_sids(small):
    model, tok, _ = small
    sids = [i.sid for i in ITEMS]
    trie = SidTrie(tok, sids)
    out = beam_search_sids(model, tok, "A user bought, in order: " + wrap(sids[0]) + ". Next they buy ", trie, 5, 3)
    assert 1 <= len(out) <= 5 and len(set(out)) == len(out)
    assert set(out) <= set(sids)  # an untrained model still only produces valid SIDs


def test_loading_a_folder_that_is_not_a_model_says_what_to_do(tmp_path):
    with pytest.raises(FileNotFoundError, match="save_pretrained"):
        load_model(tmp_path)


@pytest.mark.parametrize(
    "answer, conditional, expected",
    [
        # target (input rank 2 of 4) moved to the top: promotion 2/4 plus the format bonus 0.2
        ('{"reasoning":"r","ranking":["<a_2><b_0><c_0>","<a_0><b_0><c_0>","<a_1><b_0><c_0>","<a_3><b_0><c_0>"]}', True, 0.7),
        # an order copy: valid, but under the conditional reward the bonus is withheld
        ('{"reasoning":"r","ranking":["<a_0><b_0><c_0>","<a_1><b_0><c_0>","<a_2><b_0><c_0>","<a_3><b_0><c_0>"]}', True, 0.0),
        # the same copy under the naive reward earns the bonus for nothing
        ('{"reasoning":"r","ranking":["<a_0><b_0><c_0>","<a_1><b_0><c_0>","<a_2><b_0><c_0>","<a_3><b_0><c_0>"]}', False, 0.2),
        # not a permutation: the invalid penalty, below the worst valid answer (target demoted 2 -> 3: -0.25)
        ('{"reasoning":"r","ranking":["<a_2><b_0><c_0>"]}', True, -1.0),
        ('{"reasoning":"r","ranking":["<a_0><b_0><c_0>","<a_1><b_0><c_0>","<a_3><b_0><c_0>","<a_2><b_0><c_0>"]}', True, -0.25),
    ],
)
def test_dapo_group_scoring_uses_the_conditional_reward(answer, conditional, expected):
    from gr2.config import DapoConfig
    from gr2.training.rl import score_group

    sids = [f"<a_{i}><b_0><c_0>" for i in range(4)]
    cfg = DapoConfig(alpha=0.2, reward="conditional" if conditional else "naive", invalid_penalty=-1.0, overlong_cache=0,
                     max_new_tokens=100)
    r, parts = score_group([answer], [20], sids, [0, 0, 1, 0], cfg)
    assert r.tolist() == pytest.approx([expected])
    assert parts[0]["copy"] == float(json.loads(answer)["ranking"] == sids)
    cfg = cfg.model_copy(update={"overlong_cache": 10})
    r_long, _ = score_group([answer], [95], sids, [0, 0, 1, 0], cfg)
    assert r_long.item() == pytest.approx(expected - 0.5)  # soft overlong punishment halfway into the cache


def test_a_stage_resumes_its_unfinished_run_with_the_same_settings_only(tmp_path):
    from gr2.config import load_config
    from gr2.training.jobs import finish_run, start_run

    cfg = load_config(lake=str(tmp_path))
    run, run_dir, resumed = start_run(cfg, "sft")
    assert not resumed and run_dir == tmp_path / "models/sft" / run
    run_dir.mkdir(parents=True)  # the run got as far as writing something
    assert start_run(cfg, "sft") == (run, run_dir, True), "the same command continues the stopped run"
    later_stage = load_config(overrides=["train.dapo.max_steps=3", "train.midtrain.lr=0.1"], lake=str(tmp_path))
    assert start_run(later_stage, "sft") == (run, run_dir, True), "another stage's settings do not restart SFT"
    cadence = load_config(overrides=["train.checkpoint_every=7", "train.sft.checkpoint_every=3", "train.max_failures=5"],
                          lake=str(tmp_path))
    assert start_run(cadence, "sft") == (run, run_dir, True), "how often it checkpoints is not what it trains"
    stated = load_config(overrides=["train.sft.lr=" + str(cfg.train.sft.lr)], lake=str(tmp_path))
    assert start_run(stated, "sft") == (run, run_dir, True), "a default written out is the same setting"
    for shared in ("train.max_len=777", "train.prompt.history=3"):
        assert not start_run(load_config(overrides=[shared], lake=str(tmp_path)), "sft")[2], shared
    assert start_run(cfg, "sft") == (run, run_dir, True), "runs with other settings leave this one resumable"
    changed = load_config(overrides=["train.sft.lr=0.01"], lake=str(tmp_path))
    other, _, resumed = start_run(changed, "sft")
    assert not resumed, "changed settings start a new run"
    marker = tmp_path / "models/sft/IN_PROGRESS"
    assert [line.split()[0] for line in marker.read_text().splitlines()] == [run, other]
    (tmp_path / "models/sft" / other).mkdir()  # the run wrote its model
    finish_run(changed, "sft", other)
    assert (tmp_path / "models/sft/LATEST").read_text() == other
    assert [line.split()[0] for line in marker.read_text().splitlines()] == [run], "only the finished run leaves"
    assert not start_run(changed, "sft")[2], "a finished run is never resumed"
    assert start_run(cfg, "sft") == (run, run_dir, True)


@pytest.mark.parametrize("frozen, trained_layers", [(0, [0, 1, 2]), (2, [2])])
def test_frozen_lower_layers_get_no_gradient_and_the_rest_still_train(tmp_path, frozen, trained_layers):
    path = lm.build_small_model(tmp_path, [i.title for i in ITEMS] * 20, family="llama", vocab_size=300, hidden=32,
                                layers=3, heads=2, max_positions=64)
    model, _ = load_model(path)
    info = lm.freeze_lower_layers(model, frozen)
    assert info["frozen_layers"] == frozen and info["trainable"] <= info["total"]
    ids = torch.randint(0, model.config.vocab_size, (2, 16))
    model(input_ids=ids, labels=ids).loss.backward()
    emb = model.get_input_embeddings().weight
    assert (emb.grad is None) == (frozen > 0), "the embeddings (and the tied head) train only when nothing is frozen"
    for i, layer in enumerate(model.model.layers):
        grads = [p.grad for p in layer.parameters()]
        if i in trained_layers:
            assert all(g is not None and g.abs().sum() > 0 for g in grads), f"layer {i} must train"
        else:
            assert all(g is None for g in grads), f"layer {i} is frozen: no gradient"
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == info["trainable"]


def test_freezing_every_layer_is_refused(tmp_path):
    path = lm.build_small_model(tmp_path, [i.title for i in ITEMS] * 20, family="llama", vocab_size=300, hidden=32,
                                layers=2, heads=2, max_positions=64)
    model, _ = load_model(path)
    with pytest.raises(ValueError, match="at most 1"):
        lm.freeze_lower_layers(model, 2)


def test_free_and_constrained_answers_from_one_generation_match_asking_each_alone(small, tmp_path):
    """Greedy decoding makes the constrained answer's reasoning the free answer's prefix: asking for both
    at once (evaluation) must give exactly what two separate passes give."""
    from training_lake import make_training_lake

    from gr2.models.ranking import answer_rerank, rerank_answers
    from gr2.models.slates import rerank_cases

    model, tok, _ = small
    model.eval()
    lake = make_training_lake(tmp_path / "lake")
    catalog, _ = load_catalog(lake)
    cases = rerank_cases(lake, catalog, "valid", 5, 0, 3)
    both = rerank_answers(model, tok, cases, 24, ("free", "constrained"), batch_size=2)
    assert both["free"] == answer_rerank(model, tok, cases, 24, constrained=False, batch_size=2)
    assert both["constrained"] == answer_rerank(model, tok, cases, 24, constrained=True, batch_size=2)
    orders, shaped = both["constrained"]
    assert shaped == len(cases) and all(sorted(o) == list(range(4)) for o in orders)


def test_an_evaluation_resumes_from_the_answers_a_stopped_one_wrote(small, tmp_path):
    """`gr2 eval` logs each answer as it is written; a rerun reads the log, asks only the slates that are
    missing (a torn last line counts as missing) and ends with exactly the answers of one whole pass."""
    from training_lake import make_training_lake

    from gr2.eval.answers import AnswerLog
    from gr2.models.ranking import rerank_answers
    from gr2.models.slates import rerank_cases

    model, tok, _ = small
    model.eval()
    lake = make_training_lake(tmp_path / "lake")
    catalog, _ = load_catalog(lake)
    cases = rerank_cases(lake, catalog, "valid", 5, 0, 3)
    assert len(cases) >= 4
    whole = rerank_answers(model, tok, cases, 24, batch_size=2)
    log = AnswerLog(tmp_path / "answers.jsonl")
    rerank_answers(model, tok, cases[:2], 24, batch_size=2, on_answer=log.append)  # then the process stops
    with open(log.path, "a") as f:
        f.write('{"slate_id": "%s", "rec' % cases[2][0].slate_id)  # killed while writing the third
    assert set(log.load()) == {s.slate_id for s, _ in cases[:2]}
    asked, progress = [], []
    resumed = rerank_answers(model, tok, cases, 24, batch_size=2, done=log.load(),
                             on_answer=lambda slate_id, _: asked.append(slate_id),
                             on_progress=lambda i, n: progress.append(i))
    assert resumed == whole
    assert asked == [s.slate_id for s, _ in cases[2:]]
    assert progress[0] == 2 and progress[-1] == len(cases)


@pytest.mark.parametrize("attention", ["sdpa", "eager"])  # a boolean tree mask, and an additive one
def test_scoring_continuations_on_a_cached_prefix_equals_scoring_whole_sequences(small, attention):
    """Prefix.score (the prompt once, then every continuation behind it in one row under a tree mask)
    gives the same log-likelihoods as running every prompt + continuation in full, and leaves the
    prompt's cache as it was."""

    model, tok, _ = small
    model.eval()
    before = model.config._attn_implementation
    model.set_attn_implementation(attention)
    try:
        _check_prefix_scores(model, tok)
    finally:
        model.set_attn_implementation(before)


def _check_prefix_scores(model, tok):
    from gr2.models.ranking import Prefix

    prompt = tok("Item number 3 then Item number 7 then", add_special_tokens=False)["input_ids"]
    conts = [tok(wrap(i.sid), add_special_tokens=False)["input_ids"] for i in ITEMS[:5]] + [[5]]
    prefix = Prefix(model, prompt)
    cached = prefix.score(conts)
    assert prefix.cache.get_seq_length() == prefix.length == len(prompt)
    full = []
    for c in conts:
        with torch.no_grad():
            logp = torch.log_softmax(model(input_ids=torch.tensor([prompt + c])).logits[0].float(), -1)
        full.append(float(sum(logp[len(prompt) - 1 + j, t] for j, t in enumerate(c))))
    assert np.allclose(cached, full, atol=1e-4), (cached, full)
    assert len({len(c) for c in conts}) > 1, "continuations of different lengths share one row"


def test_a_static_kv_cache_decodes_exactly_what_the_dynamic_one_does(small):
    """Evaluation decodes on a static cache (written in place) instead of Hugging Face's default one that
    is copied at every step: the greedy answers, batched with left padding, must not change."""
    from gr2.models.generation import HFGenerator

    model, tok, _ = small
    model.eval()
    prompts = ["Item number 3 then", "Item number 1 then Item number 2 then Item number 7 then", "Item"]
    static = HFGenerator(model, tok, batch_size=2, cache="static").generate(prompts, 12)
    dynamic = HFGenerator(model, tok, batch_size=2, cache="dynamic").generate(prompts, 12)
    assert static == dynamic and len(static) == 3
    with pytest.raises(ValueError, match="dynamic or static"):
        HFGenerator(model, tok, cache="paged").generate(prompts, 2)


def test_a_rollout_group_runs_its_prompt_once_and_samples_what_repeating_it_would(small):
    """`sample_group` prefills the prompt at batch 1 and shares its cache among the G answers. Under the
    same seed it draws exactly the answers of `generate` on G copies of the prompt."""
    from gr2.models.generation import sample_group

    model, tok, _ = small
    model.eval()
    prompt = tok("Item number 3 then Item number 7 then", add_special_tokens=False)["input_ids"]
    G, n = 4, 10
    torch.manual_seed(0)
    with torch.no_grad():
        repeated = model.generate(torch.tensor([prompt] * G), attention_mask=torch.ones(G, len(prompt), dtype=torch.long),
                                  do_sample=True, temperature=1.0, top_k=0, top_p=1.0, max_new_tokens=n,
                                  pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
    torch.manual_seed(0)
    shared = sample_group(model, prompt, G, n, 1.0, tok.pad_token_id, tok.eos_token_id)
    assert torch.equal(shared, repeated)
    assert len({tuple(r) for r in shared[:, len(prompt):].tolist()}) > 1, "the G answers are sampled, not copies"
    greedy = sample_group(model, prompt, 2, n, 0.0, tok.pad_token_id, tok.eos_token_id)
    assert torch.equal(greedy[0], greedy[1])
    one = sample_group(model, prompt[:1], 2, 3, 0.0, tok.pad_token_id, tok.eos_token_id)
    assert one.shape[0] == 2 and one.shape[1] <= 4, "a one-token prompt has nothing to share and still works"


@pytest.mark.parametrize("sid_format", ["tokens", "text"])
def test_the_mid_trained_row_scores_a_sid_tokenized_as_mid_training_taught_it(small, sid_format):
    """The SID-likelihood ranking scores prompt + " " + SID + end of text with the token split of the
    trained `sequential` example: with text SIDs the leading space is part of the SID's first token, and
    a prompt that ended in a space would be a split the model never saw."""
    from gr2.eval.jobs import next_item_ids
    from gr2.rerank.formats import RerankFormat

    _, tok, _ = small
    fmt = RerankFormat(sid=sid_format)
    history, candidate = ITEMS[:3], ITEMS[4]
    prompt, cont = next_item_ids(tok, history, candidate, fmt)
    trained, _ = tokenize_example(tok, sequential(history, candidate, fmt.show_sid))
    assert prompt + cont == trained and cont[-1] == tok.eos_token_id
    assert prompt == next_item_ids(tok, history, ITEMS[5], fmt)[0], "every candidate shares the prompt"
    assert tok.decode(cont[:-1]) == " " + fmt.show_sid(candidate.sid)


def test_a_ddp_checkpoint_resumes_from_tensors_only_and_refuses_pickled_code(tmp_path):
    """The DDP engine's checkpoint (model, AdamW, schedule, step) loads with torch.load(weights_only=True):
    a tampered ddp.pt that would run code on unpickling is refused, not executed."""
    import pickle

    model = torch.nn.Linear(3, 3)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: min(1.0, (i + 1) / 10))
    model(torch.randn(2, 3)).sum().backward()
    opt.step()
    sched.step()
    (tmp_path / "t").mkdir()
    torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                "global_steps": 7}, tmp_path / "t" / "ddp.pt")
    engine = object.__new__(engines.DDPEngine)
    fresh = torch.nn.Linear(3, 3)
    engine.module, engine.device, engine.grad_accum = fresh, torch.device("cpu"), 1
    engine.optimizer = torch.optim.AdamW(fresh.parameters(), lr=1e-3)
    engine.scheduler = torch.optim.lr_scheduler.LambdaLR(engine.optimizer, lambda i: 1.0)
    engine.load_checkpoint(str(tmp_path), "t")
    assert torch.equal(fresh.weight, model.weight) and engine.global_steps == 7
    assert engine.scheduler.get_last_lr() == sched.get_last_lr()

    class Exploit:
        def __reduce__(self):
            return (print, ("code ran",))

    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "ddp.pt").write_bytes(pickle.dumps({"model": Exploit()}))
    with pytest.raises(pickle.UnpicklingError):
        engine.load_checkpoint(str(tmp_path), "bad")


def test_taking_a_scored_continuation_leaves_the_prefix_as_extending_by_it_would(small):
    """`Prefix.take(i)` adopts the i-th scored continuation's keys and values (its row of the batch,
    padding cut off) instead of running it again; what is scored next must not change."""
    from gr2.models.ranking import Prefix

    model, tok, _ = small
    model.eval()
    prompt = tok("Item number 3 then Item number 7 then", add_special_tokens=False)["input_ids"]
    conts = [tok(wrap(i.sid), add_special_tokens=False)["input_ids"] for i in ITEMS[:4]] + [[5]]
    nxt = [tok(wrap(i.sid), add_special_tokens=False)["input_ids"] for i in ITEMS[4:7]]
    for pick in (0, 4):  # a full-width continuation, and a shorter one with padding after it
        taken, extended = Prefix(model, prompt), Prefix(model, prompt)
        taken.score(conts)
        taken.take(pick)
        extended.extend(conts[pick])
        assert taken.length == extended.length == len(prompt) + len(conts[pick])
        assert np.allclose(taken.score(nxt), extended.score(nxt), atol=1e-4)
    single = Prefix(model, prompt)
    single.score([[5], [6]])  # one-token continuations: scored without a forward pass
    single.take(1)
    assert single.length == len(prompt) + 1


def test_first_slot_ranking_orders_by_the_first_slot_and_agrees_on_the_top(small):
    """One pass: the candidates sorted by the log-likelihood of being listed first. Its top is the first
    slot that `constrained_ranking` decodes; the rest follows that slot's scores, not later slots'."""
    from gr2.models.generation import with_bos
    from gr2.models.ranking import Prefix, constrained_ranking, first_slot_ranking
    from gr2.rerank.formats import RerankFormat

    model, tok, _ = small
    model.eval()
    sids = [i.sid for i in ITEMS[:5]]
    text = "Item number 3 then Item number 7 then " + '{"ranking":['
    one = first_slot_ranking(model, tok, text, sids)
    full = constrained_ranking(model, tok, text, sids)
    assert sorted(one) == sorted(full) == sorted(sid_string(parse_sid(s)) for s in sids)
    assert one[0] == full[0]
    fmt = RerankFormat()
    enc = lambda t: tok(t, add_special_tokens=False)["input_ids"]  # noqa: E731
    scores = Prefix(model, enc(with_bos(tok, text))).score([enc(o + ",") for o in fmt.options(sids)])
    canon = [sid_string(parse_sid(s)) for s in sids]
    assert [canon.index(s) for s in one] == sorted(range(5), key=lambda i: (-scores[i], i))


def test_ranking_logprobs_are_a_distribution_over_the_permutations_that_greedy_decoding_tops_slot_by_slot(small):
    """The probability constrained decoding gives each ranking: summed over all K! orders it is 1, its
    greedy ranking takes the most likely candidate at every slot, and an order that is not a permutation
    is refused."""
    import itertools

    from gr2.models.generation import with_bos
    from gr2.models.ranking import Prefix, constrained_ranking, ranking_logprobs

    model, tok, _ = small
    model.eval()
    sids = [i.sid for i in ITEMS[:4]]
    canon = [sid_string(parse_sid(s)) for s in sids]
    text = "Item number 3 then Item number 7 then " + '{"ranking":['
    joint = {o: sum(ranking_logprobs(model, tok, text, sids, list(o))) for o in itertools.permutations(range(4))}
    assert math.isclose(sum(math.exp(v) for v in joint.values()), 1.0, rel_tol=1e-6)
    greedy = [canon.index(s) for s in constrained_ranking(model, tok, text, sids)]
    per_slot = ranking_logprobs(model, tok, text, sids, greedy)
    assert per_slot[-1] == 0.0
    shared = Prefix(model, tok(with_bos(tok, text), add_special_tokens=False)["input_ids"])  # orders sharing a prefill
    assert np.allclose(ranking_logprobs(model, tok, "", sids, greedy, prefix=shared.fork()), per_slot, atol=1e-4)
    for slot in range(3):  # at each slot, no other candidate was more likely given the same slots before
        rest = [i for i in range(4) if i not in greedy[:slot]]
        for other in rest:
            alt = greedy[:slot] + [other] + [i for i in rest if i != other]
            assert ranking_logprobs(model, tok, text, sids, alt)[slot] <= per_slot[slot] + 1e-9
    with pytest.raises(ValueError, match="not a permutation"):
        ranking_logprobs(model, tok, text, sids, [0, 0, 1, 2])


def test_a_constrained_ranking_on_a_forked_prompt_equals_one_on_the_whole_text(small):
    """DAPO runs a prompt once and forks its KV cache for each answer's ranking: the ranking (greedy, and
    sampled with the same seed) is the one decoded from prompt + answer run whole, and the fork leaves the
    prompt's own cache as it was."""
    from gr2.models.generation import with_bos
    from gr2.models.ranking import Prefix, constrained_ranking

    model, tok, _ = small
    model.eval()
    sids = [i.sid for i in ITEMS[:5]]
    prompt, head = "Item number 3 then Item number 7 then", ' {"ranking":['
    enc = lambda t: tok(t, add_special_tokens=False)["input_ids"]  # noqa: E731
    assert enc(with_bos(tok, prompt + head)) == enc(with_bos(tok, prompt)) + enc(head), "the same tokens either way"
    base = Prefix(model, enc(with_bos(tok, prompt)))
    length, last = base.length, base.last.clone()
    assert constrained_ranking(model, tok, head, sids, prefix=base.fork()) == constrained_ranking(model, tok, prompt + head, sids)
    for seed in (0, 1):
        torch.manual_seed(seed)
        forked = constrained_ranking(model, tok, head, sids, temperature=1.0, prefix=base.fork())
        torch.manual_seed(seed)
        assert forked == constrained_ranking(model, tok, prompt + head, sids, temperature=1.0)
    assert base.length == length and torch.equal(base.last, last)


@pytest.mark.parametrize("temperature", [1.0, 1.5, 0.7])
def test_rollout_logprobs_read_only_the_response_logits(small, temperature):
    """DAPO's per-token log-probabilities (`rl._token_logprobs`) come from the response's logits alone and
    equal those read off the full forward pass, left padding included, under the rollout temperature
    (the policy that sampled the answers: logits / T)."""
    from gr2.training.rl import _token_logprobs

    model, _, _ = small
    model.eval()
    torch.manual_seed(1)
    ids = torch.randint(5, 200, (2, 10))
    attn = torch.ones_like(ids)
    attn[1, :2] = 0  # a left-padded prompt
    start = 6
    with torch.no_grad():
        logp, logits = _token_logprobs(model, ids, attn, start, temperature)
        full = torch.log_softmax(model(input_ids=ids, attention_mask=attn).logits[:, start - 1 : -1].float() / temperature, -1)
    assert logits.shape[1] == ids.shape[1] - start
    assert torch.allclose(logp, full.gather(-1, ids[:, start:].unsqueeze(-1)).squeeze(-1), atol=1e-5)


@pytest.mark.parametrize(
    "stage, overrides, rows, total, accum, opt_steps",
    [
        # 100 rows / 1 worker / batch 4 = 25 micro-batches, 2 per optimizer step = 12 steps an epoch, 2 epochs
        ("sft", ["train.sft.epochs=2", "train.sft.batch_size=4", "train.deepspeed.grad_accum=2"], 100, 24, 2, 1),
        # max_steps caps the supervised budget ...
        ("sft", ["train.sft.epochs=2", "train.sft.batch_size=4", "train.sft.max_steps=5"], 100, 5, 1, 1),
        # ... and is the RL budget whatever the data size; RL steps accumulate nothing, `minibatches` each
        ("dapo", ["train.dapo.max_steps=7", "train.dapo.minibatches=3", "train.deepspeed.grad_accum=4"], 2, 7, 1, 3),
    ],
)
def test_loop_settings_resolve_the_stage_budget_on_the_driver(tmp_path, stage, overrides, rows, total, accum, opt_steps):
    import pickle

    from gr2.config import load_config
    from gr2.rerank.formats import RerankFormat
    from gr2.training.loop import LoopSettings

    cfg = load_config(overrides=overrides)
    s = LoopSettings.resolve(getattr(cfg.train, stage), cfg.train, model_path="m", run_dir=tmp_path, total_rows=rows,
                             rl=stage == "dapo")
    assert (s.total_steps, s.grad_accum, s.optimizer_steps_per_step) == (total, accum, opt_steps)
    assert (s.dapo is cfg.train.dapo) == (stage == "dapo")
    # what Ray ships to every worker: one picklable object, the policy's format included
    from dataclasses import replace

    s = replace(s, rerank_format=RerankFormat(sid="text", cite="slate"))
    assert pickle.loads(pickle.dumps(s)) == s


@pytest.mark.parametrize("overrides, sft_every, dapo_every", [
    ([], 50, 50),  # train.checkpoint_every for every stage
    (["train.checkpoint_every=25", "train.dapo.checkpoint_every=2"], 25, 2),  # DAPO's minutes-long steps: its own
])
def test_a_stage_may_checkpoint_on_its_own_cadence(tmp_path, overrides, sft_every, dapo_every):
    from gr2.config import load_config
    from gr2.training.loop import LoopSettings

    cfg = load_config(overrides=overrides)
    every = {stage: LoopSettings.resolve(getattr(cfg.train, stage), cfg.train, model_path="m", run_dir=tmp_path,
                                         total_rows=100, rl=stage == "dapo").checkpoint_every for stage in ("sft", "dapo")}
    assert every == {"sft": sft_every, "dapo": dapo_every}


def test_the_stage_hook_is_chosen_explicitly_and_must_match_the_stage(tmp_path):
    """Each stage passes its hook to loop.run; a supervised hook on DAPO's settings (or the reverse) is
    refused before any Ray worker starts."""
    from gr2.config import load_config
    from gr2.training import loop, rl

    cfg = load_config()
    common = dict(model_path="m", tokenizer_path="m", run_dir=tmp_path, name="x", train_cfg=cfg.train, total_rows=4)
    with pytest.raises(TypeError, match="LmLoss does not run a stage configured by DapoConfig"):
        loop.run(None, hook=supervised.LmLoss(), stage_cfg=cfg.train.dapo, **common)
    with pytest.raises(TypeError, match="DapoStep does not run"):
        loop.run(None, hook=rl.DapoStep(), stage_cfg=cfg.train.sft, **common)
    assert supervised.LmLoss.fields[0] == rl.DapoStep.fields[0] == "step", "the loop writes the step column"


@pytest.mark.parametrize(
    ("too_long", "examples", "refused"),
    [(0, 1834, False), (5, 1834, False), (18, 1834, False), (19, 1834, True), (1, 10, True), (120, 120, True)],
)
def test_sft_leaves_out_a_few_examples_longer_than_a_row_and_refuses_more(too_long, examples, refused):
    from gr2.training.jobs import too_long_refusal

    why = too_long_refusal(too_long, examples, row_len=1024, longest=1036)
    assert (why is not None) == refused
    if refused:  # says how many, the row length, and what to set it to
        assert f"{too_long:,} of {examples:,}" in why and "1024 tokens" in why and "at least 1036" in why
