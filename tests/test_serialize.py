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
        (math.nan, "plain JSON"),
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
