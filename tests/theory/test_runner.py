"""Theory configs, the run folder, reports and the CLI: every shipped config runs small."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from bayesdistill.cli.main import app
from bayesdistill.errors import ConfigError, UnknownNameError
from bayesdistill.theory import EXPERIMENTS, load_theory_config, run_theory, shipped_theory_configs
from bayesdistill.theory.report import NO_INTERVAL

TINY = {
    "synthetic_study": ["options.num_samples=400", "options.evals_per_epoch=4", "options.epochs=1"],
    "gradient_noise": ["options.num_samples=200", "options.closed_form_samples=2000"],
    "convergence": ["options.steps=60", "options.repeats=2", "options.constants_samples=2000"],
    "risk_variance": [
        "options.draws=50",
        "options.population_samples=2000",
        "options.teacher_samples=200",
        "options.teacher_epochs=1",
    ],
    "self_distillation": [
        "options.steps=40",
        "options.repeats=2",
        "options.population_samples=2000",
        "options.lambdas=[0.0, 0.5, 1.0]",
    ],
    "train_point_targets": [
        "options.num_samples=400",
        "options.folds=2",
        "options.teacher_epochs=2",
        "options.student_epochs=2",
        "options.kinds=[deterministic, laplace]",
    ],
    "real_data": [
        "options.overrides=[data.num_samples=800, teacher.train.epochs=1, student.train.epochs=2, "
        "'student.subset.per_class=5', '[teachers=[none, deterministic, temperature, laplace]]', "
        "'student.losses=[{name: soft_ce, label: bcp_risk}]']".replace(
            "'[teachers=[none, deterministic, temperature, laplace]]'",
            "'teachers=[none, deterministic, temperature, laplace]'",
        ),
    ],
}


def test_every_experiment_has_a_shipped_config_with_valid_quick_options():
    shipped = shipped_theory_configs()
    assert set(shipped) == set(EXPERIMENTS.names())
    for name, path in shipped.items():
        config = load_theory_config(path)
        assert config.experiment == name
        config.resolved(quick=True)  # validates the options
        config.resolved(quick=False)


@pytest.mark.parametrize("name", sorted(TINY))
def test_every_shipped_theory_config_runs_on_tiny_sizes(name, tmp_path):
    config = load_theory_config(name, [*TINY[name], "seeds=[0]"])
    result = run_theory(config, tmp_path / name, progress=False)
    assert result.claims and all(isinstance(c.held, bool) for c in result.claims)
    # one seed: a comparison over seeds has no interval and cannot hold
    assert all(not c.held for c in result.claims if NO_INTERVAL in c.measured)
    if name == "synthetic_study":  # every claim of experiment 1 is an ordering over seeds
        assert all(NO_INTERVAL in c.measured and not c.held for c in result.claims)
    report = (tmp_path / name / "report.md").read_text()
    assert "| claim | prediction | measured | held |" in report
    for figure in result.figures:
        assert (tmp_path / name / figure).stat().st_size > 1000
    records = [
        json.loads(line) for line in (tmp_path / name / "metrics.jsonl").read_text().splitlines()
    ]
    assert records and all(r["seed"] == 0 for r in records)


def test_resume_reuses_finished_steps_and_refuses_overwrite(tmp_path):
    config = load_theory_config("gradient_noise", TINY["gradient_noise"] + ["seeds=[0]"])
    first = run_theory(config, tmp_path, progress=False)
    with pytest.raises(ConfigError, match="already holds a theory run"):
        run_theory(config, tmp_path, progress=False)
    step = tmp_path / "steps" / "seed0.json"
    data = json.loads(step.read_text())
    data["result"]["exact"] = 123.0  # a resumed run must read the stored step, not recompute
    step.write_text(json.dumps(data))
    again = run_theory(config, tmp_path, resume=True, progress=False)
    assert "1.2e+02" in again.claims[0].measured and not again.claims[0].held
    assert first.claims[0].held
    other = load_theory_config("gradient_noise", TINY["gradient_noise"] + ["seeds=[1]"])
    with pytest.raises(ConfigError, match="another config"):
        run_theory(other, tmp_path, resume=True, progress=False)


def test_bad_theory_configs_get_clear_errors(tmp_path):
    with pytest.raises(ConfigError, match="no option 'num_sample'.*Did you mean 'num_samples'"):
        load_theory_config("gradient_noise", ["options.num_sample=3"]).resolved(quick=False)
    bad = tmp_path / "bad.yaml"
    bad.write_text("experiment: gradient_nois\n")
    with pytest.raises(UnknownNameError, match="Did you mean 'gradient_noise'"):
        load_theory_config(bad)
    bad.write_text("experiment: gradient_noise\nseed: [0]\n")
    with pytest.raises(ConfigError, match="seed"):
        load_theory_config(bad)
    with pytest.raises(FileNotFoundError, match="shipped theory configs"):
        load_theory_config(tmp_path / "missing.yaml")


def test_cli_theory_runs_one_config_and_prints_the_claims(tmp_path):
    out = tmp_path / "noise"
    result = CliRunner().invoke(
        app,
        [
            "theory",
            "gradient_noise",
            *TINY["gradient_noise"],
            "seeds=[0]",
            "--out",
            str(out),
            "--no-progress",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "With exact BCPs every per-sample gradient vanishes" in result.output
    assert (out / "report.md").is_file() and (out / "config.yaml").is_file()
