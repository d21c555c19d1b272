import datetime
import decimal
import math
import uuid

import pytest

from autotask import serialize


@pytest.mark.parametrize(
    ("value", "hint"),
    [
        ({1, 2}, "sorted list"),
        ((1, 2), "JSON has no tuples"),
        (datetime.date(2026, 1, 1), "isoformat"),
        (datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC), "isoformat"),
        (decimal.Decimal("1.5"), "str(value)"),
        (uuid.UUID(int=1), "str(value)"),
        (b"raw", "base64"),
    ],
)
def test_argument_that_is_not_json_names_the_argument_and_a_fix(value: object, hint: str) -> None:
    with pytest.raises(TypeError) as excinfo:
        serialize.dump_call("app.job", [1, value], {})
    message = str(excinfo.value)
    assert "app.job(): argument 1" in message
    assert type(value).__name__ in message
    assert hint in message


def test_nested_problem_is_located_and_keyword_arguments_are_named() -> None:
    with pytest.raises(TypeError, match=r"argument 'options'\['when'\]\[0\]"):
        serialize.dump_call("app.job", [], {"options": {"when": [datetime.date.today()]}})


def test_non_string_dict_key_is_refused() -> None:
    with pytest.raises(TypeError, match="key 1"):
        serialize.dump_call("app.job", [{1: "one"}], {})


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_a_float_that_is_no_number_says_so_not_pass_a_float(value: float) -> None:
    with pytest.raises(TypeError) as excinfo:
        serialize.dump_call("app.job", [value], {})
    message = str(excinfo.value)
    assert "is not a finite number, and JSON has no NaN or infinity" in message
    assert "plain JSON" not in message and "pass None" in message


def test_a_non_string_key_says_keys_are_strings() -> None:
    with pytest.raises(TypeError) as excinfo:
        serialize.dump_call("app.job", [{1: "one"}], {})
    message = str(excinfo.value)
    assert "is a dict key of type int; JSON object keys are strings" in message
    assert "plain JSON" not in message


def test_a_return_value_is_told_what_to_return_and_a_datetime_is_shown_whole() -> None:
    moment = datetime.datetime(2026, 12, 1, 23, 45, 12, 345678, tzinfo=datetime.UTC)
    with pytest.raises(TypeError) as excinfo:
        serialize.dump_result("app.job", {"when": moment})
    message = str(excinfo.value)
    assert "return value['when']" in message
    assert "return value.isoformat()" in message and "pass " not in message
    assert repr(moment) in message  # not cut short


def test_model_instance_hint_says_pass_the_primary_key(django_user_model: type) -> None:
    with pytest.raises(TypeError, match=r"obj\.pk"):
        serialize.dump_call("app.job", [django_user_model(pk=3)], {})


def test_plain_json_round_trips() -> None:
    args, kwargs = serialize.dump_call("app.job", [1, "a", None, True, 1.5], {"x": {"y": [1]}})
    assert args == '[1, "a", null, true, 1.5]'
    assert kwargs == '{"x": {"y": [1]}}'


def test_result_that_is_not_json_is_refused() -> None:
    with pytest.raises(TypeError, match="return value"):
        serialize.dump_result("app.job", object())


@pytest.mark.parametrize("text", ["a\x00b", "lone \ud800 surrogate"])
def test_text_that_jsonb_refuses_is_refused_at_enqueue(text: str) -> None:
    with pytest.raises(TypeError, match="NUL"):
        serialize.dump_call("app.job", [text], {})
    with pytest.raises(TypeError, match="key"):
        serialize.dump_call("app.job", [{text: 1}], {})
