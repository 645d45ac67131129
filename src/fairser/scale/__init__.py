"""Training raw-audio backbones at scale: one loop for one CPU process and for ``accelerate launch``.

* :mod:`fairser.scale.loop`: :func:`fit_backbone` (mixed precision, gradient accumulation, checkpoints with
  exact resume, model selection on the validation split) and :func:`predict_backbone`;
* :mod:`fairser.scale.buckets`: length-bucketed batches that keep the group-stratified make-up;
* :mod:`fairser.scale.distributed`: group losses over the global batch across processes;
* :mod:`fairser.scale.checkpoint`: safetensors + JSON checkpoints;
* the benchmark run for a config with a ``backbone:`` section is :func:`fairser.run.execute_run` (its
  backbone backend: :mod:`fairser.run.backbone`);
* ``python -m fairser.scale benchmark --config ...``: the benchmark under ``accelerate launch``.
"""

from fairser.scale.buckets import (
    LengthBucketedSampler,
    RandomBatches,
    eval_batches,
    padding_fraction,
    shard_batch,
)
from fairser.scale.data import AudioDataset
from fairser.scale.distributed import all_gather_variable, all_gather_with_grad, gather_group_batch, world
from fairser.scale.loop import (
    BackboneTrainResult,
    LinearWarmupSchedule,
    backbone_forward,
    build_batch_sampler,
    fit_backbone,
    global_objective,
    launched_on_cpu,
    make_accelerator,
    predict_backbone,
)

__all__ = [
    "AudioDataset",
    "BackboneTrainResult",
    "LengthBucketedSampler",
    "LinearWarmupSchedule",
    "RandomBatches",
    "all_gather_variable",
    "all_gather_with_grad",
    "backbone_forward",
    "build_batch_sampler",
    "eval_batches",
    "fit_backbone",
    "gather_group_batch",
    "global_objective",
    "launched_on_cpu",
    "make_accelerator",
    "padding_fraction",
    "predict_backbone",
    "shard_batch",
    "world",
]
