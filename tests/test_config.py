import pytest

from tfdml.training.config import DEFAULTS, ConfigError, load_config, parse_override


def write(tmp_path, text):
    path = tmp_path / "recipe.yaml"
    path.write_text(text)
    return str(path)


def test_recipe_merges_over_defaults_and_overrides_win(tmp_path):
    recipe = write(tmp_path, "epochs: 7\nloss:\n  class: TripletLoss\n  params: {margin: 0.3}\n")
    config = load_config(recipe, ["loss.params.margin=0.6", "model.weights=null", "sampler.batch_size=120"])
    assert config["epochs"] == 7
    assert config["loss"] == {"class": "TripletLoss", "params": {"margin": 0.6}}
    assert config["model"]["weights"] is None and config["sampler"]["batch_size"] == 120
    assert config["model"]["embedding_dim"] == DEFAULTS["model"]["embedding_dim"]


def test_unknown_keys_are_errors_that_name_the_path(tmp_path):
    with pytest.raises(ConfigError, match="'model.embeding_dim'"):
        load_config(write(tmp_path, "model: {embeding_dim: 64}\n"))
    with pytest.raises(ConfigError, match="'optimiser'"):
        load_config(None, ["optimiser.lr=1"])


def test_open_sections_accept_class_arguments(tmp_path):
    config = load_config(write(tmp_path, "miner: {class: SemiHardMiner, params: {margin: 0.1, anything: 1}}\n"))
    assert config["miner"]["params"] == {"margin": 0.1, "anything": 1}


@pytest.mark.parametrize(
    "override, message",
    [
        ("model.embedding_dim=0", "model.embedding_dim"),
        ("model.embedding_dim=-5", "model.embedding_dim"),
        ("sampler.batch_size=62", "divisible by sampler.samples_per_class=5"),
        ("epochs=0", "epochs"),
        ("distribute.strategy=tpu", "distribute.strategy"),
    ],
)
def test_invalid_values_name_the_key(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, [override])


def test_missing_recipe_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="nope.yaml"):
        load_config(str(tmp_path / "nope.yaml"))


def test_mapping_override_replaces_the_section_and_dotted_override_changes_one_key(tmp_path):
    recipe = write(tmp_path, "loss: {class: MarginLoss, params: {beta: 1.2, margin: 0.2}}\n")
    assert load_config(recipe, ["loss.params.beta=0.6"])["loss"]["params"] == {"beta": 0.6, "margin": 0.2}
    assert load_config(recipe, ["loss.params={}"])["loss"]["params"] == {}
    assert load_config(recipe, ["loss={class: TripletLoss}"])["loss"] == {"class": "TripletLoss"}


def test_override_values_are_yaml_typed():
    assert parse_override("a.b=0.6") == (["a", "b"], 0.6)
    assert parse_override("a=[1, 2]") == (["a"], [1, 2])
    with pytest.raises(ConfigError, match="key.path=value"):
        parse_override("epochs")
