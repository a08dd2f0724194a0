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
