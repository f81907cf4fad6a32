"""benchmarks/omniglot_study.py and benchmarks/study/: the YAML definitions and their run keys, the claim
verdicts, the report with both protocols side by side, batch composition, and short real runs."""

import dataclasses
import json
import os
import sys

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from benchmarks.study import claims, experiments, report, store, tuning  # noqa: E402
from benchmarks.study.batches import batch_composition  # noqa: E402

ROOT = "/data/omniglot"  # only resolved into the config, never read by the plan
TEN_EPOCH, CONVERGED = experiments.PROTOCOLS["ten_epoch"], experiments.PROTOCOLS["converged"]
EXPERIMENTS = experiments.EXPERIMENTS


def key(experiment, label, protocol=TEN_EPOCH):
    return experiments.row_runs(experiment, protocol, ROOT)[label][0]


def test_configurations_shared_by_experiments_are_planned_once_seed_major():
    assert key("wu_table1", "distance-weighted / margin") == key("wu_beta", "learned β⁽⁰⁾ + β_class")
    assert key("wu_table1", "distance-weighted / margin") == key("roth_rho", "margin (D)")
    assert key("wu_table1", "distance-weighted / margin") == key("roth_sampling", "margin (D) / SPC-4")
    assert key("wu_table1", "distance-weighted / contrastive") == key("roth_rho", "contrastive (D)")
    assert key("wu_beta", "fixed β = 1.2") != key("wu_beta", "learned β⁽⁰⁾ + β_class")
    runs = experiments.planned_runs(list(EXPERIMENTS), [0, 1, 2], ROOT)
    labels = sum(len(spec["rows"]) for spec in EXPERIMENTS.values())
    assert len(runs) == 3 * 35 and labels == 40
    assert [seed for _, _, seed in runs] == [0] * 35 + [1] * 35 + [2] * 35
    assert len({(k, seed) for k, _, seed in runs}) == len(runs)


def test_yaml_definitions_resolve_to_the_keys_of_the_recorded_ten_epoch_runs():
    """The YAML rows are the configurations issue 8 trained (its records were written by the old
    Python definitions, with their override strings): same keys, so the study resumes and reports them."""
    recorded = {}
    for record in store.read_records(TEN_EPOCH.results):
        recorded.setdefault(record["key"], record["overrides"])
    planned = {k for k, _, _ in experiments.planned_runs(list(EXPERIMENTS), [0], ROOT)}
    assert planned == set(recorded) and len(planned) == 35
    for recorded_key, old_overrides in recorded.items():
        assert experiments.config_key((*old_overrides, *TEN_EPOCH.overrides), ROOT) == recorded_key
    assert key("wu_table1", "random / contrastive") == "3d69988bf210b393"


def test_every_configuration_names_existing_classes_and_changes_only_its_component():
    import tfdml.losses
    import tfdml.mining
    import tfdml.sampling

    for experiment in EXPERIMENTS:
        for _, overrides in experiments.row_runs(experiment, TEN_EPOCH, ROOT).values():
            config = experiments.resolved_config(overrides, 0, ROOT)
            assert hasattr(tfdml.losses, config["loss"]["class"])
            assert config["miner"]["class"] is None or hasattr(tfdml.mining, config["miner"]["class"])
            assert hasattr(tfdml.sampling, config["sampler"]["class"])
            assert (config["epochs"], config["model"]["embedding_dim"], config["data"]["image_size"]) == (10, 64, 28)
            assert config["data"]["validation"] is None


