"""Models: heads on cached embeddings, the Qwen2-Audio classifier, SSL / Whisper encoders, the memory planner.

The backbones import transformers and PEFT only when first used, so ``import fairser.models`` stays light.
"""

from importlib import import_module

from fairser.models.heads import AudioHead, FusionHead, HeadOutput, LinearHead, build_head

__all__ = [
    "DEFAULT_LORA",
    "AudioHead",
    "BackboneOutput",
    "FusionHead",
    "HeadOutput",
    "LayerWeightedHead",
    "LoraSpec",
    "Plan",
    "Prediction",
    "Qwen2AudioClassifier",
    "SSLClassifier",
    "SSLEncoder",
    "LinearHead",
    "build_head",
    "extract_layer_embeddings",
    "format_plan_table",
    "plan_memory",
]

_LAZY = {
    "Qwen2AudioClassifier": "fairser.models.qwen2_audio",
    "DEFAULT_LORA": "fairser.models.qwen2_audio",
    "SSLEncoder": "fairser.models.ssl",
    "SSLClassifier": "fairser.models.ssl",
    "LayerWeightedHead": "fairser.models.ssl",
    "extract_layer_embeddings": "fairser.models.ssl",
    "plan_memory": "fairser.models.plan",
    "format_plan_table": "fairser.models.plan",
    "Plan": "fairser.models.plan",
    "BackboneOutput": "fairser.models.backbone",
    "LoraSpec": "fairser.models.backbone",
    "Prediction": "fairser.models.backbone",
}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'fairser.models' has no attribute {name!r}")
