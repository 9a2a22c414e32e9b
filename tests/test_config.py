"""Every group option composes; schemas reject typos and wrong types; validation names the fix."""

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf
from omegaconf.errors import ConfigKeyError, ValidationError

from repro.config import ConfigError, LTHConfig, register_configs, validate

CONF = Path(__file__).resolve().parent.parent / "conf"
register_configs()


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


def make(*overrides: str):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("config", overrides=list(overrides))


GROUP_OPTIONS = [(g, o) for g in ("model", "data", "pruner", "schedule", "optim", "tracking", "experiment", "profile")
                 for o in options(g)]
#: what an option needs besides itself to be a runnable config
NEEDS = {("pruner", "mask_from"): ["pruner.source=run-id"]}


@pytest.mark.parametrize(("group", "option"), GROUP_OPTIONS)
def test_every_group_option_composes_and_validates(group, option):
    choose = f"+{group}={option}" if group == "profile" else f"{group}={option}"
    cfg = make(choose, "sparsity=0.5", *NEEDS.get((group, option), []))
    validate(cfg)
    if group in ("model", "data"):
        assert cfg[group].name == option


def test_the_schemas_live_outside_the_user_groups():
    """Hydra lists a group's options in --help and in its errors: schemas must not be among them."""
    for group in ("model", "data", "pruner", "schedule", "optim", "tracking"):
        with pytest.raises(ConfigCompositionException) as info:
            make(f"{group}=nope")
        assert "schema" not in str(info.value).split("Config search path")[0]
    assert OmegaConf.get_type(make("pruner=lth").pruner) is LTHConfig  # still checked against its schema


def test_defaults():
    cfg = make()
    assert (cfg.model.name, cfg.data.name, cfg.pruner.name, cfg.tracking.enabled) == ("lenet300", "mnist", "dense", True)


def test_gmp_selects_the_cubic_schedule_unless_overridden():
    assert make("pruner=gmp").schedule.name == "cubic"
    assert make("pruner=gmp", "schedule=exponential").schedule.name == "exponential"
    assert make("pruner=pmp").schedule.name == "linear"


def test_typo_in_a_key_fails_at_compose_time():
    with pytest.raises((ConfigCompositionException, ConfigKeyError)):
        make("trainer.epoch=3")


def test_wrong_type_fails_at_compose_time():
    with pytest.raises((ConfigCompositionException, ValidationError)):
        make("trainer.epochs=abc")


def test_unknown_option_fails():
    with pytest.raises(ConfigCompositionException, match="model/alexnet"):
        make("model=alexnet")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["sparsity=1.0"], "sparsity=1.0 is impossible"),
        (["sparsity=-0.1"], "is impossible"),
        (["pruner=pmp", "sparsity=0.9", "schedule.end=1.5"], "past the end of training"),
        (["pruner=pmp", "sparsity=0.9", "schedule.start=0.6", "schedule.end=0.4"], "need 0 <= start <= end"),
        (["trainer.device=tpu"], "use auto, cpu or cuda"),
        (["optim.lr_schedule=step"], "use multistep, cosine or constant"),
        (["trainer.eval_every=0"], "trainer.eval_every=0: evaluate every N >= 1 epochs"),
        (["data.train_subset=-4990"], "data.train_subset=-4990: train on N >= 0 images"),
        (["pruner=grasp", "sparsity=0.9", "pruner.temperature=0"], "pruner.temperature=0: use a temperature > 0"),
        (["optim.momentum=1.0"], "optim.momentum=1: use a momentum in"),
        (["pruner=mask_from"], "needs pruner.source="),
    ],
)
def test_bad_values_get_one_line_errors_naming_the_fix(overrides, message):
    with pytest.raises(ConfigError, match=message) as info:
        validate(make(*overrides))
    assert "\n" not in str(info.value)


def test_layer_rates_that_are_not_a_mapping_are_refused_in_one_line():
    from hydra import compose, initialize_config_dir

    from repro.config import ConfigError, validate
    from repro.train import CONF_DIR

    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("config", overrides=["pruner=lth", "sparsity=0.9", "pruner.layer_rates=5"])
    with pytest.raises(ConfigError, match="give a mapping of layer name to rate"):
        validate(cfg)
