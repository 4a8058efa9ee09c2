"""Ray for training jobs: join the cluster named by RAY_ADDRESS, or start a local one."""

from __future__ import annotations

import logging
import os


def ensure_ray(num_cpus: int | None = None) -> None:
    import ray

    from gr2.platform.progress import verbose

    if ray.is_initialized():
        return
    level = logging.INFO if verbose() else logging.ERROR  # "Started a local Ray instance", the auth-token notice
    os.environ.setdefault("RAY_TRAIN_V2_ENABLED", "1")
    if os.environ.get("RAY_ADDRESS"):
        ray.init(address=os.environ["RAY_ADDRESS"], log_to_driver=True, logging_level=level)
    else:
        # Worker logs stay in Ray's session folder: the console shows gr2's own progress, not Ray internals.
        ray.init(num_cpus=num_cpus or os.cpu_count(), include_dashboard=False, log_to_driver=False, logging_level=level)
    quiet_ray_data()
    keep_block_order()


def keep_block_order() -> None:
    """A seeded shuffle gives the same rows in the same order only if Ray Data hands blocks on in order;
    otherwise whichever task finishes first goes first and two runs of one config train differently."""
    from ray.data import DataContext

    DataContext.get_current().execution_options.preserve_order = True


def quiet_ray_data() -> None:
    """Ray Data prints an operator table every few seconds on a non-interactive console; gr2 shows its
    own progress per step instead (Ray's logs stay in the session folder)."""
    from ray.data import DataContext

    from gr2.platform.progress import verbose

    ctx = DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    if hasattr(ctx, "enable_operator_progress_bars"):
        ctx.enable_operator_progress_bars = False
    for name in ("ray.data", "ray.data._internal.execution.streaming_executor"):
        logging.getLogger(name).setLevel(logging.WARNING if verbose() else logging.ERROR)
