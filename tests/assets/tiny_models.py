"""Tiny random models and tokenizers BUILT in the tests (torchtune's tests/assets idea): nothing is downloaded.

Each ``save_tiny_*`` writes a complete local model directory (config, safetensors weights, tokenizer or
feature extractor) exactly as ``save_pretrained`` does for a real checkpoint, so the tests exercise the same
local-directory loading path as a real Qwen2-Audio-7B-Instruct or wav2vec2 folder.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

__all__ = [
    "QWEN_SPECIAL_TOKENS",
    "TINY_LABELS",
    "build_tiny_tokenizer",
    "save_tiny_desta25",
    "save_tiny_qwen2_audio",
    "save_tiny_ssl",
    "tiny_qwen2_audio_config",
    "tone",
]

#: Special tokens of the Qwen2-Audio vocabulary that the prompt uses.
QWEN_SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|audio_bos|>",
    "<|AUDIO|>",
    "<|audio_eos|>",
)
TINY_LABELS = ("neutral", "joy", "sadness", "anger")
_SR = 16000


def tone(seconds: float, *, freq: float, seed: int = 0, sr: int = _SR) -> np.ndarray:
    """A sine tone plus a little noise: distinct, deterministic audio for a sample."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    return (0.3 * np.sin(2 * np.pi * freq * t) + 0.01 * rng.standard_normal(t.size)).astype(np.float32)


