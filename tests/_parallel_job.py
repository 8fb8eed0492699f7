"""Runs in a subprocess with N simulated CPU devices (the flag must be set before JAX starts).

    python _parallel_job.py DEVICES OUT.json DATA_DIR RUN_ROOT [distributed: ADDRESS NUM PROCESS_ID]

Trains lenet5 a few steps with every device count the checks need and writes what it saw as JSON: final
parameters of each run (as lists), the shardings of a global batch and of the state, and errors raised.
"""

from __future__ import annotations

import json
import os
import sys

devices = int(sys.argv[1])
os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={devices}".strip()

import jax  # noqa: E402
import numpy as np  # noqa: E402

from jaxcnn.train import TrainConfig, parallel, train  # noqa: E402
from jaxcnn.train.run import Checkpoints  # noqa: E402
from jaxcnn.train.step import init_state, make_optimizer  # noqa: E402
from jaxcnn.models import get_model  # noqa: E402

out_path, data_dir, run_root = sys.argv[2], sys.argv[3], sys.argv[4]
distributed = len(sys.argv) > 5


def config(name: str, **overrides) -> TrainConfig:
    base = dict(
        model="lenet5", dataset="synthetic", data_dir=data_dir, epochs=1, batch_size=32, train_subset=256,
        test_subset=100, eval_batch_size=30, log_every=2, optimizer="momentum", learning_rate=0.05, lr_schedule="constant",
        epoch_mode="loop", run_dir=f"{run_root}/{name}", plots=False, progress=False,
    )  # fmt: skip
    return TrainConfig(**{**base, **overrides})


def final_params(run_dir: str, cfg: TrainConfig) -> list[list[float]]:
    model = get_model(cfg.model)
    template = init_state(model, make_optimizer(cfg, 1), jax.random.PRNGKey(0))
    state = Checkpoints(__import__("pathlib").Path(run_dir), cfg).restore_latest(template)
    return [np.asarray(leaf).ravel().tolist() for leaf in jax.tree_util.tree_leaves(state.params)]


report: dict = {}
if distributed:
    address, num, pid = sys.argv[5], int(sys.argv[6]), int(sys.argv[7])
    cfg = config("distributed", distributed=True, coordinator_address=address, num_processes=num, process_id=pid)
    result = train(cfg)
    report.update(process_index=jax.process_index(), process_count=jax.process_count(), result=result)
    report["device_count"] = jax.device_count()
else:
    report["device_count"] = jax.device_count()
    mesh = parallel.make_mesh(0)
    x = np.arange(32 * 3, dtype=np.float32).reshape(32, 3)
    (batch,) = parallel.global_batch(mesh, x)
    report["batch_spec"] = list(batch.sharding.spec)
    report["batch_shard_rows"] = sorted({s.data.shape[0] for s in batch.addressable_shards})
    report["batch_devices"] = len(batch.sharding.device_set)
    state = parallel.replicate({"w": np.ones(4, np.float32)}, mesh)
    report["state_fully_replicated"] = state["w"].sharding.is_fully_replicated
    try:
        parallel.check_divisible(36, mesh)
    except ValueError as err:
        report["divisibility_error"] = str(err)
    runs = {}
    for mode in ("loop", "scan"):
        for n in (devices, 1):
            cfg = config(f"{mode}-{n}", devices=n, epoch_mode=mode)
            runs[f"{mode}-{n}"] = {"result": train(cfg), "params": final_params(cfg.run_dir, cfg)}
    # a checkpoint written on `devices` devices resumed on 1, and one written on 1 resumed on `devices`
    for first, second in ((devices, 1), (1, devices)):
        name = f"resume-{first}-to-{second}"
        train(config(name, devices=first))
        cfg = config(name, devices=second, epochs=2, resume=True)
        runs[name] = {"result": train(cfg), "params": final_params(cfg.run_dir, cfg)}
    cfg = config("straight-2-epochs", devices=1, epochs=2)
    runs["straight"] = {"result": train(cfg), "params": final_params(cfg.run_dir, cfg)}
    report["runs"] = runs
with open(out_path, "w") as f:
    json.dump(report, f)
