from dataclasses import dataclass, field

import pytest

from mfrn.config_schema import ConfigError, apply_overrides, from_dict, merge, to_dict


@dataclass
class Inner:
    rho: float = 0.05
    name: str = "sgd"
    sizes: tuple[int, ...] = (1, 2)


@dataclass
class Outer:
    epochs: int = 3
    inner: Inner = field(default_factory=Inner)
    file: str | None = None
    flag: bool = False


def test_round_trip_and_types():
    cfg = from_dict(Outer, {"epochs": 5, "inner": {"rho": 1, "sizes": [3, 4]}, "flag": True})
    assert cfg.epochs == 5 and cfg.inner.rho == 1.0 and isinstance(cfg.inner.rho, float)
    assert cfg.inner.sizes == (3, 4)
    assert from_dict(Outer, to_dict(cfg)) == cfg


def test_unknown_key_is_named():
    with pytest.raises(ConfigError, match=r"inner\.rhoo"):
        from_dict(Outer, {"inner": {"rhoo": 0.1}})


def test_wrong_type_is_named():
    with pytest.raises(ConfigError, match=r"inner\.rho"):
        from_dict(Outer, {"inner": {"rho": "big"}})
    with pytest.raises(ConfigError, match="epochs"):
        from_dict(Outer, {"epochs": 2.5})
    with pytest.raises(ConfigError, match="flag"):
        from_dict(Outer, {"flag": "yes"})


def test_overrides_parse_yaml_values():
    data = apply_overrides({}, ["inner.rho=0.1", "epochs=7", "file=null", "inner.sizes=[5, 6]"])
    cfg = from_dict(Outer, data)
    assert cfg.inner.rho == 0.1 and cfg.epochs == 7 and cfg.file is None and cfg.inner.sizes == (5, 6)
    with pytest.raises(ConfigError):
        apply_overrides({}, ["novalue"])


def test_merge_is_recursive():
    assert merge({"a": {"b": 1, "c": 2}}, {"a": {"b": 3}}) == {"a": {"b": 3, "c": 2}}


def test_off_and_on_stay_strings_true_false_are_booleans():
    @dataclass
    class Switches:
        source: str = "cache"
        amp: str = "bf16"
        flag: bool = False

    cfg = from_dict(Switches, apply_overrides({}, ["source=off", "amp=on", "flag=true"]))
    assert cfg.source == "off" and cfg.amp == "on" and cfg.flag is True