def test_converged_protocol_holds_out_validation_classes_with_one_budget_per_comparison():
    keys = set()
    for experiment in EXPERIMENTS:
        budgets = set()
        for row_key, overrides in experiments.row_runs(experiment, CONVERGED, ROOT).values():
            config = experiments.resolved_config(overrides, 0, ROOT)
            assert config["data"]["validation"] == ["Latin"] and config["evaluation"]["every_n_epochs"] == 1
            assert config["data"]["rotations"] == (experiment == "fastap")
            budgets.add((config["epochs"], config["steps_per_epoch"], config["sampler"]["batch_size"]))
            space = tuning.search_space(config, CONVERGED.tuning)
            assert "optimizer.learning_rate" in space and any(path.startswith("loss.params.") for path in space)
            assert ("miner.params.p_switch" in space) == bool(config["miner"]["params"].get("p_switch"))
            keys.add(row_key)
        assert len(budgets) == 1, (experiment, budgets)
    assert len(keys) == 35 and not keys & {k for k, _, _ in experiments.planned_runs(list(EXPERIMENTS), [0], ROOT)}
    # A tuned protocol trains a row only once it has tuned values, and with them.
    margin = key("wu_table1", "distance-weighted / margin", CONVERGED)
    tuned = {margin: {"optimizer.learning_rate": 5e-4, "loss.params.margin": 0.1}}
    runs = experiments.configurations(list(EXPERIMENTS), CONVERGED, ROOT, tuned)
    ((_, (experiment, label, overrides)),) = runs.items()
    config = experiments.resolved_config(overrides, 0, ROOT)
    assert label == "distance-weighted / margin" and config["optimizer"]["learning_rate"] == 5e-4
    assert config["loss"]["params"]["margin"] == 0.1 and config["loss"]["params"]["learn_beta"]


def records(protocol, winner_bonus, seeds=(0, 1, 2), experiment_names=None, tuned=None, curve=False):
    """Synthetic results: every configuration at R@1 0.5 + noise, distance-weighted margin plus a bonus."""
    rng = np.random.default_rng(0)
    winner = experiments.row_runs("wu_table1", protocol, ROOT, tuned)["distance-weighted / margin"][0]
    worst = experiments.row_runs("wu_table1", protocol, ROOT, tuned)["random / contrastive"][0]
    out = []
    for run_key, overrides, seed in experiments.planned_runs(experiment_names or list(EXPERIMENTS), seeds, ROOT,
                                                              protocol, tuned):
        bonus = winner_bonus if run_key == winner else 0.0
        value = 0.5 + bonus + (-0.2 if run_key == worst else 0.0) + 0.01 * rng.standard_normal()
        record = {"key": run_key, "seed": seed, "overrides": list(overrides), "recall_at_1": value,
                  "map_at_r": value / 2, "nmi": value, "rho_train": 0.3 - bonus, "rho_test": 0.3,
                  "rank_train": 40 + 10 * bonus, "final_loss": 0.1, "seconds": 30.0, "learned_beta": None}
        if curve:
            record.update(best_epoch=8, curve=[{"epoch": e, "loss": 1.0 / e, "val_recall_at_1": value * min(e, 8) / 8}
                                               for e in range(1, 11)])
        out.append(record)
    return out


def test_time_estimate_scales_with_the_images_each_pending_run_trains():
    """A rotation-expanded FastAP run trains 4× the images of a batch-64 run (68 steps of 128 vs 34 of
    64): timed by the recorded batch-64 runs it is estimated 4× longer, not at their mean."""
    _, margin = experiments.row_runs("wu_beta", CONVERGED, ROOT)["fixed β = 0.8"]
    _, fastap = experiments.row_runs("fastap", CONVERGED, ROOT)["FastAP / category-hard"]
    recorded = [{"overrides": list(margin), "seconds": 300.0}] * 2
    assert store.estimated_minutes([margin], recorded, ROOT, workers=1) == "5 min"
    assert store.estimated_minutes([fastap, fastap], recorded, ROOT, workers=2) == "20 min"
    assert store.estimated_minutes([], recorded, ROOT, workers=2) == "0 min"
    assert "unknown" in store.estimated_minutes([margin], [], ROOT, workers=2)
    # The ten-epoch runs take their sampler's own epoch (steps_per_epoch null): the recorded mean per run.
    _, ten_epoch = experiments.row_runs("wu_table1", TEN_EPOCH, ROOT)["random / contrastive"]
    mixed = [{"overrides": list(ten_epoch), "seconds": 60.0}, {"overrides": list(margin), "seconds": 180.0}]
    assert store.estimated_minutes([ten_epoch] * 3, mixed, ROOT, workers=1) == "6 min"


