"""Label selectors (string and structured forms) and the Tekton param reader."""

from __future__ import annotations

from pathlib import Path

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


# -- one rule per kind of value: names, paths, image references, selectors --

def refusal(method: str, value: str, **options) -> str:
    """The error a Reader method gives for `value` of param p ("" when accepted), and what it returned."""
    read = Reader({"PARAM_P": value})
    getattr(read, method)("p", "fallback", **options)
    try:
        read.done()
    except ConfigError as e:
        assert "\n" not in str(e) and "param p" in str(e)
        return str(e)
    return ""


@pytest.mark.parametrize(("value", "options", "accepted"), [
    ("a" * 63, {}, True), ("a" * 64, {}, False),  # DNS1123LabelMaxLength
    ("a." * 126 + "a", {"subdomain": True}, True), ("a." * 126 + "ab", {"subdomain": True}, False),  # 253 / 254
    ("cssr.example", {}, False), ("cssr.example", {"subdomain": True}, True),
    ("a" * 64, {"subdomain": True, "max_length": 63}, False),  # a Tekton PipelineRun's name
    ("Cssr", {}, False), ("-cssr", {}, False), ("cssr-", {}, False), ("w\u00f6rker", {}, False), ("1e20", {}, True),
], ids=["label-63", "label-64", "subdomain-253", "subdomain-254", "dot-in-label", "dot-in-subdomain", "narrowed",
        "upper", "leading-dash", "trailing-dash", "unicode", "digits-and-e"])
def test_names_follow_kubernetes_dns_1123_rules(value, options, accepted):
    message = refusal("name", value, **options)
    assert (message == "") is accepted, message
    if not accepted:
        assert "is not valid" in message


def test_a_refused_name_gives_the_default_back():
    read = Reader({"PARAM_P": "Bad Name"})
    assert read.name("p", "cssr") == "cssr"


@pytest.mark.parametrize(("value", "accepted"), [
    ("/var/run/secrets/kubernetes.io/serviceaccount/service-ca.crt", True), ("cssr-init", True),
    ("/workspace/source/context dir", True), ("/srv/gr\u00fc\u00dfe/\u0663", True), ("a/./b", True),
    ("/etc/../etc/shadow", False), ("../x", False), ("..", False),
    ("-rf", False), ("/tmp/--help", False), ("~root/x", False), ("a~b", True),
    ("$(touch x)", False), ("`id`", False), ("a;b", False), ("a|b", False), ("*", False), ('["x"]', False),
    ("a: b", False), (" lead", False), ("trail ", False), ("a\u202eb", False),
    ("/" + "a" * 255, True), ("/" + "a" * 256, False), ("/a" * 2049, False),  # NAME_MAX, PATH_MAX
], ids=lambda v: repr(v)[:30] if isinstance(v, str) else None)
def test_paths_take_no_detour_no_option_and_no_shell_character(value, accepted, tmp_path):
    message = refusal("path", value)
    assert (message == "") is accepted, message


def test_a_path_inside_a_workspace_is_relative():
    assert "must be a relative path inside the source workspace" in refusal("path", "/abs", inside="the source workspace")
    assert "must be a relative path inside" in refusal("path", "a/../../b", inside="the source workspace")
    assert refusal("path", "cssr-init", inside="the source workspace") == ""


def test_no_file_system_call_sees_a_refused_path(monkeypatch):
    """ENAMETOOLONG and friends: a refused path is never stat-ed, so no OSError can escape."""
    import pathlib

    def boom(*args, **kwargs):
        raise AssertionError("the file system was asked")

    monkeypatch.setattr(pathlib.Path, "is_file", boom)
    for value in ("/" + "a" * 300, "/etc/../etc/passwd", "-x"):
        read = Reader({"PARAM_T": value})
        assert read.tls_verify("t") is True
        with pytest.raises(ConfigError, match="is neither true, false nor the path of a CA bundle file: it "):
            read.done()


def test_tls_verify_refuses_a_detour_to_a_file_that_exists():
    assert Path("/etc/passwd").is_file()
    read = Reader({"PARAM_T": "/etc/../etc/passwd"})
    read.tls_verify("t")
    with pytest.raises(ConfigError, match=r"has a \.\. component"):
        read.done()


@pytest.mark.parametrize(("value", "options", "accepted"), [
    ("quay.io/openshift/origin-cli:4.16", {}, True),
    ("image-registry.openshift-image-registry.svc:5000/cssr/cssr-init", {"bare": True}, True),
    ("registry.example/cssr/cssr-init:abc", {"bare": True}, False),
    (f"quay.io/ocp/dtk@sha256:{'a' * 64}", {"pinned": True}, True),
    ("quay.io/ocp/dtk:4.16", {"pinned": True}, False),
    ("registry.example/" + "a" * 238, {}, True),  # the name is 255 characters: NameTotalLengthMax
    ("registry.example/" + "a" * 239, {}, False),
    ("a" * 300, {}, False),  # docker.io/library/aaa... is longer still
    ("quay.io/x:w\u00f6rker", {}, False),  # Python's \w is Unicode; the grammar's is ASCII
    ("quay.io/x:" + "t" * 129, {}, False), ("Quay.io/Upper", {}, False), ("-1", {}, False), ("a/../b", {}, False),
], ids=["tagged", "bare", "bare-with-tag", "pinned", "not-pinned", "name-255", "name-256", "hub-300",
        "unicode-tag", "long-tag", "upper-repository", "dash", "dots"])
def test_image_references_follow_the_distribution_grammar(value, options, accepted):
    message = refusal("image", value, **options)
    assert (message == "") is accepted, message


@pytest.mark.parametrize(("value", "accepted"), [
    ("node-role.kubernetes.io/worker=", True), ("a" * 63, True), ("a" * 64, False),
    (f"{'p' * 253}/name", True), (f"{'p' * 254}/name", False), ("Zone.Example/x=y", False),
    ("zone=" + "v" * 63, True), ("zone=" + "v" * 64, False), ("zone in (a,-b)", False),
    ("a/../../b", False), ("/x", False), ('["x"]', False), ("-1", False),
], ids=["role", "name-63", "name-64", "prefix-253", "prefix-254", "upper-prefix", "value-63", "value-64",
        "bad-set-value", "traversal", "empty-prefix", "json", "negative"])
def test_selectors_follow_kubernetes_label_rules(value, accepted):
    message = refusal("selector", value)
    assert (message == "") is accepted, message
    if not accepted:
        assert message.startswith("invalid params: param p: label selector") and len(message) < 400


def test_a_selector_of_only_commas_would_select_everything_and_is_refused():
    assert "holds no label requirement" in refusal("selector", " , ")
    read = Reader({"PARAM_P": ""})
    assert read.selector("p", "node-role.kubernetes.io/worker=") == "node-role.kubernetes.io/worker="
    read.done()
