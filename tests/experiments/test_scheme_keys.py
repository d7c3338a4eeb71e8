"""The gsfl and hierarchical keys are checked before anything runs, naming the field."""

import pytest

from splittune.experiments.config import ConfigError, load_config


@pytest.mark.parametrize("overrides, words", [
    (["scheme=gsfl", "devices=4", "gsfl.groups=5"], ["gsfl.groups must be in 1..4", "got 5"]),
    (["scheme=gsfl", "gsfl.groups=0"], ["gsfl.groups", "greater than or equal to 1"]),
    (["scheme=hierarchical", "devices=3", "scenario.edges=4"], ["scenario.edges must be in 1..3", "got 4"]),
    (["scheme=hierarchical", "scenario.cloud.backhaul_bps=0"], ["backhaul_bps", "greater than 0"]),
    (["scheme=hierarchical", "scenario.cloud.profile=mainframe"], ["cloud.profile", "unknown server profile"]),
    (["scheme=hierarchical", "split.edge_cut=0"], ["split.edge_cut", "greater than or equal to 1"]),
])
def test_bad_values_are_rejected_with_the_field(overrides, words):
    with pytest.raises(ConfigError) as err:
        load_config(None, overrides)
    for word in words:
        assert word in str(err.value), (word, str(err.value))


def test_more_groups_than_devices_is_fine_for_a_scheme_that_has_none():
    assert load_config(None, ["scheme=sft", "devices=2", "gsfl.groups=3"]).gsfl.groups == 3
