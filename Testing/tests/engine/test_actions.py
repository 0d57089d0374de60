import math

from hypothesis import given, settings
from hypothesis import strategies as st

from ibisagent.actions import NEGATIVE, POSITIVE, TERMINATE, Action, format_response, parse_response


def test_parses_the_reference_grammar():
    text = "<think>\nThe liver is missed on the left.\n</think>\n<action>\nPositive Point (0.1234, 0.5678)\n</action>"
    parsed = parse_response(text)
    assert parsed.ok
    assert parsed.action == Action(POSITIVE, 0.1234, 0.5678)
    assert parsed.reasoning == "The liver is missed on the left."


def test_tolerates_whitespace_and_case():
    parsed = parse_response("<think>x</think><action>  negative   point( 0.5 ,0.25 )  </action>")
    assert parsed.action == Action(NEGATIVE, 0.5, 0.25)


def test_terminate_and_termination_with_answer():
    for word in ("Terminate", "Termination"):
        parsed = parse_response(f"<think>done</think>\n<action>\n{word}\n</action>\n<answer>\nYes, a lesion.\n</answer>")
        assert parsed.action == Action(TERMINATE)
        assert parsed.answer == "Yes, a lesion."


def test_invalid_outputs_have_reasons():
    cases = {
        "no tags at all": "no <action>",
        "<action>Click (0.1, 0.2)</action>": "is not",
        "<action>Positive Point (0.1, 0.2)</action><action>Terminate</action>": "exactly one",
        "<action>Positive Point (3.5, 0.2)</action>": "outside",
        "<action>Positive Point (nan, 0.2)</action>": "is not",
    }
    for text, reason in cases.items():
        parsed = parse_response(text)
        assert not parsed.ok and parsed.action is None
        assert reason in parsed.error, (text, parsed.error)


def test_pixel_mapping_floors_and_reports_clamping():
    assert Action(POSITIVE, 0.5, 0.25).to_pixel(100, 40) == (50, 10, False)
    assert Action(POSITIVE, 0.9999, 0.0).to_pixel(100, 40) == (99, 0, False)
    assert Action(POSITIVE, 1.0, 1.0).to_pixel(100, 40) == (99, 39, True)
    assert Action(POSITIVE, 1.03, -0.02).to_pixel(100, 40) == (99, 0, True)


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_parser_never_raises_on_any_string(text):
    parsed = parse_response(text)
    assert (parsed.action is None) == (parsed.error is not None)


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from([POSITIVE, NEGATIVE]),
    st.floats(0, 1, allow_nan=False),
    st.floats(0, 1, allow_nan=False),
    st.text(alphabet=st.characters(blacklist_characters="<>"), max_size=60),
)
def test_format_then_parse_round_trips(kind, x, y, reasoning):
    action = Action(kind, round(x, 4), round(y, 4))
    parsed = parse_response(format_response(reasoning, action))
    assert parsed.action == action
    assert parsed.reasoning == reasoning.strip()
    assert math.isclose(parsed.action.x, action.x)
