"""pipelines/omniglot_multilabel.yaml end to end at a tiny size: MultiSupConLoss on Omniglot pairs with the
shared-label sampler, evaluated with the multi-label metrics, then exported."""

import numpy as np
import pytest

import paths
from tfdml import run
from tfdml.training.config import load_config

RECIPE = paths.REPO / "pipelines" / "omniglot_multilabel.yaml"


@pytest.mark.slow
def test_the_multi_label_recipe_trains_evaluates_and_exports(tmp_path, monkeypatch):
    exported = []  # SavedModel writing is tested in tests/test_export.py; here, that the run reaches it
    monkeypatch.setattr(run, "export_once", lambda folder, config, name, export: exported.append(name) or name)
    config = load_config(RECIPE, [
        "epochs=1", "steps_per_epoch=2", "evaluation.every_n_epochs=1", "model.filters=8", "model.embedding_dim=16",
        "data.image_size=12", "sampler.batch_size=8", "data.params={characters: 6}", "evaluation.recall_k=[1, 4]",
        f"run_dir={tmp_path}/runs", f"export.dir={tmp_path}/models",
    ])
    result = run.train(config, verbose=0)
    rows = result["metrics"]
    assert set(rows) == {"raw pixels", "untrained", "trained"}
    assert set(rows["trained"]) == {"recall_at_1", "recall_at_4", "precision_at_1", "precision_at_4", "map_at_r"}
    assert all(0.0 < value <= 1.0 for row in rows.values() for value in row.values())
    assert rows["trained"]["recall_at_1"] == rows["trained"]["precision_at_1"]  # one neighbour: the same event
    assert exported == ["omniglot_multilabel"] and np.isfinite(rows["trained"]["map_at_r"])
