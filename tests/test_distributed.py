"""Data-parallel training (2 CPU ranks, gloo) equals one process with the same global batch."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from neuroratebp.checkpoint import load_checkpoint
from neuroratebp.train import fit

ROOT = Path(__file__).resolve().parents[1]
METHODS = ("rate_m", "rate_s", "bptt", "bptt_s")
# Conv + linear batch norm, so the synchronised statistics (4-D and 2-D) are exercised too.
CONFIG: dict[str, Any] = {
    "model": {"arch": "vgg", "input_shape": [1, 8, 8], "features": [4, "A"], "hidden": [16],
              "batchnorm": True},
    "data": {"dataset": "digits"},
    "train": {"epochs": 1, "batch_size": 32, "limit_train": 128, "seed": 3, "lr": 0.1},
}


def _rank(rank: int, world: int, root: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{root}/store", rank=rank, world_size=world)
    try:
        for method in METHODS:
            result = fit(CONFIG, out_dir=f"{root}/ddp_{method}", method=method)
            torch.save(result.model.state_dict(), f"{root}/rank{rank}_{method}.pt")
    finally:
        dist.destroy_process_group()


def assert_close_state(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.allclose(a[key].double(), b[key].double(), atol=2e-6, rtol=1e-5), key


def test_two_gloo_ranks_match_one_process(tmp_path: Path) -> None:
    mp.spawn(_rank, args=(2, str(tmp_path)), nprocs=2)
    for method in METHODS:
        single = fit(CONFIG, out_dir=tmp_path / f"one_{method}", method=method)
        ddp = load_checkpoint(tmp_path / f"ddp_{method}" / "model.pt")
        assert_close_state(ddp["state_dict"], single.model.state_dict())  # 4 steps, BN buffers too
        assert ddp["metrics"]["accuracy"] == single.accuracy  # sharded eval sums to the whole set
        other = torch.load(tmp_path / f"rank1_{method}.pt", weights_only=True)
        assert_close_state(other, single.model.state_dict())  # ranks stay in step


def test_torchrun_cli(tmp_path: Path) -> None:
    """The CLI joins torchrun's process group from the environment (gloo on CPU)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1"}
    common = ["-m", "neuroratebp", "train", str(ROOT / "models" / "digits_mlp.toml"), "--epochs", "1",
              "--limit", "256", "--batch-size", "32", "--quiet"]
    subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                    *common, "-o", str(tmp_path / "ddp")], env=env, check=True, capture_output=True,
                   timeout=120)
    subprocess.run([sys.executable, *common, "-o", str(tmp_path / "one")], env=env, check=True,
                   capture_output=True, timeout=120)
    assert_close_state(load_checkpoint(tmp_path / "ddp" / "model.pt")["state_dict"],
                       load_checkpoint(tmp_path / "one" / "model.pt")["state_dict"])