def test_compare_and_verdict():
    a = {"n": 3, "recall_at_1": (0.60, 0.01)}
    b = {"n": 3, "recall_at_1": (0.50, 0.01)}
    difference, ratio = claims.compare(a, b)
    assert difference == pytest.approx(10.0) and ratio == pytest.approx(0.10 / np.sqrt(2 * 0.01**2 / 3))
    assert claims.verdict(difference, ratio).startswith("**held**")
    assert claims.verdict(0.5, 1.0).startswith("**held, within noise**")
    assert claims.verdict(-1.0, -3.0) == "**did not hold** (-1.0 pts, -3.0 SE)"
    assert claims.verdict(-1.0, float("nan")) == "**did not hold** (-1.0 pts, one seed: no SE)"
    assert claims.Finding("c", claims.verdict(0.5, 1.0)).verdict == "held, within noise"
    assert claims.Finding("c", "5/6").verdict == "5/6" and claims.Finding("c", "ranks 1 and 2").verdict is None


@pytest.fixture
def study_files(tmp_path, monkeypatch):
    """Both protocols' stores and the report in ``tmp_path``."""
    monkeypatch.setattr(report, "REPORT", str(tmp_path / "results.md"))
    results = tmp_path / "results"
    return {
        "ten_epoch": dataclasses.replace(TEN_EPOCH, results=str(results / "study.jsonl")),
        "converged": dataclasses.replace(CONVERGED, results=str(results / "converged.jsonl"),
                                         tuned=str(results / "tuned.jsonl")),
    }


@pytest.mark.parametrize("bonus, expected", [(0.1, "**held**"), (-0.1, "**did not hold**")])
def test_report_states_whether_a_claim_held(bonus, expected, tmp_path, study_files):
    for record in records(study_files["ten_epoch"], bonus):
        store.append_record(record, study_files["ten_epoch"].results)
    (tmp_path / "results.md").write_text("old generated text\n" + report.NOTES_MARKER + "\nkept notes\n")
    report.write_report(ROOT, study_files)
    text = (tmp_path / "results.md").read_text()
    best_line = next(line for line in text.splitlines() if line.startswith("- Distance-weighted + margin is the best combination (R@1)"))
    assert expected in best_line
    assert "- Contrastive with random sampling is the worst: **held**" in text
    assert "old generated text" not in text and text.endswith("\nkept notes\n")
    for experiment in EXPERIMENTS:
        assert (tmp_path / "results" / f"{experiment}.png").stat().st_size > 1000
    assert "| distance-weighted / margin |" in text and "105 runs" in text
    assert "Converged" not in text  # no converged runs or tuned values yet: the 10-epoch report alone


def test_an_experiment_is_judged_only_once_every_row_has_all_its_seeds(tmp_path, study_files):
    worst = key("wu_table1", "random / contrastive")
    for record in records(study_files["ten_epoch"], 0.1):
        if (record["key"], record["seed"]) != (worst, 2):
            store.append_record(record, study_files["ten_epoch"].results)
    report.write_report(ROOT, study_files)
    text = (tmp_path / "results.md").read_text()
    assert "Claims are judged once all 12 rows have run seeds [0, 1, 2]: 11 have so far." in text
    assert "is the best combination" not in text and "- Learned class-specific β beats every fixed β (R@1)" in text


