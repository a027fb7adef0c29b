from __future__ import annotations

import pytest

from iobench.errors import ParamError
from iobench.experiments import all_experiments, get_experiment
from iobench.params import Kind, Param, case_id, expand_cases, resolve

BS = Param("bs", Kind.SIZE, (4096,), "buffer", sweep=True, minimum=1, maximum=1 << 30)
MODE = Param("mode", Kind.CHOICE, "read", "mode", choices=("read", "write"))


def test_sweep_parses_comma_list_and_toml_array() -> None:
    assert BS.parse("1,16,4KiB") == (1, 16, 4096)
    assert BS.parse([1, "64KiB"]) == (1, 65536)
    assert BS.parse(512) == (512,)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("0", "below the minimum"),
        ("4Q", "not a size"),
        ("-1", "negative"),
        ("2GiB", "above the maximum"),
        ("", "at least one value"),
        ("4096,4KiB", "listed twice"),
    ],
)
def test_sweep_errors_name_the_option(raw: str, message: str) -> None:
    with pytest.raises(ParamError, match=message) as info:
        BS.parse(raw)
    assert str(info.value).startswith("--bs: ")


def test_choice_and_scalar() -> None:
    assert MODE.parse("write") == "write"
    with pytest.raises(ParamError, match="not one of read, write"):
        MODE.parse("append")
    with pytest.raises(ParamError, match="not a list"):
        MODE.parse(["read", "write"])


def test_resolve_fills_defaults_and_rejects_unknown_keys() -> None:
    assert resolve([BS, MODE], {"bs": "1,2"}) == {"bs": (1, 2), "mode": "read"}
    with pytest.raises(ParamError, match=r"unknown parameter 'bsize'.*allowed: bs, mode"):
        resolve([BS, MODE], {"bsize": 1})


def test_expand_cases_is_the_product_in_declaration_order() -> None:
    modes = Param("mode", Kind.CHOICE, ("read",), "m", choices=("read", "write"), sweep=True)
    cases = expand_cases([modes, BS], {"mode": ("read", "write"), "bs": (1, 2)})
    assert cases == [
        {"mode": "read", "bs": 1},
        {"mode": "read", "bs": 2},
        {"mode": "write", "bs": 1},
        {"mode": "write", "bs": 2},
    ]
    assert case_id([modes, BS], cases[1]) == "mode=read,bs=2"


def test_every_experiment_declares_help_and_valid_defaults() -> None:
    experiments = all_experiments()
    assert "rw-buffer" in [e.name for e in experiments]
    for experiment in experiments:
        assert experiment.summary and experiment.seed_idea
        for param in experiment.params:
            assert param.help, f"{experiment.name} {param.name} has no help"
            # The declared default survives its own parser.
            assert param.parse(param.default if not param.sweep else list(param.default)) == param.default
    assert get_experiment("rw-buffer").x_param == "bs"
