"""Models: heads on cached embeddings (and, in their own modules, speech-LLM and SSL backbones)."""

from fairser.models.heads import AudioHead, FusionHead, HeadOutput, build_head

__all__ = ["AudioHead", "FusionHead", "HeadOutput", "build_head"]
