"""tfdml.registry: names to builders, one registry per kind (datasets, backbones, optimizers)."""

import pytest

from tfdml.registry import Registry


def test_names_and_aliases_resolve_to_their_builder():
    registry = Registry("widget")

    @registry.register("round", "circle")
    def round_widget():
        return "round"

    registry.register("square")(str)
    assert registry.get("circle") is registry.get("round") is round_widget
    assert registry.names == ("circle", "round", "square") and list(registry) == list(registry.names)
    assert "square" in registry and "oval" not in registry


def test_an_unknown_name_is_one_error_listing_the_known_ones():
    registry = Registry("widget")
    registry.register("b", "a")(str)
    with pytest.raises(ValueError, match=r"^unknown widget 'c'; expected one of a, b\.$"):
        registry.get("c")


def test_a_name_registered_twice_is_refused():
    registry = Registry("widget")
    registry.register("a")(str)
    with pytest.raises(ValueError, match=r"^widget 'a' is already registered"):
        registry.register("a")(repr)
    assert registry.get("a") is str


def test_a_fallback_resolves_unregistered_names_and_completes_the_error():
    registry = Registry("widget")
    registry.register("a")(str)

    @registry.fallback("any upper-case name")
    def upper(name):
        return repr if name.isupper() else None

    assert registry.get("a") is str and registry.get("XY") is repr
    assert "XY" in registry and "xy" not in registry and registry.names == ("a",)
    with pytest.raises(ValueError, match=r"^unknown widget 'xy'; expected one of a, or any upper-case name\.$"):
        registry.get("xy")
