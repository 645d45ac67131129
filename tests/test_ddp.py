"""Global group losses across processes: a 2-process CPU DDP run (gloo, launched with torchrun as
``accelerate launch --multi_gpu`` does) equals the single-process run on the same global batches.

Checked for ERM-MinMaxGAP (label-token mode) and Group DRO (head mode): the gathered global batch (per-sample
losses, domains, genders), the group mean losses, the objective value, the parameter gradients after DDP's
averaging, the objective's state (MinMaxGAP's dual weight, Group DRO's q), and after a short training run
through ``fit_backbone`` (gradient accumulation, length bucketing, distributed evaluation) the weights, the
step logs and the validation probabilities.

This file is also the worker: ``torchrun --nproc_per_node 2 tests/test_ddp.py MODEL_DIR OUT_DIR``.
"""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # run as a torchrun script
    sys.path.insert(0, str(HERE))

OBJECTIVES = {
    "minmaxgap": ("label_tokens", {"weight": "dual", "eta": 0.5}),
    "groupdro": ("head", {"eta": 0.5}),
}
PER_DEVICE, WORLD = 4, 2  # the single-process reference uses per_device_batch_size = 8


def _data(n: int, seed: int):
    from assets.tiny_models import tone
    from fairser.scale import AudioDataset

    rng = np.random.default_rng(seed)
    audio = [
        tone(0.2 + 0.6 * rng.random(), freq=140.0 + 35 * (i % 5), seed=seed * 1000 + i) for i in range(n)
    ]
    gender = np.array([0, 1, 0, 1, -1, 0, 1, 1])[np.arange(n) % 8]
    modalities = ["audio+text" if i % 3 else "audio" for i in range(n)]
    texts = ["hello there", "okay yes", "I am fine thanks", "no"] * (n // 4 + 1)
    return AudioDataset(
        audio=audio,
        y=np.arange(n) % 4,
        domain=(np.arange(n) // 2) % 2,
        sensitive=gender,
        texts=texts[:n],
        modalities=modalities,
    )


def _model(model_dir: Path, mode: str):
    from assets.tiny_models import TINY_LABELS
    from fairser.models.qwen2_audio import Qwen2AudioClassifier

    torch.manual_seed(0)
    return Qwen2AudioClassifier.from_pretrained(
        model_dir, labels=TINY_LABELS, mode=mode, lora={"r": 4, "alpha": 8, "dropout": 0.0}
    )


def run_case(model_dir: Path, *, per_device: int) -> dict[str, dict]:
    """Everything the test compares, for each objective, as computed by this process."""
    from fairser.config import BackboneConfig
    from fairser.objectives import GroupBatch, build_objective, group_mean_losses
    from fairser.scale import (
        build_batch_sampler,
        fit_backbone,
        global_objective,
        make_accelerator,
        shard_batch,
    )
    from fairser.scale import predict_backbone as predict

    acc = make_accelerator(mixed_precision="no", cpu=True)
    train, valid = _data(24, 0), _data(10, 1)
    out = {}
    for name, (mode, params) in OBJECTIVES.items():
        # one global micro-batch: its global GroupBatch, objective and gradients
        model = _model(model_dir, mode)
        objective = build_objective(name, n_domains=2, n_classes=4, **params)
        objective.setup(
            domain=torch.as_tensor(train.domain),
            sensitive=torch.as_tensor(train.sensitive),
            y=torch.as_tensor(train.y),
        )
        opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.0)
        prepared, opt = acc.prepare(model, opt)
        sampler = build_batch_sampler(
            train, sampler="stratified", global_batch_size=per_device * acc.num_processes, window=2, seed=0
        )
        first = sampler.batches(0)[0]
        mine = shard_batch(first, lengths=train.durations, num_shards=acc.num_processes)[acc.process_index]
        probe = copy.deepcopy(objective).eval()  # the objective of this process's shard alone, for contrast
        res, gb = global_objective(prepared, objective, train, mine)
        acc.backward(res.loss)
        sel = torch.isin(gb.index, torch.as_tensor(mine))
        local = GroupBatch(
            losses=gb.losses.detach()[sel],
            domain=gb.domain[sel],
            sensitive=gb.sensitive[sel],
            logits=gb.logits[sel],
            y=gb.y[sel],
        )
        means, counts = group_mean_losses(gb.losses, gb.group, 4)
        case = {
            "index": gb.index.cpu(),
            "losses": gb.losses.detach().cpu(),
            "domain": gb.domain.cpu(),
            "sensitive": gb.sensitive.cpu(),
            "group_means": means.detach().cpu(),
            "group_counts": counts.detach().cpu(),
            "loss": res.loss.detach().cpu(),
            "local_loss": probe(local).loss.detach().cpu(),
            "grads": {
                n: p.grad.detach().cpu().clone()
                for n, p in acc.unwrap_model(prepared).named_parameters()
                if p.requires_grad
            },
            "objective_state": {k: v.detach().cpu().clone() for k, v in objective.state_dict().items()},
        }
        # a short training run through the loop
        cfg = BackboneConfig(
            name="qwen2_audio",
            path=model_dir,
            mode=mode,
            lora={"r": 4, "alpha": 8, "dropout": 0.0},
            per_device_batch_size=per_device,
            grad_accum_steps=2,
            epochs=1,
            lr=1e-3,
            bucket_window=2,
            eval_batch_size=3,
            mixed_precision="no",
        )
        objective = build_objective(name, n_domains=2, n_classes=4, **params)
        result = fit_backbone(
            model=_model(model_dir, mode),
            objective=objective,
            train=train,
            valid=valid,
            config=cfg,
            seed=0,
            accelerator=acc,
        )
        case["trained"] = {
            n: p.detach().cpu().clone() for n, p in result.model.named_parameters() if p.requires_grad
        }
        keys = ("loss", "lambda", "R", "robust_loss", "q_max", "n_samples")
        case["step_logs"] = torch.tensor([[float(s[k]) for k in keys if k in s] for s in result.step_logs])
        case["valid_proba"] = torch.from_numpy(predict(result.model, valid, batch_size=3, accelerator=acc))
        case["trained_objective_state"] = {
            k: v.detach().cpu().clone() for k, v in objective.state_dict().items()
        }
        out[name] = case
    return out


# ------------------------------------------------------------------------------------------------ tests
@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    pytest.importorskip("transformers")
    pytest.importorskip("peft")
    from assets.tiny_models import save_tiny_qwen2_audio

    return save_tiny_qwen2_audio(tmp_path_factory.mktemp("ddp") / "tiny-qwen2-audio")


@pytest.fixture(scope="module")
def runs(tiny_dir, tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("ddp-out")
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
    }
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={WORLD}",
        str(Path(__file__).resolve()),
        str(tiny_dir),
        str(out_dir),
    ]
    # the 2-process run in the background while this process computes the single-process reference
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        single = run_case(tiny_dir, per_device=PER_DEVICE * WORLD)
    finally:
        torch.set_num_threads(before)
        stdout, stderr = proc.communicate(timeout=600)
    if proc.returncode != 0:
        pytest.fail(f"torchrun failed ({proc.returncode}):\n{stdout[-3000:]}\n{stderr[-6000:]}")
    ranks = [torch.load(out_dir / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]
    return single, ranks


def _close(a, b, *, atol=1e-5, rtol=1e-4, what=""):
    if isinstance(a, dict):
        assert a.keys() == b.keys(), what
        for k in a:
            _close(a[k], b[k], atol=atol, rtol=rtol, what=f"{what}.{k}")
        return
    assert a.shape == b.shape, f"{what}: shape {tuple(a.shape)} != {tuple(b.shape)}"
    if not a.is_floating_point():
        assert torch.equal(a, b), what
        return
    torch.testing.assert_close(a.float(), b.float(), atol=atol, rtol=rtol, msg=lambda m: f"{what}: {m}")


@pytest.mark.slow
@pytest.mark.parametrize("name", list(OBJECTIVES))
def test_two_process_global_batch_equals_single_process(runs, name):
    single, ranks = runs
    ref = single[name]
    for r, got in enumerate(ranks):
        case = got[name]
        # the global batch: same samples in the same order, same per-sample losses, same groups
        for key in ("index", "domain", "sensitive", "group_counts"):
            assert torch.equal(case[key], ref[key]), f"rank {r}: {key}"
        assert set(case["sensitive"].tolist()) >= {0, 1}  # both genders: a non-trivial group objective
        _close(case["losses"], ref["losses"], what=f"rank {r} losses")
        _close(case["group_means"], ref["group_means"], what=f"rank {r} group means")
        _close(case["loss"], ref["loss"], what=f"rank {r} objective value")
        _close(case["objective_state"], ref["objective_state"], what=f"rank {r} objective state")
        # DDP-averaged gradients equal the gradient of the global objective
        _close(case["grads"], ref["grads"], atol=1e-6, rtol=1e-3, what=f"rank {r} grads")
        # the training loop end to end
        _close(case["step_logs"], ref["step_logs"], atol=1e-4, rtol=1e-3, what=f"rank {r} step logs")
        _close(case["trained"], ref["trained"], atol=1e-4, rtol=1e-3, what=f"rank {r} trained weights")
        _close(
            case["trained_objective_state"], ref["trained_objective_state"], atol=1e-4, what=f"rank {r} state"
        )
        _close(case["valid_proba"], ref["valid_proba"], atol=1e-4, what=f"rank {r} valid probabilities")
    # the objective of one process's shard alone differs from the global one (so the gather matters here)
    local = [float(got[name]["local_loss"]) for got in ranks]
    assert max(abs(v - float(ref["loss"])) for v in local) > 1e-3, local
    assert ref["step_logs"].shape[0] == 2  # ceil(3 global micro-batches / 2): a full and a partial step


def _main(model_dir: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    out = run_case(Path(model_dir), per_device=PER_DEVICE)
    import torch.distributed as dist

    torch.save(out, Path(out_dir) / f"rank{dist.get_rank()}.pt")
    dist.barrier()


if __name__ == "__main__":
    _main(sys.argv[1], sys.argv[2])
