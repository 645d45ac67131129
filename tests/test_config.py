from pathlib import Path

import pytest
from pydantic import ValidationError

from fairser.config import BenchmarkConfig, load_config
from fairser.errors import UserError
from fairser.run.plan import check_objectives

REPO = Path(__file__).resolve().parents[1]


def test_defaults_match_the_paper_grid():
    cfg = BenchmarkConfig()
    assert cfg.languages == ("en", "de", "ja")
    assert cfg.modalities == ("audio", "audio+text")
    assert [o.name for o in cfg.objectives] == ["erm", "minmaxgap"]
    assert len(cfg.seeds) == 3


@pytest.mark.parametrize("path", sorted((REPO / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_configs_validate(path):
    text = path.read_text()
    assert text.startswith("#"), "every shipped config opens with a comment on how to run it"
    check_objectives(load_config(path))


def test_unknown_key_is_an_error(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("train:\n  epochz: 3\n")
    with pytest.raises(
        UserError, match=r"train.epochz \(.*c.yaml:2\): unknown key — did you mean 'epochs'\?"
    ):
        load_config(p)


def test_unknown_objective_is_an_error(tmp_path):
    # the config layer sits below the objectives: the grid (and the CLI's config loading) checks the names
    from typer.testing import CliRunner

    from fairser.cli import app
    from fairser.run import plan_runs

    cfg = BenchmarkConfig.model_validate({"objectives": [{"name": "erm"}, {"name": "nope"}]})
    with pytest.raises(ValueError, match=r"unknown objective 'nope'; registered: \[.*'erm'.*'minmaxgap'"):
        plan_runs(cfg)
    p = tmp_path / "c.yaml"
    p.write_text("objectives:\n  - name: nope\n")
    res = CliRunner().invoke(app, ["benchmark", "--config", str(p)])
    assert res.exit_code == 2 and "unknown objective 'nope'" in res.output


def test_sensitive_attribute_is_validated_and_changes_run_ids_only_when_not_gender():
    from fairser.run import plan_runs

    default = {r.run_id for r in plan_runs(BenchmarkConfig())}
    assert {r.run_id for r in plan_runs(BenchmarkConfig(sensitive=("gender",)))} == default
    age = {r.run_id for r in plan_runs(BenchmarkConfig(sensitive=("age_band",)))}
    both = {r.run_id for r in plan_runs(BenchmarkConfig(sensitive=("gender", "age_band")))}
    assert age.isdisjoint(default) and both.isdisjoint(default) and both.isdisjoint(age)
    for bad in ([], ["gender", "gender"]):
        with pytest.raises(ValidationError, match="sensitive must name one column"):
            BenchmarkConfig.model_validate({"sensitive": bad})
    # IDI infers gender and the probe probes gender: neither can stand in for another attribute
    with pytest.raises(ValidationError, match="infers gender only"):
        BenchmarkConfig.model_validate({"sensitive": ["age_band"], "groups": {"source": "inferred"}})
    with pytest.raises(ValidationError, match="gender_probe probes gender only"):
        BenchmarkConfig.model_validate({"sensitive": ["age_band"], "evaluation": {"gender_probe": True}})


def test_duplicate_objective_labels_are_an_error():
    with pytest.raises(ValidationError, match="unique"):
        BenchmarkConfig.model_validate({"objectives": [{"name": "erm"}, {"name": "erm"}]})


def test_missing_config_file(tmp_path):
    with pytest.raises(UserError, match="config not found"):
        load_config(tmp_path / "missing.yaml")


def test_run_ids_change_with_the_backbone_settings(tmp_path):
    from fairser.bench.runner import plan_runs

    base = {"backbone": {"name": "qwen2_audio", "path": str(tmp_path), "lora": {"r": 8}}}
    ids_a = {r.run_id for r in plan_runs(BenchmarkConfig.model_validate(base))}
    base["backbone"]["lora"] = {"r": 16}
    ids_b = {r.run_id for r in plan_runs(BenchmarkConfig.model_validate(base))}
    assert ids_a.isdisjoint(ids_b)
    ids_none = {r.run_id for r in plan_runs(BenchmarkConfig())}
    assert ids_none.isdisjoint(ids_a)


def test_zoo_options_validate_and_leave_run_ids_alone_at_their_defaults():
    from fairser.bench.runner import plan_runs

    plain = BenchmarkConfig.model_validate({"objectives": [{"name": "erm"}]})
    explicit = BenchmarkConfig.model_validate(
        {
            "objectives": [{"name": "erm", "sampler": None, "groups": None}],
            "groups": {"source": True},  # YAML's `source: true`
            "evaluation": {"gender_probe": False},
        }
    )
    assert [r.run_id for r in plan_runs(plain)] == [r.run_id for r in plan_runs(explicit)]
    inferred = BenchmarkConfig.model_validate(
        {"objectives": [{"name": "erm", "groups": {"source": "inferred", "method": "kmeans"}}]}
    )
    assert {r.run_id for r in plan_runs(inferred)}.isdisjoint(r.run_id for r in plan_runs(plain))
    spec = BenchmarkConfig.model_validate(
        {"objectives": [{"name": "erm", "sampler": "balanced"}]}
    ).objectives[0]
    assert spec.sampler == "balanced"
    with pytest.raises(ValidationError, match="method"):
        BenchmarkConfig.model_validate({"groups": {"source": "inferred", "method": "guess"}})
    with pytest.raises(ValidationError, match="adapt_fraction"):
        BenchmarkConfig.model_validate(
            {"corpus": {"kind": "synthetic", "cross": {"train": ["a"], "test": ["b"], "adapt_fraction": 1.0}}}
        )


def test_sensitive_as_one_string_means_that_column():
    assert BenchmarkConfig(sensitive="age_band").sensitive == ("age_band",)


@pytest.mark.parametrize("sensitive", [["language"], ["gender", "modality"]])
def test_a_domain_column_cannot_be_the_sensitive_attribute(sensitive):
    with pytest.raises(ValidationError, match="names the domain column"):
        BenchmarkConfig(sensitive=sensitive)


def test_covada_needs_gender():
    objectives = [{"name": "erm", "label": "ERM"}, {"name": "covada", "label": "CO-VADA"}]
    with pytest.raises(ValidationError, match=r"CO-VADA \(objectives \['CO-VADA'\]\) converts voices"):
        BenchmarkConfig(sensitive=["age_band"], objectives=objectives)
    assert BenchmarkConfig(objectives=objectives).sensitive == ("gender",)


def test_cli_config_errors_keep_their_bracketed_text(tmp_path):
    """Rich markup must not swallow ``[gender]`` in a message (it did: 'use sensitive:  or ...')."""
    from typer.testing import CliRunner

    from fairser.cli import app

    path = tmp_path / "c.yaml"
    path.write_text("sensitive: [age_band]\ngroups: {source: inferred}\n")
    result = CliRunner().invoke(app, ["benchmark", "--config", str(path)])
    assert result.exit_code == 2
    assert "use sensitive: [gender] or groups source: true" in " ".join(result.output.split())


def test_cli_missing_sensitive_column_is_one_message_not_a_traceback(tmp_path):
    import numpy as np
    import soundfile as sf
    from typer.testing import CliRunner

    from fairser.cli import app

    for i in range(3):
        sf.write(tmp_path / f"a{i}.wav", np.zeros(1600, dtype=np.float32), 16000)
    manifest = tmp_path / "m.csv"
    rows = ["id,audio_path,transcript,emotion,gender,language,speaker,corpus,split"]
    rows += [f"u{i},a{i}.wav,hi,neutral,male,en,s{i},c,train" for i in range(3)]
    manifest.write_text("\n".join(rows) + "\n")
    path = tmp_path / "c.yaml"
    path.write_text(
        f"corpus: {{kind: manifest, path: {manifest}}}\nlanguages: [en]\nmodalities: [audio]\n"
        f"sensitive: [accent]\noutput_dir: {tmp_path / 'out'}\n"
    )
    result = CliRunner().invoke(app, ["benchmark", "--config", str(path), "--quiet"])
    assert result.exit_code == 2, result.output
    assert "sensitive column(s) ['accent'] are not in the corpus manifest" in " ".join(result.output.split())
    assert "Traceback" not in result.output
