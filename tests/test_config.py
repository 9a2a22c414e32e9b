"""Every group option composes; schemas reject typos and wrong types; validation names the fix."""

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException
from omegaconf.errors import ConfigKeyError, ValidationError

from repro.config import ConfigError, register_configs, validate

CONF = Path(__file__).resolve().parent.parent / "conf"
register_configs()


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


def make(*overrides: str):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("config", overrides=list(overrides))


GROUP_OPTIONS = [(g, o) for g in ("model", "data", "pruner", "schedule", "optim", "tracking", "experiment")
                 for o in options(g)]


@pytest.mark.parametrize(("group", "option"), GROUP_OPTIONS)
def test_every_group_option_composes_and_validates(group, option):
    cfg = make(f"{group}={option}", "sparsity=0.5")
    validate(cfg)
    if group in ("model", "data"):
        assert cfg[group].name == option


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
    ],
)
def test_bad_values_get_one_line_errors_naming_the_fix(overrides, message):
    with pytest.raises(ConfigError, match=message) as info:
        validate(make(*overrides))
    assert "\n" not in str(info.value)
