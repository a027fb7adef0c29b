from __future__ import annotations

import pytest

from iobench.errors import ParamError
from iobench.experiments import all_experiments, get_experiment
from iobench.params import MAX_CASES, MAX_VALUES, Kind, Param, case_id, expand_cases, resolve

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


# --- hostile values (issue 14) ---------------------------------------------------------------

CALLS = Param("calls", Kind.INT, (10,), "calls", sweep=True, minimum=1, maximum=10**10)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("1_0", "no underscores"),
        ("9" * 5000, "too large"),
        ("2.0", "not a whole number"),
        ("９", "digits 0-9"),
        ([[1]], "not a whole number"),
        (True, "not a whole number"),
        (str(10**10 + 1), "above the maximum 10000000000"),
    ],
)
def test_int_params_refuse_hostile_values(raw: object, message: str) -> None:
    with pytest.raises(ParamError, match=message) as info:
        CALLS.parse(raw)
    assert str(info.value).startswith("--calls: ") and len(str(info.value)) < 150


def test_a_choice_must_be_text() -> None:
    with pytest.raises(ParamError, match="5 is not one of read, write"):
        MODE.parse(5)


def test_sweeps_are_bounded_and_duplicates_found_fast() -> None:
    values = ",".join(str(n) for n in range(1, MAX_VALUES + 1))
    assert len(CALLS.parse(values)) == MAX_VALUES
    with pytest.raises(ParamError, match=f"{MAX_VALUES + 1} values; at most {MAX_VALUES}"):
        CALLS.parse(values + f",{MAX_VALUES + 1}")
    with pytest.raises(ParamError, match="value listed twice: 1KiB"):
        BS.parse([1024, "1KiB", 1, 2])


def test_resolve_refuses_a_product_of_sweeps_too_large_to_run() -> None:
    many = ",".join(str(n) for n in range(1, 201))
    with pytest.raises(ParamError, match=f"200 x 200 = 40000 cases; at most {MAX_CASES}"):
        resolve([BS, CALLS], {"bs": many, "calls": many})
    assert len(resolve([BS, CALLS], {"bs": many, "calls": "1,2"})["bs"]) == 200


def test_every_number_param_declares_a_maximum() -> None:
    # An unbounded count (messages=2**63) made a run allocate until the kernel killed it.
    from iobench.engine.protocol import PROTOCOL_PARAMS, TIME_BUDGET

    declared = [(e.name, p) for e in all_experiments() for p in e.params]
    declared += [("protocol", p) for p in (*PROTOCOL_PARAMS, TIME_BUDGET)]
    for owner, param in declared:
        if param.kind is not Kind.CHOICE:
            assert param.maximum is not None, f"{owner} {param.name} has no maximum"
