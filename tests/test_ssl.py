"""SSL / Whisper encoders on tiny random models built and saved in the test (no downloads)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

pytest.importorskip("transformers", reason="transformers is not installed (pip install transformers peft)")
pytest.importorskip("peft", reason="peft is not installed (pip install peft)")

from safetensors.torch import load_file, save_file  # noqa: E402
from transformers import AutoFeatureExtractor, AutoModel  # noqa: E402

from assets.offline import block_network, single_thread  # noqa: E402,F401  (fixtures)
from assets.tiny_models import save_tiny_ssl, tone  # noqa: E402
from fairser.models.ssl import (  # noqa: E402
    LayerWeightedHead,
    SSLClassifier,
    SSLEncoder,
    extract_layer_embeddings,
)
from fairser.objectives import GroupBatch, build_objective  # noqa: E402

pytestmark = pytest.mark.usefixtures("block_network", "single_thread")

# lengths are multiples of 320 samples so the expected Whisper frame count is exact (hop 160, stride 2)
AUDIOS = [tone(n / 16000, freq=150.0 + 60 * i, seed=i) for i, n in enumerate([9600, 4800, 12800, 6400])]
Y = torch.tensor([0, 1, 2, 0])
KINDS = ["wav2vec2", "hubert", "wavlm", "whisper", "wav2vec2-large"]


@pytest.fixture(scope="module")
def tiny_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("ssl")
    dirs = {k: save_tiny_ssl(root / k, kind=k) for k in KINDS[:4]}
    dirs["wav2vec2-large"] = save_tiny_ssl(root / "wav2vec2-large", kind="wav2vec2", layer_norm_cnn=True)
    return dirs


def _expected_frames(kind: str, n_samples: int, model) -> int:
    if kind == "whisper":
        return n_samples // 160 // 2
    return int(model._get_feat_extract_output_lengths(torch.tensor(n_samples)))


@pytest.mark.parametrize("kind", KINDS)
def test_layer_embeddings_are_masked_means_of_each_layer(tiny_dirs, kind):
    enc = SSLEncoder.from_pretrained(tiny_dirs[kind])
    assert enc.pad_sensitive is (kind in ("wav2vec2", "hubert", "wavlm"))
    emb = extract_layer_embeddings(enc, audios=AUDIOS, sampling_rate=16000, batch_size=3)
    assert emb.shape == (4, 3, 32) and emb.dtype == np.float32 and np.isfinite(emb).all()

    # independent: the plain transformers model on each clip alone, mean over its valid frames per layer
    model = AutoModel.from_pretrained(tiny_dirs[kind], local_files_only=True).eval()
    fe = AutoFeatureExtractor.from_pretrained(tiny_dirs[kind], local_files_only=True)
    if kind == "whisper":
        model = model.get_encoder()
    for i, audio in enumerate(AUDIOS):
        with torch.no_grad():
            if kind == "whisper":
                x = fe([audio], sampling_rate=16000, return_tensors="pt")["input_features"]
                states = model(x, output_hidden_states=True).hidden_states
            else:
                x = fe([audio], sampling_rate=16000, return_tensors="pt")["input_values"]
                states = model(x, output_hidden_states=True).hidden_states
        n = _expected_frames(kind, audio.size, model)
        expected = np.stack([h[0, :n].mean(0).numpy() for h in states])
        np.testing.assert_allclose(emb[i], expected, atol=2e-5, rtol=1e-4)


def test_frozen_features_train_the_layer_weights(tiny_dirs):
    enc = SSLEncoder.from_pretrained(tiny_dirs["wav2vec2"])
    features = torch.from_numpy(extract_layer_embeddings(enc, audios=AUDIOS))
    torch.manual_seed(0)
    head = LayerWeightedHead(n_layers=enc.n_layers, hidden_size=enc.hidden_size, n_classes=3, mlp_hidden=16)
    torch.testing.assert_close(head.layer_weights, torch.full((3,), 1 / 3))
    obj = build_objective("erm", n_domains=1, n_classes=3)
    opt = torch.optim.Adam(head.parameters(), lr=0.05)
    for _ in range(5):
        out = head(features, labels=Y)
        assert out.losses.shape == (4,) and out.logits.shape == (4, 3) and out.embedding.shape == (4, 16)
        batch = GroupBatch(
            losses=out.losses, domain=torch.zeros(4, dtype=torch.long), sensitive=torch.tensor([0, 1, 0, 1])
        )
        loss = obj(batch).loss
        assert torch.isfinite(loss)
        opt.zero_grad()
        loss.backward()
        opt.step()
    weights = head.layer_weights.detach()
    assert not torch.allclose(weights, torch.full((3,), 1 / 3))
    torch.testing.assert_close(weights.sum(), torch.tensor(1.0))
    with pytest.raises(ValueError, match=r"shape \(N, 3, 32\)"):
        head(features[:, :2])


@pytest.mark.parametrize("kind", ["wav2vec2", "whisper"])
@pytest.mark.parametrize("finetune", ["top_k", "lora"])
def test_finetuning_changes_only_what_it_should(tiny_dirs, kind, finetune):
    torch.manual_seed(0)
    clf = SSLClassifier.from_pretrained(
        tiny_dirs[kind], n_classes=3, finetune=finetune, top_k=1, lora={"r": 2, "alpha": 4, "dropout": 0.0}
    )
    saved = json.loads((tiny_dirs[kind] / "config.json").read_text())
    assert saved.get("layerdrop", saved.get("encoder_layerdrop")) > 0  # LayerDrop is on in the checkpoint ...
    base = clf.encoder.model.get_base_model() if finetune == "lora" else clf.encoder.model
    assert (base.layerdrop if kind == "whisper" else base.config.layerdrop) == 0.0  # ... but off here
    before = {n: p.detach().clone() for n, p in clf.encoder.named_parameters()}
    trainable = {n for n, p in clf.encoder.named_parameters() if p.requires_grad}
    if finetune == "top_k":
        assert trainable and all(".layers.1." in n for n in trainable)
    else:
        assert trainable and all(
            "lora_" in n and n.rsplit(".lora_", 1)[0].endswith(("q_proj", "k_proj", "v_proj", "out_proj"))
            for n in trainable
        )
    opt = torch.optim.Adam(clf.trainable_parameters(), lr=0.05)
    clf.train()
    for _ in range(3):
        out = clf(audios=AUDIOS, labels=Y)
        assert out.losses.shape == (4,) and torch.isfinite(out.losses).all()
        opt.zero_grad()
        out.losses.mean().backward()
        opt.step()
    changed = {n for n, p in clf.encoder.named_parameters() if not torch.equal(p, before[n])}
    assert changed and changed <= trainable
    assert not torch.allclose(clf.head.layer_weights, torch.full((3,), 1 / 3))
    pred = clf.predict(audios=AUDIOS, batch_size=2)
    assert pred.proba.shape == (4, 3) and np.allclose(pred.proba.sum(1), 1.0, atol=1e-5)


def test_frozen_classifier_keeps_the_encoder_in_eval_mode(tiny_dirs):
    clf = SSLClassifier.from_pretrained(
        tiny_dirs["wav2vec2"], n_classes=3, finetune="frozen", labels=["a", "b", "c"]
    )
    clf.train()
    assert clf.head.training and not clf.encoder.model.training
    assert not any(p.requires_grad for p in clf.encoder.parameters())
    assert clf.predict(audios=AUDIOS[:2]).labels == ("a", "b", "c")
    with pytest.raises(ValueError, match="top_k must be in"):
        SSLEncoder.from_pretrained(tiny_dirs["wav2vec2"]).unfreeze_top_k(5)
    with pytest.raises(ValueError, match="finetune must be"):
        SSLClassifier(encoder=SSLEncoder.from_pretrained(tiny_dirs["wav2vec2"]), n_classes=3, finetune="all")


def test_loading_errors_are_clear(tiny_dirs, tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        SSLEncoder.from_pretrained(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="local directories only"):
        SSLEncoder.from_pretrained("facebook/wav2vec2-base")
    (tmp_path / "noprep").mkdir()
    (tmp_path / "noprep" / "config.json").write_text(json.dumps({"model_type": "wav2vec2"}))
    with pytest.raises(FileNotFoundError, match="preprocessor_config.json"):
        SSLEncoder.from_pretrained(tmp_path / "noprep")
    (tmp_path / "bert").mkdir()
    (tmp_path / "bert" / "config.json").write_text(json.dumps({"model_type": "bert"}))
    (tmp_path / "bert" / "preprocessor_config.json").write_text("{}")
    with pytest.raises(ValueError, match="'bert' model; supported"):
        SSLEncoder.from_pretrained(tmp_path / "bert")


@pytest.mark.parametrize("kind", ["wav2vec2", "whisper"])
def test_task_checkpoints_load_their_encoder_weights(tmp_path, kind):
    """Released checkpoints are often Wav2Vec2ForCTC / WhisperForConditionalGeneration: same encoder weights."""
    path = save_tiny_ssl(tmp_path / kind, kind=kind, task_head=True, seed=3)
    stored = load_file(path / "model.safetensors")
    prefix = "model.encoder." if kind == "whisper" else "wav2vec2."
    assert all(k.startswith((prefix, "model.decoder.", "proj_out", "lm_head")) for k in stored)
    mine = SSLEncoder.from_pretrained(path).model.state_dict()
    encoder_keys = {k[len(prefix) :] for k in stored if k.startswith(prefix)}
    assert encoder_keys <= set(mine) and len(encoder_keys) > 10
    assert all(torch.equal(mine[k], stored[prefix + k]) for k in encoder_keys)  # the checkpoint's tensors


def test_checkpoint_missing_encoder_weights_is_refused(tiny_dirs, tmp_path):
    src = tiny_dirs["wav2vec2"]
    dst = tmp_path / "partial"
    dst.mkdir()
    for name in ("config.json", "preprocessor_config.json"):
        (dst / name).write_text((src / name).read_text())
    weights = {k: v for k, v in load_file(src / "model.safetensors").items() if ".layers.1." not in k}
    save_file(weights, dst / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ValueError, match="lacks encoder weights"):
        SSLEncoder.from_pretrained(dst)


def test_bad_audio_is_named(tiny_dirs):
    enc = SSLEncoder.from_pretrained(tiny_dirs["whisper"])
    with pytest.raises(ValueError, match="8000 Hz"):
        enc(audios=AUDIOS, sampling_rate=8000)
    with pytest.raises(ValueError, match="audio 1 contains NaN"):
        enc(audios=[AUDIOS[0], np.full(800, np.nan, dtype=np.float32)])
    with pytest.raises(ValueError, match="non-empty list"):
        extract_layer_embeddings(enc, audios=[])


@pytest.mark.parametrize("kind", ["whisper", "wav2vec2"])
def test_encoders_run_under_bf16_autocast(tiny_dirs, kind):
    # mixed-precision training wraps the forward in autocast: featurisation (Whisper's torch log-mels returned
    # as NumPy) must stay float32 while the layers run in bf16
    enc = SSLEncoder.from_pretrained(tiny_dirs[kind]).eval()
    with torch.no_grad():
        inputs, _ = enc._inputs(AUDIOS[:2])
        reference = enc(audios=AUDIOS[:2])
        with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
            autocast_inputs, _ = enc._inputs(AUDIOS[:2])
            mixed = enc(audios=AUDIOS[:2])
    for key, value in inputs.items():
        assert autocast_inputs[key].dtype == value.dtype
        torch.testing.assert_close(autocast_inputs[key], value)  # featurisation unaffected by autocast
    assert mixed.shape == reference.shape and torch.isfinite(mixed).all()
    assert not torch.equal(mixed, reference)  # the layers did run in bf16
    torch.testing.assert_close(mixed, reference, atol=0.1, rtol=0.1)
