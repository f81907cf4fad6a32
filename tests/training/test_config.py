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


# Issue 14, item 8: override values follow YAML 1.2 number rules and every value is type-checked.
@pytest.mark.parametrize(
    "override, key, value",
    [
        ("optimizer.learning_rate=1e-3", "learning_rate", 1e-3),
        ("optimizer.weight_decay=1E-4", "weight_decay", 1e-4),
        ("optimizer.learning_rate=2", "learning_rate", 2),
    ],
)
def test_overrides_read_exponent_numbers_as_floats(override, key, value):
    assert load_config(None, [override])["optimizer"][key] == value


def test_yaml_1_2_scalars_in_overrides_and_recipes(tmp_path):
    assert parse_override("a=1e-3") == (["a"], 1e-3)
    assert parse_override("a=yes") == (["a"], "yes")  # YAML 1.1 would read True
    assert parse_override("a=010") == (["a"], 10)  # YAML 1.1 would read octal 8
    assert load_config(write(tmp_path, "optimizer: {learning_rate: 5e-4}\n"))["optimizer"]["learning_rate"] == 5e-4


@pytest.mark.parametrize(
    "override, message",
    [
        ("epochs=true", "epochs must be an integer; got True"),
        ("epochs=2.5", "epochs must be an integer; got 2.5"),
        ("optimizer.learning_rate=fast", "optimizer.learning_rate must be a number; got 'fast'"),
        ("model.normalize=1", "model.normalize must be a boolean; got 1"),
        ("evaluation.recall_k=4", "evaluation.recall_k must be a list; got 4"),
        ("loss.class=null", "loss.class must be a string; got None"),
        ("steps_per_epoch=ten", "steps_per_epoch must be an integer or null; got 'ten'"),
    ],
)
def test_values_of_the_wrong_type_are_errors_naming_key_value_and_type(override, message):
    with pytest.raises(ConfigError) as error:
        load_config(None, [override])
    assert message in str(error.value)


def test_types_of_recipe_values_are_checked_too(tmp_path):
    with pytest.raises(ConfigError, match="seed must be an integer; got 'zero'"):
        load_config(write(tmp_path, "seed: zero\n"))


def test_nullable_keys_accept_null():
    config = load_config(None, ["sampler.samples_per_class=null", "optimizer.weight_decay=null", "export.version=3"])
    assert config["sampler"]["samples_per_class"] is None and config["export"]["version"] == 3


def test_written_configs_read_back_equal_with_yaml_1_1_and_1_2(tmp_path):
    import yaml

    from tfdml.training.config import dump_config, read_config

    config = load_config(None, ["name='1e3'", "export.gallery=yes", "optimizer.learning_rate=1e-5"])
    dump_config(config, tmp_path / "c.yaml")
    assert read_config(tmp_path / "c.yaml") == config
    assert yaml.safe_load((tmp_path / "c.yaml").read_text()) == config


# Issue 14, item 5: run names are single folder names, validated before anything is written.
@pytest.mark.parametrize("name", ["../../evil", "a/b", "..", ".hidden", "", "/abs"])
def test_run_names_that_are_not_one_folder_name_are_refused(name):
    with pytest.raises(ConfigError, match="name="):
        load_config(None, [f"name={name}"] if name else ["name=''"])


# Issue 14, item 9: YAML syntax errors and unsafe tags name the file, the line and the problem.
def test_yaml_syntax_error_names_file_line_and_problem(tmp_path):
    recipe = write(tmp_path, "epochs: 3\nloss: {class: MarginLoss\nseed: 1\n")
    with pytest.raises(ConfigError) as error:
        load_config(recipe)
    message = str(error.value)
    assert recipe in message and "line 3" in message and "expected ',' or '}'" in message


def test_unsafe_tag_is_not_executed_and_is_a_config_error(tmp_path):
    marker = tmp_path / "pwned"
    recipe = write(tmp_path, f"seed: !!python/object/apply:os.system ['touch {marker}']\n")
    with pytest.raises(ConfigError) as error:
        load_config(recipe)
    message = str(error.value)
    assert recipe in message and "line 1" in message and "python/object/apply" in message
    assert not marker.exists()


def test_override_syntax_error_names_the_override():
    with pytest.raises(ConfigError, match="override 'loss.params=\\{a: 1'"):
        load_config(None, ["loss.params={a: 1"])
