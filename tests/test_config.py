"""BOTSConfig: the implicit weight's default follows the availability of reference pass rates."""

from __future__ import annotations

import json

import numpy as np
import pytest

from trl_bots import BOTSConfig
from trl_bots.domains import resolve_domain_weights


def test_implicit_weight_default_depends_on_reference_columns(tmp_path):
    assert BOTSConfig(str(tmp_path), use_cpu=True).bots_implicit_weight == 0.0
    with_reference = BOTSConfig(str(tmp_path), use_cpu=True, bots_reference_columns=["weak", "strong"])
    assert with_reference.bots_implicit_weight == 0.1  # the paper's rho
    explicit = BOTSConfig(str(tmp_path), use_cpu=True, bots_reference_columns=["w", "s"], bots_implicit_weight=0.3)
    assert explicit.bots_implicit_weight == 0.3


def test_explicit_implicit_weight_without_reference_columns_is_an_error(tmp_path):
    with pytest.raises(ValueError, match=r"bots_implicit_weight=0.2 needs implicit evidence.*bots_reference_columns"):
        BOTSConfig(str(tmp_path), use_cpu=True, bots_implicit_weight=0.2)


def test_cap_fit_defaults_to_robust_and_is_checked(tmp_path):
    assert BOTSConfig(str(tmp_path), use_cpu=True).bots_cap_fit == "robust"
    assert BOTSConfig(str(tmp_path), use_cpu=True, bots_cap_fit="paper").bots_cap_fit == "paper"
    with pytest.raises(ValueError, match="bots_cap_fit must be one of 'robust', 'paper', got 'exact'"):
        BOTSConfig(str(tmp_path), use_cpu=True, bots_cap_fit="exact")


def test_numpy_scalars_are_accepted_as_plain_floats_and_bools_are_refused(tmp_path):
    config = BOTSConfig(
        str(tmp_path),
        use_cpu=True,
        bots_target_pass_rate=np.float32(0.5),
        bots_forgetting=np.float64(0.2),
        bots_prior_alpha=np.int64(2),
        bots_pseudo_count=np.float32(8.0),
    )
    assert (config.bots_target_pass_rate, config.bots_forgetting, config.bots_prior_alpha) == (0.5, 0.2, 2.0)
    assert type(config.bots_pseudo_count) is float
    assert json.loads(config.to_json_string())["bots_forgetting"] == 0.2  # saved with every checkpoint
    for field, value in (("bots_forgetting", True), ("bots_target_pass_rate", np.bool_(True))):
        with pytest.raises(ValueError, match=f"{field} must be a number in .*, got {value!r}"):
            BOTSConfig(str(tmp_path), use_cpu=True, **{field: value})


def test_numpy_domain_weights_are_plain_floats_and_bools_are_refused(tmp_path):
    weights = {"x": np.float32(1.5), "y": np.int64(2)}
    config = BOTSConfig(str(tmp_path), use_cpu=True, bots_domain_column="d", bots_domain_weights=weights)
    assert config.bots_domain_weights == {"x": 1.5, "y": 2.0}
    assert json.loads(config.to_json_string())["bots_domain_weights"] == {"x": 1.5, "y": 2.0}  # saved with checkpoints
    sizes = np.array([3, 3])
    np.testing.assert_array_equal(resolve_domain_weights(config.bots_domain_weights, ["x", "y"], sizes), [1.5, 2.0])
    for flag in (True, np.bool_(True)):
        config = BOTSConfig(
            str(tmp_path), use_cpu=True, bots_domain_column="d", bots_domain_weights={"x": flag, "y": 1}
        )
        with pytest.raises(ValueError, match=r"domain_weights must be finite numbers >= 0, got \{'x': "):
            resolve_domain_weights(config.bots_domain_weights, ["x", "y"], sizes)


def test_the_hyperparameter_table_names_real_fields_and_arguments_and_resolves_defaults(tmp_path):
    """The table BOTSConfig and BOTSSelector both check against: every field and argument exists, and the derived
    defaults (pseudo count, seed) are resolved by the config."""
    import inspect

    from trl_bots import BOTSSelector
    from trl_bots.validation import HYPERPARAMETERS

    arguments = inspect.signature(BOTSSelector).parameters
    for parameter in HYPERPARAMETERS:
        assert parameter.argument in arguments
        assert all(field in BOTSConfig.__dataclass_fields__ for field in parameter.fields)
    config = BOTSConfig(str(tmp_path), use_cpu=True, num_generations=4, per_device_train_batch_size=8, seed=7)
    assert (config.bots_pseudo_count, config.bots_seed, config.tasks_per_round) == (4.0, 7, 2)
    explicit = BOTSConfig(str(tmp_path), use_cpu=True, bots_pseudo_count=3, bots_seed=11, seed=7)
    assert (explicit.bots_pseudo_count, explicit.bots_seed) == (3.0, 11)
    values = {parameter.argument: parameter.config_value(config) for parameter in HYPERPARAMETERS}
    assert values["prior"] == (1.0, 1.0) and values["target"] == 0.5
