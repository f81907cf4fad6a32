"""benchmarks/omniglot_study.py: the plan, the claim verdicts and the report, and one real (short) run."""

import importlib.util
import json
import os

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
spec = importlib.util.spec_from_file_location("omniglot_study", os.path.join(REPO, "benchmarks", "omniglot_study.py"))
study = importlib.util.module_from_spec(spec)
spec.loader.exec_module(study)

ROOT = "/data/omniglot"  # only resolved into the config, never read by the plan


def key(experiment, label):
    return study.config_key(study.EXPERIMENTS[experiment]["rows"][label], ROOT)


def test_configurations_shared_by_experiments_are_planned_once_seed_major():
    assert key("wu_table1", "distance-weighted / margin") == key("wu_beta", "learned β⁽⁰⁾ + β_class")
    assert key("wu_table1", "distance-weighted / margin") == key("roth_rho", "margin (D)")
    assert key("wu_table1", "distance-weighted / margin") == key("roth_sampling", "margin (D) / SPC-4")
    assert key("wu_table1", "distance-weighted / contrastive") == key("roth_rho", "contrastive (D)")
    assert key("wu_beta", "fixed β = 1.2") != key("wu_beta", "learned β⁽⁰⁾ + β_class")
    runs = study.planned_runs(list(study.EXPERIMENTS), [0, 1, 2], ROOT)
    labels = sum(len(spec["rows"]) for spec in study.EXPERIMENTS.values())
    assert len(runs) == 3 * 35 and labels == 40
    assert [seed for _, _, seed in runs] == [0] * 35 + [1] * 35 + [2] * 35
    assert len({(k, seed) for k, _, seed in runs}) == len(runs)


def test_every_configuration_names_existing_classes_and_changes_only_its_component():
    import tfdml.losses
    import tfdml.mining
    import tfdml.sampling

    for experiment in study.EXPERIMENTS.values():
        for overrides in experiment["rows"].values():
            config = study.resolved_config(overrides, 0, ROOT)
            assert hasattr(tfdml.losses, config["loss"]["class"])
            assert config["miner"]["class"] is None or hasattr(tfdml.mining, config["miner"]["class"])
            assert hasattr(tfdml.sampling, config["sampler"]["class"])
            assert (config["epochs"], config["model"]["embedding_dim"], config["data"]["image_size"]) == (10, 64, 28)


def records(winner_bonus, seeds=(0, 1, 2)):
    """Synthetic results: every configuration of the study at R@1 0.5 + noise, distance-weighted margin plus a bonus."""
    rng = np.random.default_rng(0)
    out = []
    for run_key, overrides, seed in study.planned_runs(list(study.EXPERIMENTS), seeds, ROOT):
        bonus = winner_bonus if run_key == key("wu_table1", "distance-weighted / margin") else 0.0
        worst = -0.2 if run_key == key("wu_table1", "random / contrastive") else 0.0
        value = 0.5 + bonus + worst + 0.01 * rng.standard_normal()
        out.append({"key": run_key, "seed": seed, "overrides": list(overrides), "recall_at_1": value, "map_at_r": value / 2,
                    "nmi": value, "rho_train": 0.3 - bonus, "rho_test": 0.3, "rank_train": 40 + 10 * bonus, "final_loss": 0.1, "seconds": 30.0,
                    "learned_beta": None})
    return out


def test_compare_and_verdict():
    a = {"n": 3, "recall_at_1": (0.60, 0.01)}
    b = {"n": 3, "recall_at_1": (0.50, 0.01)}
    difference, ratio = study.compare(a, b)
    assert difference == pytest.approx(10.0) and ratio == pytest.approx(0.10 / np.sqrt(2 * 0.01**2 / 3))
    assert study.verdict(difference, ratio).startswith("**held**")
    assert study.verdict(0.5, 1.0).startswith("**held, within noise**")
    assert study.verdict(-1.0, 3.0).startswith("**did not hold**")


@pytest.mark.parametrize("bonus, expected", [(0.1, "**held**"), (-0.1, "**did not hold**")])
def test_report_states_whether_a_claim_held(bonus, expected, tmp_path, monkeypatch):
    results, report = tmp_path / "results" / "study.jsonl", tmp_path / "results.md"
    monkeypatch.setattr(study, "RESULTS", str(results))
    monkeypatch.setattr(study, "REPORT", str(report))
    for record in records(bonus):
        study.append_result(record, str(results))
    report.write_text("old generated text\n" + study.NOTES_MARKER + "\nkept notes\n")
    study.write_report(ROOT)
    text = report.read_text()
    best_line = next(line for line in text.splitlines() if line.startswith("- Distance-weighted + margin is the best combination (R@1)"))
    assert expected in best_line
    assert "- Contrastive with random sampling is the worst: **held**" in text
    assert "old generated text" not in text and text.endswith("\nkept notes\n")
    for experiment in study.EXPERIMENTS:
        assert (tmp_path / "results" / f"{experiment}.png").stat().st_size > 1000
    assert "| distance-weighted / margin |" in text and "105 runs" in text


def test_one_short_run_on_real_omniglot(omniglot_dir):
    overrides = study.EXPERIMENTS["wu_beta"]["rows"]["learned β⁽⁰⁾ + β_class"]
    result = study.run_one((*overrides, "epochs=1", "steps_per_epoch=2"), 0, omniglot_dir)
    assert set(study.METRICS) <= set(result) and 0 < result["recall_at_1"] <= 1
    assert np.isfinite(result["rho_train"]) and result["learned_beta"]["min"] <= result["learned_beta"]["max"]
    json.dumps(result)