def build_tiny_tokenizer(
    *,
    words: tuple[str, ...] = TINY_LABELS,
    vocab_size: int = 420,
    special_tokens: tuple[str, ...] = QWEN_SPECIAL_TOKENS,
    eos_token: str = "<|im_end|>",
    pad_token: str | None = "<|endoftext|>",
):
    """A byte-level BPE tokenizer trained on the fly (HF ``tokenizers``), with Qwen2-Audio's special tokens
    (or ``special_tokens``, the first of which is the BOS/pad-like token)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    corpus = [
        "You are a helpful assistant. system user assistant Audio 1: Transcript: Answer:",
        "What is the emotion of the speaker? Answer with one word from this list: " + ", ".join(words) + ".",
        "hello there how are you today I am fine thanks okay yes no",
        "Focus on the audio clips and instructions. <start_audio> <end_audio>",
        *words,  # each word alone: the unspaced form that starts an assistant answer
    ] * 30
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(special_tokens),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token=eos_token,
        pad_token=pad_token,
        additional_special_tokens=list(special_tokens[1:]),
        model_max_length=512,
    )


def tiny_qwen2_audio_config(
    *, vocab_size: int, audio_token_id: int, mel_bins: int = 16, max_source_positions: int = 50
):
    """Qwen2-Audio with a 2-layer Whisper-style encoder (d=32) and a 2-layer Qwen2 LM (hidden 64, GQA 4/2)."""
    from transformers import Qwen2AudioConfig

    return Qwen2AudioConfig(
        audio_config={
            "model_type": "qwen2_audio_encoder",
            "num_mel_bins": mel_bins,
            "encoder_layers": 2,
            "encoder_attention_heads": 2,
            "encoder_ffn_dim": 64,
            "d_model": 32,
            "max_source_positions": max_source_positions,
        },
        text_config={
            "model_type": "qwen2",
            "vocab_size": vocab_size,
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "max_position_embeddings": 512,
            "tie_word_embeddings": False,
        },
        audio_token_index=audio_token_id,
    )


def save_tiny_qwen2_audio(
    path: Path, *, words: tuple[str, ...] = TINY_LABELS, seed: int = 0, vocab_size: int = 420
) -> Path:
    """Write a random tiny Qwen2-Audio (model + processor with a 1-s Whisper feature extractor) to ``path``.

    The tokenizer is trained so that ``words`` are single tokens (raise ``vocab_size`` for more words)."""
    from transformers import Qwen2AudioForConditionalGeneration, Qwen2AudioProcessor, WhisperFeatureExtractor

    tokenizer = build_tiny_tokenizer(words=words, vocab_size=vocab_size)
    # 16 mel bins and a 1-s window: 100 mel frames = 2 x max_source_positions (50), as the encoder requires
    features = WhisperFeatureExtractor(feature_size=16, chunk_length=1, sampling_rate=_SR)
    processor = Qwen2AudioProcessor(feature_extractor=features, tokenizer=tokenizer)
    config = tiny_qwen2_audio_config(
        vocab_size=len(tokenizer), audio_token_id=tokenizer.convert_tokens_to_ids("<|AUDIO|>")
    )
    torch.manual_seed(seed)
    model = Qwen2AudioForConditionalGeneration(config)
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return path


def save_tiny_ssl(
    path: Path, *, kind: str, seed: int = 0, layer_norm_cnn: bool = False, task_head: bool = False
) -> Path:
    """Write a random tiny SSL encoder directory: ``kind`` in wav2vec2, hubert, wavlm, whisper.

    ``layer_norm_cnn`` builds the "large" wav2vec2-family variant (LayerNorm CNN, stable layer norm), which
    takes an attention mask and can be batched with padding; the default is the GroupNorm "base" variant.
    ``task_head`` saves the checkpoint as most released ones are (wav2vec2: ``Wav2Vec2ForCTC``; whisper:
    ``WhisperForConditionalGeneration``), with the encoder under a prefix.
    """
    from transformers import (
        HubertConfig,
        HubertModel,
        Wav2Vec2Config,
        Wav2Vec2FeatureExtractor,
        Wav2Vec2ForCTC,
        Wav2Vec2Model,
        WavLMConfig,
        WavLMModel,
        WhisperConfig,
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
        WhisperModel,
    )

    torch.manual_seed(seed)
    conv = {
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "intermediate_size": 64,
        "conv_dim": (16, 16),
        "conv_stride": (5, 4),
        "conv_kernel": (10, 8),
        "num_conv_pos_embeddings": 16,
        "num_conv_pos_embedding_groups": 2,
        "vocab_size": 8,
    }
    if layer_norm_cnn:
        conv.update(feat_extract_norm="layer", do_stable_layer_norm=True)
    if kind == "wav2vec2":
        model, features = (
            (Wav2Vec2ForCTC if task_head else Wav2Vec2Model)(Wav2Vec2Config(**conv)),
            Wav2Vec2FeatureExtractor(return_attention_mask=True),
        )
    elif kind == "hubert":
        model, features = (
            HubertModel(HubertConfig(**conv)),
            Wav2Vec2FeatureExtractor(return_attention_mask=True),
        )
    elif kind == "wavlm":
        cfg = WavLMConfig(**conv, num_buckets=16, max_bucket_distance=64)
        model, features = WavLMModel(cfg), Wav2Vec2FeatureExtractor(return_attention_mask=True)
    elif kind == "whisper":
        cfg = WhisperConfig(
            num_mel_bins=16,
            d_model=32,
            encoder_layers=2,
            decoder_layers=1,
            encoder_attention_heads=2,
            decoder_attention_heads=2,
            encoder_ffn_dim=64,
            decoder_ffn_dim=64,
            max_source_positions=50,
            max_target_positions=16,
            vocab_size=64,
            pad_token_id=0,
            bos_token_id=1,
            eos_token_id=2,
            decoder_start_token_id=1,
            encoder_layerdrop=0.1,
        )
        cls = WhisperForConditionalGeneration if task_head else WhisperModel
        model, features = cls(cfg), WhisperFeatureExtractor(feature_size=16, chunk_length=1)
    else:
        raise ValueError(f"unknown tiny SSL kind {kind!r}")
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    features.save_pretrained(path)
    return path


#: Llama-3-style special tokens of the tiny DeSTA2.5 LLM tokenizer.
LLAMA_SPECIAL_TOKENS = ("<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>")
_LLAMA_CHAT = (
    "{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n"
    "{{ m['content'] }}<|eot_id|>{% endfor %}"
    "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
)


def save_tiny_desta25(
    path: Path,
    *,
    words: tuple[str, ...] = TINY_LABELS,
    seed: int = 0,
    vocab_size: int = 460,
    prompt_size: int = 4,
) -> Path:
    """Write a random tiny DeSTA2.5-Audio folder in the released layout: ``config.json`` (model_type desta25),
    ``model.safetensors`` holding the Q-Former adapter under its released names (``perception.connector.*``),
    and the LLM (a 2-layer Llama, hidden 64, Llama-3-style chat template) and Whisper (4 encoder layers, d=32,
    1 decoder layer, 16 mels, 1-s window) in ``llm/`` and ``whisper/``."""
    import json

    from safetensors.torch import save_file
    from transformers import (
        LlamaConfig,
        LlamaForCausalLM,
        WhisperConfig,
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
    )

    from fairser.models.desta25 import DeSTA25Connector, fairser_to_released

    torch.manual_seed(seed)
    tok = build_tiny_tokenizer(
        words=words,
        vocab_size=vocab_size,
        special_tokens=LLAMA_SPECIAL_TOKENS,
        eos_token="<|eot_id|>",
        pad_token=None,
    )
    tok.bos_token = "<|begin_of_text|>"
    tok.chat_template = _LLAMA_CHAT
    llm = LlamaForCausalLM(
        LlamaConfig(
            vocab_size=len(tok),
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=512,
            tie_word_embeddings=False,
            bos_token_id=tok.bos_token_id,
            eos_token_id=tok.eos_token_id,
        )
    )
    wtok = build_tiny_tokenizer(
        words=words,
        vocab_size=300,
        special_tokens=("<|endoftext|>", "<|startoftranscript|>"),
        eos_token="<|endoftext|>",
        pad_token="<|endoftext|>",
    )
    start = wtok.convert_tokens_to_ids("<|startoftranscript|>")
    whisper = WhisperForConditionalGeneration(
        WhisperConfig(
            vocab_size=len(wtok),
            num_mel_bins=16,
            encoder_layers=4,
            encoder_attention_heads=2,
            decoder_layers=1,
            decoder_attention_heads=2,
            d_model=32,
            encoder_ffn_dim=64,
            decoder_ffn_dim=64,
            max_source_positions=50,
            max_target_positions=64,
            decoder_start_token_id=start,
            bos_token_id=start,
            eos_token_id=wtok.eos_token_id,
            pad_token_id=wtok.pad_token_id,
            begin_suppress_tokens=None,
            suppress_tokens=None,
        )
    )
    connector = DeSTA25Connector(
        d_model=32, heads=2, llm_hidden=64, n_layers=2, prompt_size=prompt_size, taps=4
    )
    path.mkdir(parents=True, exist_ok=True)
    llm.save_pretrained(path / "llm")
    tok.save_pretrained(path / "llm")
    whisper.save_pretrained(path / "whisper")
    wtok.save_pretrained(path / "whisper")
    WhisperFeatureExtractor(feature_size=16, chunk_length=1, sampling_rate=_SR).save_pretrained(
        path / "whisper"
    )
    state = fairser_to_released({k: v.contiguous() for k, v in connector.state_dict().items()})
    save_file(state, path / "model.safetensors")
    config = {
        "model_type": "desta25",
        "llm_model_id": "DeSTA-ntu/Llama-3.1-8B-Instruct",
        "encoder_model_id": "openai/whisper-large-v3",
        "connector_mode": "qformer_1",
        "qformer_num_hidden_layers": 2,
        "prompt_size": prompt_size,
        "use_lora": False,
        "audio_locator": "<|AUDIO|>",
        "placeholder_token": "<|reserved_special_token_87|>",
    }
    (path / "config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    return path