def test_report_sets_both_protocols_side_by_side_and_names_changed_verdicts(tmp_path, study_files):
    ten_epoch, converged = study_files["ten_epoch"], study_files["converged"]
    for record in records(ten_epoch, -0.1):
        store.append_record(record, ten_epoch.results)
    untuned = experiments.configurations(["wu_table1", "wu_beta"], converged, ROOT)
    for untuned_key in untuned:
        store.append_record({"key": untuned_key, "values": {"optimizer.learning_rate": 1e-3}, "score": 0.5, "trials": 8,
                             "epochs": 15, "seconds": 1.0}, converged.tuned)
    tuned = tuning.read_tuned(converged)
    for record in records(converged, 0.1, experiment_names=["wu_table1", "wu_beta"], tuned=tuned, curve=True):
        store.append_record(record, converged.results)
    report.write_report(ROOT, study_files)
    text = (tmp_path / "results.md").read_text()
    assert "# Converged, fairly tuned models" in text and converged.budget_rule in text
    assert "| wu_table1: distance-weighted / margin | learning_rate = 0.001 | 50.0 |" in text
    assert "| roth_sampling: multi-similarity / SPC-2 | not yet run | |" in text
    side = text[text.index("## 10 epochs vs converged"):]
    row = next(line for line in side.splitlines() if "is the best combination (R@1)" in line)
    assert "**did not hold**" in row.split("|")[3] and "**held**" in row.split("|")[4]
    assert "| fastap | Category-hard batches beat random batches (R@1) |" in side and "| not yet run |" in side
    changed = text[text.index("## What changed from the 10-epoch study"):]
    assert "- wu_table1: Distance-weighted + margin is the best combination (R@1): did not hold → held" in changed
    # margin (D) is also roth_sampling's SPC-4 row; it, contrastive (D) and triplet (D) are roth_rho rows:
    # those are partly run, so their tables show but no claim is judged until their other rows run.
    assert ("Not yet judged under the converged protocol (not all rows done): roth_sampling (1/14 rows done), "
            "roth_rho (3/8 rows done), fastap.") in changed
    assert "Claims are judged once all 8 rows have run seeds [0, 1, 2]: 3 have so far." in text
    assert next(line for line in side.splitlines()
                if "| R-triplet (D) > triplet (D) |" in line).endswith("| not yet judged (3/8 rows done) |")
    assert "| distance-weighted / margin | 10 | 8.0 |" in text and "3/3 seeds" in text
    assert (tmp_path / "results" / "converged_curves.png").stat().st_size > 1000
    assert (tmp_path / "results" / "converged_wu_table1.png").stat().st_size > 1000


@pytest.mark.parametrize("bonus, extra", [(0.0, True), (0.1, False)])
def test_decisive_comparisons_within_2_se_after_3_seeds_get_seeds_3_and_4(bonus, extra):
    """wu_beta's learned β against its closest fixed β: R@1 0.5 ± 0.01 noise on both (well within
    2 SE) asks for seeds 3 and 4 of both rows, a 10-point lead (≈ 10 SE) for none; a partly run
    experiment is not looked at, and 5 recorded seeds end the asking."""
    untuned = experiments.configurations(list(EXPERIMENTS), CONVERGED, ROOT)
    tuned = {untuned_key: {"optimizer.learning_rate": 1e-3} for untuned_key in untuned}
    recorded = records(CONVERGED, bonus, experiment_names=["wu_beta"], tuned=tuned)
    runs = claims.extra_runs(["wu_beta", "roth_rho"], CONVERGED, ROOT, recorded, tuned)
    rows = experiments.row_runs("wu_beta", CONVERGED, ROOT, tuned)
    summary = claims.summarize(recorded)
    entries = dict(claims.rows_of("wu_beta", summary, CONVERGED, ROOT, tuned))
    rival = claims.closest_rival(entries, "learned β⁽⁰⁾ + β_class")
    expected = {(rows[label][0], seed) for label in ("learned β⁽⁰⁾ + β_class", rival) for seed in (3, 4)}
    assert {(run_key, seed) for run_key, _, seed in runs} == (expected if extra else set())
    overrides_of = dict(rows.values())
    assert all(overrides == overrides_of[run_key] for run_key, overrides, _ in runs)
    partial = [record for record in recorded if record["key"] != rows["fixed β = 1.2"][0]]
    assert claims.extra_runs(["wu_beta"], CONVERGED, ROOT, partial, tuned) == []
    five = recorded + [{**record, "seed": seed} for record in recorded for seed in (3, 4) if record["seed"] == 0]
    assert claims.extra_runs(["wu_beta"], CONVERGED, ROOT, five, tuned) == []


