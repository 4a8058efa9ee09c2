"""`gr2 demo`'s chain of stages on real Spark, Delta, GE, Ray Train + DeepSpeed, at a toy budget: every
stage runs, hands its output to the next, and the evaluation and the reports index come out."""

from __future__ import annotations

from gr2.config import load_config
from gr2.pipelines import demo as dm
from gr2.pipelines import stages


def test_demo_runs_every_stage_and_ends_with_the_eval_table(spark, lake):
    cfg = load_config(overrides=[
        "etl.synthetic.users=150", "etl.synthetic.items=100", "tokenizer.levels=3", "tokenizer.codes=16",
        "tokenizer.hidden_dims=[64]", "tokenizer.latent_dim=16", "tokenizer.epochs=3",
        "train.model.hidden=32", "train.model.layers=1", "train.model.vocab_size=600", "train.max_len=1024",
        "train.midtrain.max_steps=3", "train.sft.max_steps=2", "train.dapo.max_steps=1", "train.dapo.max_new_tokens=24",
        "train.dapo.overlong_cache=8", "train.dapo.group_size=2", "train.dapo.batch_size=1", "traces.max_slates=60",
        "train.num_workers=1", "train.cpus_per_worker=2",  # one DeepSpeed process per stage: the chain is the point
        "eval.slates=8", "eval.sasrec_seconds=2", "eval.max_new_tokens=24",
    ], lake=str(lake.root), base=dm.SMALL_PRESET)
    assert cfg.train.checkpoint_every == 100 and cfg.traces.detail == 1, "the preset sits below the overrides"
    out = dm.run(cfg, spark)
    print({name: round(sec) for name, sec in out["stages"]})  # pytest -s: where the test's time goes
    assert [name for name, _ in out["stages"]] == [
        "ETL ingest", "ETL build", "semantic IDs (embed, fit, assign)", "teacher traces (rejection sampling)",
        "mid-training on SID tasks", "SFT on accepted traces", "DAPO with conditional rewards", "evaluation on test slates"]
    results = out["results"]
    assert list(results) == [s.name for s in stages.STAGES], "every registered stage ran, in order"
    assert all(isinstance(r, stages.get(name).result) for name, r in results.items())
    assert results["tokenizer.assign"].version == results["tokenizer.fit"].version
    assert results["train.sft"].model_dir != results["train.midtrain"].model_dir
    assert out["eval"] is results["eval"]
    assert {"incoming order", "popularity", "SASRec-style", "mid-trained (SID likelihood)", "SFT", "DAPO"} <= set(out["eval"].models)
    assert out["eval"].n_slates == 8
    pairs = {(d["model"], d["against"]) for d in out["eval"].details["differences"]}
    assert {("SFT", "incoming order"), ("DAPO", "SASRec-style"), ("SASRec-style", "incoming order")} <= pairs
    index = out["index"].read_text()
    assert "eval-" in index and "gold_slates_gate" in index and "dapo" in index


def test_the_default_demo_trains_the_pretrained_base_in_a_format_it_can_read():
    cfg = load_config(base=dm.PRESET)
    assert cfg.train.model.base == "smollm2-135m" and cfg.train.prompt.sid_format == "text"
    assert cfg.train.freeze_layers > 0 and cfg.traces.reasoning == "brief"
    assert cfg.train.dapo.max_new_tokens - cfg.train.dapo.overlong_cache > 133, "a brief answer is not punished as overlong"
    small = load_config(base=dm.SMALL_PRESET)
    assert small.train.model.base is None and small.train.prompt.sid_format == "tokens"


def test_the_beauty_recipe_through_gr2_demo_trains_what_its_stage_commands_train():
    """`gr2 demo -c configs/beauty.yaml` lays the file over the demo's preset; every budget the file
    leaves out would silently come from the preset, so the file names all of them."""
    from pathlib import Path

    recipe = str(Path(__file__).parents[1] / "configs" / "beauty.yaml")
    via_demo, alone = load_config(recipe, base=dm.PRESET), load_config(recipe)
    assert via_demo.model_dump() == alone.model_dump()
