"""CFA: the contrastive loss on hand-made pairs, the loss composition and its reversed gender gradient, the two
stages, what the parts do on a planted cross-corpus toy, and the cross-corpus run through the benchmark."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from torch.nn import functional as F

from assets.offline import single_thread  # noqa: F401  (fixture)
from assets.zoo_corpus import tiny_corpus
from fairser.bench.runner import run_benchmark
from fairser.config import BenchmarkConfig, TrainConfig
from fairser.methods.probe import gender_probe
from fairser.models import build_head
from fairser.objectives import GroupBatch, build_objective
from fairser.objectives.cfa import CombinedFairnessAdaptation, sensitive_contrastive_loss
from fairser.objectives.stages import UNLABELED, StageContext, StagedObjective
from fairser.run.backends import HeadTrainer
from fairser.train import ArrayDataset, fit, predict_embedding

pytestmark = pytest.mark.usefixtures("single_thread")


def test_contrastive_loss_on_hand_made_pairs() -> None:
    source = torch.tensor([[0.0, 0.0], [3.0, 0.0]])
    target = torch.tensor([[0.0, 0.5], [3.2, 0.0]])
    loss, n_pairs = sensitive_contrastive_loss(
        source, torch.tensor([0, 1]), target, torch.tensor([0, 0]), margin=1.0
    )
    # same gender: d^2 = 0.25 and 10.24; different gender: d = 3.04 > m -> 0, d = 0.2 -> (1 - 0.2)^2 = 0.64
    assert n_pairs == 4
    assert float(loss) == pytest.approx((0.25 + 10.24 + 0.0 + 0.64) / 4, rel=1e-5)
    # unknown gender takes no part; no pair gives 0; identical points keep a finite gradient
    loss, n_pairs = sensitive_contrastive_loss(source, torch.tensor([0, -1]), target, torch.tensor([0, -1]))
    assert n_pairs == 1 and float(loss) == pytest.approx(0.25, rel=1e-5)
    empty, n_pairs = sensitive_contrastive_loss(source, torch.tensor([-1, -1]), target, torch.tensor([0, 0]))
    assert n_pairs == 0 and float(empty) == 0.0
    x = torch.zeros(1, 2, requires_grad=True)
    loss, _ = sensitive_contrastive_loss(x, torch.tensor([0]), torch.zeros(1, 2), torch.tensor([1]))
    loss.backward()
    assert loss.item() == pytest.approx(1.0, abs=1e-5) and torch.isfinite(x.grad).all()  # (m - 0)^2


def test_contrastive_loss_with_three_values_pulls_same_value_pairs_only() -> None:
    source = torch.tensor([[0.0, 0.0], [1.0, 0.0]])
    target = torch.tensor([[0.0, 0.6], [1.0, 0.3], [5.0, 5.0]])
    loss, n_pairs = sensitive_contrastive_loss(
        source, torch.tensor([2, 1]), target, torch.tensor([2, 0, 1]), margin=1.0
    )
    # pairs (source value, target value): (2, 2) same, d^2 = 0.36; (2, 0) d = sqrt(1.09) > 1 -> 0;
    # (2, 1) far -> 0; (1, 2) d = sqrt(1.36) > 1 -> 0; (1, 0) d = 0.3 -> (1 - 0.3)^2 = 0.49; (1, 1) same,
    # d^2 = 16 + 25 = 41
    assert n_pairs == 6
    assert float(loss) == pytest.approx((0.36 + 0.0 + 0.0 + 0.0 + 0.49 + 41.0) / 6, rel=1e-5)


def test_three_valued_cfa_has_a_three_way_classifier() -> None:
    torch.manual_seed(0)
    cfa = CombinedFairnessAdaptation(n_domains=1, n_classes=3, n_values=3, embed_dim=4, hidden=8)
    assert cfa.sensitive_classifier[-1].out_features == 3
    emb = torch.randn(6, 4)
    value = torch.tensor([0, 1, 2, 2, 1, -1])
    y = torch.tensor([2, 0, 1, UNLABELED, UNLABELED, UNLABELED])
    out = cfa(
        GroupBatch(
            losses=torch.tensor([0.3, 0.6, 0.9, 0.0, 0.0, 0.0]),
            domain=torch.zeros(6, dtype=torch.long),
            sensitive=value,
            y=y,
            embedding=emb,
            n_values=3,
        )
    )
    known = value >= 0
    gc = F.cross_entropy(cfa.sensitive_classifier(emb)[known], value[known])
    gsim, n_pairs = sensitive_contrastive_loss(emb[:3], value[:3], emb[3:], value[3:])
    assert n_pairs == 6  # 3 known source rows x 2 known target rows
    torch.testing.assert_close(out.loss, torch.tensor(0.6) + 0.5 * gsim + 0.5 * gc)


def test_total_loss_and_its_reversed_gender_gradient() -> None:
    torch.manual_seed(0)
    cfa = CombinedFairnessAdaptation(n_domains=1, n_classes=3, embed_dim=4)
    emb = torch.randn(6, 4, requires_grad=True)
    gender = torch.tensor([0, 1, 0, 1, 0, -1])
    y = torch.tensor([2, 0, 1, UNLABELED, UNLABELED, UNLABELED])  # 3 source rows, 3 target rows
    losses = torch.tensor([0.3, 0.6, 0.9, 0.0, 0.0, 0.0])
    out = cfa(
        GroupBatch(
            losses=losses, domain=torch.zeros(6, dtype=torch.long), sensitive=gender, y=y, embedding=emb
        )
    )
    ec = losses[:3].mean()
    gsim, n_pairs = sensitive_contrastive_loss(emb[:3], gender[:3], emb[3:], gender[3:])
    known = gender >= 0
    emb2 = emb.detach().clone().requires_grad_()
    gc = F.cross_entropy(cfa.sensitive_classifier(emb2)[known], gender[known])
    assert n_pairs == 6 and out.logs["n_pairs"] == 6
    torch.testing.assert_close(out.loss, ec + 0.5 * gsim + 0.5 * gc)
    out.loss.backward()
    (g_gc,) = torch.autograd.grad(0.5 * gc, emb2)
    (g_sim,) = torch.autograd.grad(0.5 * gsim, emb)
    torch.testing.assert_close(emb.grad, g_sim - g_gc)  # the encoder ascends L_GC, descends L_GSim


def test_augment_appends_target_rows_without_their_emotion_labels() -> None:
    def data(n, y):
        return ArrayDataset(
            audio=np.ones((n, 2), np.float32),
            y=np.full(n, y),
            domain=np.zeros(n, int),
            sensitive=np.arange(n) % 2,
        )

    views = {"adapt": (data(3, 2), None), "test": (data(5, 1), None)}
    run = type("Data", (), {"cross_corpus": True, "views": views, "train": data(4, 0)})()
    out = CombinedFairnessAdaptation(n_domains=1, n_classes=3, embed_dim=4).augment(data=run)
    np.testing.assert_array_equal(out.y, [0, 0, 0, 0, UNLABELED, UNLABELED, UNLABELED])
    np.testing.assert_array_equal(out.sensitive[4:], [0, 1, 0])  # target genders are used
    assert (views["adapt"][0].y == 2).all()  # the split itself is left alone
    transductive = CombinedFairnessAdaptation(n_domains=1, n_classes=3, embed_dim=4, target="test")
    assert (transductive.augment(data=run).y[4:] == UNLABELED).sum() == 5
    views.pop("adapt")
    with pytest.raises(ValueError, match="adapt_fraction"):
        CombinedFairnessAdaptation(n_domains=1, n_classes=3, embed_dim=4).augment(data=run)


def toy_corpus(n_speakers: int, *, shift: float, seed: int, prefix: str) -> tuple[ArrayDataset, np.ndarray]:
    """Emotion in dims 0-2, a strong gender signal in dims 3-4, a corpus shift on dims 5-7."""
    rng = np.random.default_rng(seed)
    x, y, g, spk = [], [], [], []
    for s in range(n_speakers):
        offset = rng.normal(size=8) * 0.3
        for _ in range(30):
            label = rng.integers(0, 3)
            v = rng.normal(size=8) + offset
            v[label] += 2.0
            v[3:5] += np.array([2.5, 1.5]) * (2 * (s % 2) - 1)
            v[5:] += shift
            x.append(v), y.append(label), g.append(s % 2), spk.append(f"{prefix}{s}")
    data = ArrayDataset(
        audio=np.array(x, np.float32), y=np.array(y), domain=np.zeros(len(y), int), sensitive=np.array(g)
    )
    return data, np.array(spk)


def test_cfa_parts_on_a_planted_cross_corpus_toy() -> None:
    source, _ = toy_corpus(16, shift=0.0, seed=0, prefix="s")
    valid, _ = toy_corpus(6, shift=0.0, seed=1, prefix="v")
    adapt, _ = toy_corpus(10, shift=1.5, seed=2, prefix="a")
    test, speakers = toy_corpus(10, shift=1.5, seed=3, prefix="t")
    unlabelled = adapt.subset(np.arange(len(adapt)))
    unlabelled.y = np.full(len(adapt), UNLABELED)
    cfg = TrainConfig(epochs=40, batch_size=64, hidden=16, lr=5e-3, sampler="random")
    trainer = HeadTrainer(config=cfg, seed=0, use_text=False, audio_dim=8, text_dim=0, n_classes=3)

    def train(objective, data):
        context = StageContext(trainer=trainer, train=data, valid=valid, seed=0)
        if isinstance(objective, StagedObjective):
            objective.prepare(context=context)
        result = trainer.fit(model=context.model, objective=objective, train=data, valid=valid, keep="last")
        return result, context.stages

    def probe(model) -> float:
        return gender_probe(
            embedding=predict_embedding(model, test), gender=test.sensitive, speaker=speakers
        ).accuracy

    def held_out_gsim(model) -> float:
        """L_GSim between held-out source (validation) and target (test) speakers."""
        source_emb, target_emb = (torch.tensor(predict_embedding(model, d)) for d in (valid, test))
        loss, _ = sensitive_contrastive_loss(
            source_emb, torch.tensor(valid.sensitive), target_emb, torch.tensor(test.sensitive)
        )
        return float(loss)

    erm, _ = train(build_objective("erm", n_domains=1, n_classes=3), source)
    cfa, cfa_stages = train(
        build_objective("cfa", n_domains=1, n_classes=3, embed_dim=16, pretrain_epochs=3),
        source.concat(unlabelled),
    )
    gc_only, _ = train(
        build_objective("cfa", n_domains=1, n_classes=3, embed_dim=16, pretrain_epochs=3, w_sim=0.0),
        source.concat(unlabelled),
    )
    assert cfa_stages[0]["stage"] == "cfa_source_pretraining"
    # the gradient-reversed gender classifier removes linearly decodable gender from the embedding
    assert probe(gc_only.model) < probe(erm.model) - 0.05
    # L_GSim pulls same-gender source/target pairs together, also for speakers it never saw (ERM ~10, CFA ~0.3)
    assert held_out_gsim(cfa.model) < 0.2 * held_out_gsim(erm.model)
    # With L_GSim at the paper's weight the probe does not reliably fall on this toy (gender-wise pulling and
    # the margin push cluster the embedding by gender); see the objective's docstring. Not asserted here.


def test_source_pretraining_is_erm_on_source_rows_only() -> None:
    source, _ = toy_corpus(4, shift=0.0, seed=0, prefix="s")
    valid, _ = toy_corpus(2, shift=0.0, seed=1, prefix="v")
    target, _ = toy_corpus(2, shift=1.0, seed=2, prefix="a")
    target.y = np.full(len(target), UNLABELED)
    cfg = TrainConfig(epochs=2, batch_size=32, hidden=8, sampler="random")
    torch.manual_seed(0)
    initial = build_head(use_text=False, audio_dim=8, text_dim=0, n_classes=3, hidden=8)
    reference = fit(
        model=initial,
        objective=build_objective("erm", n_domains=1, n_classes=3),
        train=source,
        valid=valid,
        config=cfg.model_copy(update={"epochs": 3}),
        seed=0,
    )
    cfa = build_objective("cfa", n_domains=1, n_classes=3, embed_dim=8, pretrain_epochs=3)
    trainer = HeadTrainer(config=cfg, seed=0, use_text=False, audio_dim=8, text_dim=0, n_classes=3)
    ctx = StageContext(trainer=trainer, train=source.concat(target), valid=valid, seed=0)
    cfa_model = ctx.model  # the main model, with the initial weights (the run's seed)
    cfa.prepare(context=ctx)  # stage one only: trains the main model in place
    for a, b in zip(cfa_model.state_dict().values(), reference.model.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b)
    assert ctx.stages[0]["best_epoch"] == reference.best_epoch


@pytest.mark.slow
def test_cross_corpus_cfa_through_the_benchmark(tmp_path) -> None:
    manifest = tiny_corpus(
        tmp_path / "corpus", corpora=(("a", "en"), ("b", "de")), speakers_per_gender=4, utterances=1
    )
    cfg = BenchmarkConfig.model_validate(
        {
            "output_dir": str(tmp_path / "out"),
            "corpus": {
                "kind": "manifest",
                "path": str(manifest),
                "labels": ["anger", "sadness", "neutral", "joy"],
                "cross": {"train": ["a"], "test": ["b"], "adapt_fraction": 0.5},
            },
            "features": {"cache_dir": str(tmp_path / "cache"), "n_jobs": 1},
            "languages": ["en", "de"],
            "modalities": ["audio"],
            "objectives": [
                {"name": "erm", "label": "ERM"},
                {"name": "cfa", "label": "CFA", "params": {"pretrain_epochs": 1}},
                {
                    "name": "cfa",
                    "label": "CFA transductive",
                    "params": {"pretrain_epochs": 1, "target": "test"},
                },
            ],
            "seeds": [0],
            "train": {"epochs": 2, "batch_size": 16, "hidden": 8, "normalise": "per_corpus"},
            "evaluation": {"n_boot": 10, "n_perm": 10, "min_samples": 2, "gender_probe": True},
            "n_jobs": 1,
        }
    )
    run_benchmark(cfg, progress=False)
    out = tmp_path / "out"
    meta = json.loads((out / "benchmark.json").read_text())
    assert meta["failures"] == [] and "held out of the test set" in meta["source"]
    # the target corpus is standardised with its unlabelled adaptation rows, never with its test rows
    assert any(
        n.startswith("normalise per_corpus: b is standardised with its 16 adapt rows") for n in meta["notes"]
    )
    rows = {
        r["objective_label"]: r for r in map(json.loads, (out / "results.jsonl").read_text().splitlines())
    }
    n_source = rows["CFA"]["n_train"]["original"]
    assert rows["CFA"]["n_train"]["used"] == n_source + rows["CFA"]["method"]["cfa_target_rows"]
    assert rows["CFA"]["method"]["cfa_target_rows"] == 16  # 4 adaptation speakers x 4 emotions
    assert rows["CFA transductive"]["method"]["cfa_target_rows"] == 16  # the 4 test speakers, no labels
    for label in rows:
        assert rows[label]["gender_probe"]["n_speakers"] == 4
        assert 0 <= rows[label]["gender_probe"]["accuracy"] <= 1
    pred = pd.concat(pd.read_csv(p) for p in (out / "runs").glob("*/predictions.csv"))
    assert set(pred["corpus"]) == {"b"} and pred["speaker"].nunique() == 4  # adaptation speakers never tested
    assert "Gender probe" in (out / "comparison.md").read_text()


def test_cfa_needs_a_cross_corpus_config() -> None:
    cfa = CombinedFairnessAdaptation(n_domains=1, n_classes=3, embed_dim=4)
    with pytest.raises(ValueError, match="set corpus.cross"):
        cfa.augment(data=type("Data", (), {"cross_corpus": False})())
