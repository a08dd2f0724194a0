"""Label selectors (string and structured forms) and the Tekton param reader."""

from __future__ import annotations

import pytest

from cssr_tasks import selectors
from cssr_tasks.errors import ConfigError
from cssr_tasks.params import Reader, env_name

LABELS = {"node-role.kubernetes.io/worker": "", "zone": "a", "tier": "cnf"}


@pytest.mark.parametrize(("selector", "matches"), [
    ("node-role.kubernetes.io/worker=", True),
    ("node-role.kubernetes.io/worker", True),
    ("!node-role.kubernetes.io/master", True),
    ("zone in (a,b),tier=cnf", True),
    ("zone notin (a)", False),
    ("zone!=a", False),
    ("zone==a", True),
    ("", True),
    ("node-role.kubernetes.io/master=", False),
], ids=["equals-empty", "exists", "not-exists", "set-and-equals", "notin", "not-equals", "double-equals",
        "empty", "missing"])
def test_selector_matching(selector, matches):
    assert selectors.matches(selector, LABELS) is matches


def test_bad_selector_is_a_config_error_with_the_fix():
    with pytest.raises(ConfigError, match="use the kubectl form"):
        selectors.parse("zone in a b")


def test_structured_selector_to_string():
    structured = {"matchLabels": {"b": "2", "a": "1"},
                  "matchExpressions": [{"key": "c", "operator": "In", "values": ["x", "y"]},
                                       {"key": "d", "operator": "DoesNotExist"}]}
    text = selectors.from_label_selector(structured)
    assert text == "a=1,b=2,c in (x,y),!d"
    assert selectors.matches(text, {"a": "1", "b": "2", "c": "y"})


def test_env_name_rule():
    assert env_name("node-selector") == "PARAM_NODE_SELECTOR"
    assert env_name("max.rtt-ms") == "PARAM_MAX_RTT_MS"


def test_reader_collects_every_error_into_one():
    read = Reader({"PARAM_A": "x", "PARAM_B": "yes please", "PARAM_C": "[1", "PARAM_D": "0"})
    read.integer("a", 1)
    read.boolean("b", True)
    read.json("c", [], kind=list)
    read.integer("d", 1, minimum=1)
    read.string("e", required=True)
    with pytest.raises(ConfigError) as e:
        read.done()
    message = str(e.value)
    for part in ("a='x' is not a whole number", "b='yes please' is not a boolean", "c is not valid JSON",
                 "d=0 is below the minimum 1", "e is required"):
        assert part in message


def test_reader_defaults_and_types():
    read = Reader({"PARAM_FLAG": "TRUE", "PARAM_LIST": '["a"]', "PARAM_MODE": "b"})
    assert read.boolean("flag", False) is True
    assert read.boolean("absent", True) is True
    assert read.json("list", [], kind=list) == ["a"]
    assert read.choice("mode", "a", ("a", "b")) == "b"
    read.done()


def test_tls_verify_is_true_false_or_a_ca_bundle(tmp_path):
    bundle = tmp_path / "service-ca.crt"
    bundle.write_text("-----BEGIN CERTIFICATE-----\n")
    read = Reader({"PARAM_A": "true", "PARAM_B": "False", "PARAM_C": str(bundle), "PARAM_D": "/nope.crt"})
    assert read.tls_verify("a") is True
    assert read.tls_verify("b") is False
    assert read.tls_verify("c") == str(bundle)
    assert read.tls_verify("absent") is True
    assert read.tls_verify("absent", default="false") is False
    assert read.tls_verify("d") is True
    with pytest.raises(ConfigError, match="param d='/nope.crt' is neither true, false nor the path of an existing CA"):
        read.done()


# -- the rules every param shares --

@pytest.mark.parametrize(("value", "message"), [
    ("nan", "is not a whole number"), ("inf", "is not a whole number"), ("1e20", "is not a whole number"),
    ("1.5", "is not a whole number"), ("1_000", "is not a whole number"), ("\uff11\uff12", "is not a whole number"),
    ("\u0663", "is not a whole number"), ("-1", "a=-1 is below the minimum 0"),
    ("99999999999999999999999", "a=99999999999999999999999 is above the maximum 2147483647"),
    ("9" * 5000, "is above the maximum 2147483647"), ("2147483648", "is above the maximum 2147483647"),
], ids=["nan", "inf", "exponent", "fraction", "underscore", "full-width", "arabic-indic", "negative", "huge",
        "5000-digits", "int32-overflow"])