def test_flattening_follows_the_budget_rule():
    rising = [{"epoch": e, "val_recall_at_1": e / 100} for e in range(1, 41)]
    flat = [{"epoch": e, "val_recall_at_1": min(e, 20) / 100} for e in range(1, 41)]
    assert report.flattening(rising, "val_recall_at_1", 0.01) == (pytest.approx(0.10), False)
    assert report.flattening(flat, "val_recall_at_1", 0.01) == (pytest.approx(0.0), True)


def test_categories_per_batch_of_category_hard_and_random_batches():
    from tfdml.sampling import CategoryHardSampler, RandomClassSampler

    # 4 categories of 10 classes of 4 images: random 32-image batches hold ~8 classes from ~4 categories.
    labels = np.repeat(np.arange(40), 4)
    categories = labels // 10
    hard = batch_composition(CategoryHardSampler(labels, categories, batch_size=32, seed=0), categories)
    random = batch_composition(RandomClassSampler(labels, batch_size=32, seed=0), categories)
    assert hard["categories_per_batch"] == 2.0
    assert 3.0 < random["categories_per_batch"] <= 4.0 and random["classes_per_batch"] >= 8.0
    assert hard["same_category_negatives"] > random["same_category_negatives"]
    assert batch_composition(RandomClassSampler(labels, batch_size=32), None) is None


# The short real runs check what a record holds, not how good the model is: 8 filters instead of the
# recipe's 64 make training and embedding the drawings for the record's metrics and spectra cheap.
SHORT = ("steps_per_epoch=2", "model.filters=8")


@pytest.mark.slow
def test_one_short_run_on_real_omniglot(omniglot_dir):
    _, overrides = experiments.row_runs("wu_beta", TEN_EPOCH, ROOT)["learned β⁽⁰⁾ + β_class"]
    result = store.run_one((*overrides, *SHORT, "epochs=1"), 0, omniglot_dir)
    assert set(experiments.METRICS) <= set(result) and 0 < result["recall_at_1"] <= 1
    assert np.isfinite(result["rho_train"]) and result["learned_beta"]["min"] <= result["learned_beta"]["max"]
    assert "curve" not in result and result["batch_composition"]["categories_per_batch"] > 1
    json.dumps(result)


@pytest.mark.slow
def test_one_short_converged_run_records_its_validation_curve(omniglot_dir):
    _, overrides = experiments.row_runs("fastap", CONVERGED, ROOT)["FastAP / category-hard"]
    result = store.run_one((*overrides, *SHORT, "epochs=2"), 0, omniglot_dir)
    assert [point["epoch"] for point in result["curve"]] == [1, 2] and result["best_epoch"] in (1, 2)
    assert all(0 <= point["val_recall_at_1"] <= 1 and "loss" in point for point in result["curve"])
    best = max(result["curve"], key=lambda point: point["val_recall_at_1"])
    assert best["epoch"] == result["best_epoch"]
    assert result["batch_composition"]["categories_per_batch"] == 2.0  # category-hard: one pair of alphabets
    json.dumps(result)


@pytest.mark.slow
def test_one_short_search_on_real_omniglot(omniglot_dir, tmp_path):
    row_key, overrides = experiments.row_runs("roth_rho", CONVERGED, ROOT)["R-triplet (D)"]
    budget = {**CONVERGED.tuning, "max_trials": 1, "epochs": 1}
    result = tuning.tune_configuration(row_key, (*overrides, *SHORT), omniglot_dir, budget, str(tmp_path))
    assert set(result["values"]) == {"optimizer.learning_rate", "loss.params.margin", "miner.params.p_switch"}
    assert result["values"]["miner.params.p_switch"] in CONVERGED.tuning["p_switch"]["values"]
    assert 0 <= result["score"] <= 1 and result["trials"] == 1
    assert 0 < result["seconds"] < 600  # the one trial's recorded training time
    json.dumps(result)
