"""A tiny Ray Train job that proves a cluster can train across its nodes.

`python -m gr2.platform.smoke` runs a `TorchTrainer` (gloo backend, CPU only) with N workers that fit a
small linear model by DDP for a few steps, then prints the final loss and the node of every worker:

    smoke: loss 1.2345 -> 0.0123 after 30 steps on 2 workers
    smoke: worker nodes <id> <id> (2 distinct)

It depends on nothing of gr2 (only ray[train] and torch), so it is the first thing to submit to a new
cluster: `gr2 submit ...` is not needed, `ray job submit --working-dir . -- python -m gr2.platform.smoke`
works too. Exit status 0 when the loss went down, 1 otherwise.
"""

from __future__ import annotations

import argparse
import sys


def _train_loop(config: dict) -> None:
    import ray
    import ray.train
    import ray.train.torch
    import torch

    torch.set_num_threads(1)
    ctx = ray.train.get_context()
    rank = ctx.get_world_rank()
    gen = torch.Generator().manual_seed(1000 + rank)
    true_w = torch.tensor([[2.0], [-1.0], [0.5], [3.0]])
    x = torch.randn(256, 4, generator=gen)
    y = x @ true_w + 0.01 * torch.randn(256, 1, generator=gen)

    torch.manual_seed(0)  # same initial weights on every rank (DDP broadcasts rank 0's anyway)
    model = ray.train.torch.prepare_model(torch.nn.Linear(4, 1))
    opt = torch.optim.SGD(model.parameters(), lr=config["lr"])
    losses = []
    for _ in range(config["steps"]):
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()  # DDP all-reduces the gradients over gloo here
        opt.step()
        losses.append(float(loss.detach()))
    node_id = ray.get_runtime_context().get_node_id()
    ray.get(config["collector"].add.remote(rank, node_id, losses[0], losses[-1]))


def _collector_cls():
    import ray

    @ray.remote(num_cpus=0)
    class Collector:
        def __init__(self):
            self.rows = []

        def add(self, rank: int, node_id: str, first: float, last: float) -> None:
            self.rows.append({"rank": rank, "node_id": node_id, "first_loss": first, "final_loss": last})

        def get(self) -> list[dict]:
            return sorted(self.rows, key=lambda r: r["rank"])

    return Collector


def train_smoke(
    num_workers: int = 2,
    steps: int = 30,
    lr: float = 0.1,
    cpus_per_worker: float = 0.5,
    placement_strategy: str = "SPREAD",
    storage_path: str | None = None,
) -> dict:
    """Train a linear model with `num_workers` Ray Train workers; return the losses and worker nodes.

    Joins the cluster named by RAY_ADDRESS (as every Ray job does) or starts a local Ray. Use
    placement_strategy="STRICT_SPREAD" to require one worker per node.
    """
    import ray
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    if not ray.is_initialized():
        ray.init(log_to_driver=True)
    collector = _collector_cls().remote()
    trainer = TorchTrainer(
        _train_loop,
        train_loop_config={"steps": steps, "lr": lr, "collector": collector},
        torch_config=TorchConfig(backend="gloo"),
        scaling_config=ScalingConfig(
            num_workers=num_workers,
            use_gpu=False,
            resources_per_worker={"CPU": cpus_per_worker},
            placement_strategy=placement_strategy,
        ),
        run_config=RunConfig(name="gr2-smoke", storage_path=storage_path),
    )
    trainer.fit()
    rows = ray.get(collector.get.remote())
    ray.kill(collector)
    if len(rows) != num_workers:
        raise RuntimeError(f"expected {num_workers} workers to report, got {len(rows)}")
    first = sum(r["first_loss"] for r in rows) / len(rows)
    final = sum(r["final_loss"] for r in rows) / len(rows)
    return {
        "workers": len(rows),
        "steps": steps,
        "first_loss": first,
        "final_loss": final,
        "node_ids": [r["node_id"] for r in rows],
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m gr2.platform.smoke", description=__doc__.splitlines()[0])
    p.add_argument("--num-workers", type=int, default=2)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--cpus-per-worker", type=float, default=0.5)
    p.add_argument("--placement-strategy", default="SPREAD", choices=["PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD"])
    p.add_argument("--storage-path", default=None, help="Ray Train storage (default ~/ray_results)")
    a = p.parse_args(argv)
    r = train_smoke(a.num_workers, a.steps, a.lr, a.cpus_per_worker, a.placement_strategy, a.storage_path)
    print(f"smoke: loss {r['first_loss']:.4f} -> {r['final_loss']:.4f} after {r['steps']} steps on {r['workers']} workers", flush=True)
    print(f"smoke: worker nodes {' '.join(r['node_ids'])} ({len(set(r['node_ids']))} distinct)", flush=True)
    return 0 if r["final_loss"] < r["first_loss"] else 1


if __name__ == "__main__":
    sys.exit(main())