def test_integers_are_ascii_digits_within_bounds(value, message):
    read = Reader({"PARAM_A": value})
    assert read.integer("a", 1) == 1
    with pytest.raises(ConfigError, match=message):
        read.done()


def test_integer_bounds_given_by_the_command_win():
    read = Reader({"PARAM_A": "-5", "PARAM_B": "70000"})
    assert read.integer("a", 1, minimum=-10) == -5
    assert read.integer("b", 1, maximum=65535) == 1
    with pytest.raises(ConfigError, match="b=70000 is above the maximum 65535"):
        read.done()


@pytest.mark.parametrize("value", ["nan", "NaN", "inf", "-inf", "1e400", "0x10", "1,5", "", " "])
def test_seconds_are_finite_numbers(value):
    read = Reader({"PARAM_T": value})
    assert read.seconds("t", 10.0) == 10.0
    if value.strip():
        with pytest.raises(ConfigError, match="param t=.* is not a number of seconds such as 30 or 0.5"):
            read.done()
    else:
        read.done()


def test_seconds_bounds():
    read = Reader({"PARAM_A": "0.5", "PARAM_B": "-1", "PARAM_C": "1e20", "PARAM_D": "0", "PARAM_E": "2e-3"})
    assert read.seconds("a", 1) == 0.5
    assert read.seconds("e", 1) == 0.002
    read.seconds("b", 1)
    read.seconds("c", 1)
    assert read.seconds("d", 1, minimum=0.1) == 1
    with pytest.raises(ConfigError) as e:
        read.done()
    for part in ("b=-1 is below the minimum 0", "c=1e20 is above the maximum 604800", "d=0 is below the minimum 0.1"):
        assert part in str(e.value)


@pytest.mark.parametrize(("value", "message"), [
    ("NaN", "NaN is not a number"), ('[Infinity]', "Infinity is not a number"), ("[1e400]", "1e400 is out of range"),
    ("[" * 16000 + "]" * 16000, "nested too deeply"), ("1" * 5000, "is not usable JSON"),
], ids=["nan", "infinity", "overflow", "deep", "5000-digits"])
def test_json_refuses_what_json_loads_takes_or_crashes_on(value, message):
    read = Reader({"PARAM_J": value})
    assert read.json("j", []) == []
    with pytest.raises(ConfigError, match=message):
        read.done()


def test_a_value_past_the_limit_is_refused_once_and_not_quoted():
    read = Reader({"PARAM_S": "x" * 40000})
    assert read.string("s", "d", required=True) == ""
    with pytest.raises(ConfigError) as e:
        read.done()
    assert str(e.value) == "invalid params: param s is 40000 characters long; the limit is 32768"


@pytest.mark.parametrize("value", ["worker\nkind: Secret", "a\rb", "a\x1bb", "a\x00b"])
def test_strings_hold_no_control_characters(value):
    read = Reader({"PARAM_S": value})
    assert read.string("s", "default") == "default"
    with pytest.raises(ConfigError) as e:
        read.done()
    assert "holds a control character" in str(e.value) and "\n" not in str(e.value)


def test_a_trailing_newline_is_not_a_control_character_inside():
    assert Reader({"PARAM_S": "worker\n"}).string("s") == "worker\n"


def test_error_messages_quote_long_values_shortly():
    read = Reader({"PARAM_B": "y" * 10000})
    read.boolean("b", True)
    with pytest.raises(ConfigError) as e:
        read.done()
    assert len(str(e.value)) < 200 and "(10000 characters)" in str(e.value)


def test_tls_verify_with_a_name_too_long_for_the_file_system():
    read = Reader({"PARAM_T": "/" + "a" * 300})
    assert read.tls_verify("t") is True
    with pytest.raises(ConfigError, match="is neither true, false nor the path"):
        read.done()


def test_settings_are_named_by_their_variable():
    from cssr_tasks.cluster import RetrySettings

    with pytest.raises(ConfigError) as e:
        RetrySettings.from_env({"CSSR_RETRY_ATTEMPTS": "abc", "CSSR_RETRY_WAIT": "nan", "CSSR_RETRY_WAIT_MAX": "-1"})
    assert str(e.value) == ("invalid settings: setting CSSR_RETRY_ATTEMPTS='abc' is not a whole number such as 5; "
                            "setting CSSR_RETRY_WAIT='nan' is not a number of seconds such as 30 or 0.5; "
                            "setting CSSR_RETRY_WAIT_MAX=-1 is below the minimum 0")
    assert RetrySettings.from_env({"CSSR_RETRY_ATTEMPTS": "3", "CSSR_RETRY_WAIT": "0"}) == RetrySettings(3, 0, 0)
