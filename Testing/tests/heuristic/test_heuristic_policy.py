"""The weight-free heuristic policy on synthetic images where the right click is known."""

from __future__ import annotations

import numpy as np
import pytest
from ibisagent.actions import NEGATIVE, POSITIVE, TERMINATE, parse_response
from ibisagent.clicks import Click
from ibisagent.policies import DEFAULT_POLICY, build_policy
from ibisagent.policies.base import Observation

SIZE = 96


def _disc(cy, cx, radius, size=SIZE):
    yy, xx = np.mgrid[:size, :size]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= radius ** 2


def _scene(seed=0):
    """A bright disc on a dark noisy background, RGB uint8, and the disc's true mask."""
    rng = np.random.default_rng(seed)
    truth = _disc(48, 48, 26)
    grey = np.where(truth, 190.0, 40.0) + rng.normal(0.0, 8.0, truth.shape)
    image = np.repeat(np.clip(grey, 0, 255).astype(np.uint8)[:, :, None], 3, axis=2)
    return image, truth


HOLE = _disc(42, 52, 7)
LEAK = _disc(48, 82, 10) & ~_disc(48, 48, 26)


def _ideal(truth):
    """A look-ahead whose tool answers every click with the true mask: the policy's own choices
    (which region, which pixel) are then what the test sees."""
    return lambda clicks: truth.copy()


def _ask(image, mask, clicks=(), request="Segment the bright disc.", preview=None):
    observation = Observation(image, mask, request, len(clicks), tuple(clicks), preview=preview)
    text = build_policy("heuristic").respond(observation)
    parsed = parse_response(text)
    assert parsed.ok, parsed.error
    return parsed


def _pixel(parsed):
    return parsed.action.to_pixel(SIZE, SIZE)[:2]


def test_heuristic_is_the_default_and_says_it_is_not_the_model():
    policy = build_policy()
    assert DEFAULT_POLICY == "heuristic" and policy.name == "heuristic"
    assert "weight-free heuristic" in policy.description
    assert "not the IBISAgent model" in policy.description


def test_first_proposals_fix_the_hole_and_the_leak_with_reasons_that_say_so():
    image, truth = _scene()
    rough = (truth & ~HOLE) | LEAK
    first = _ask(image, rough, preview=_ideal(truth))
    # The leak is the larger error, so it comes first; after removing it the hole is next.
    assert first.action.kind == NEGATIVE
    x, y = _pixel(first)
    assert LEAK[y, x]
    assert "matches the surrounding tissue" in first.reasoning and "so I remove it" in first.reasoning
    second = _ask(image, truth & ~HOLE, [], preview=_ideal(truth))
    assert second.action.kind == POSITIVE
    x, y = _pixel(second)
    assert HOLE[y, x]
    assert "a hole in the mask" in second.reasoning and "so I add it" in second.reasoning


def test_clicks_land_well_inside_the_region_they_fix():
    image, truth = _scene()
    parsed = _ask(image, truth & ~HOLE, preview=_ideal(truth))
    x, y = _pixel(parsed)
    assert np.hypot(x - 52, y - 42) <= 2.5  # the hole's centre is its deepest point


def test_empty_mask_gives_a_positive_click_inside_the_bright_object():
    image, truth = _scene()
    parsed = _ask(image, np.zeros_like(truth))
    assert parsed.action.kind == POSITIVE
    x, y = _pixel(parsed)
    assert _disc(48, 48, 20)[y, x]
    assert "no mask yet" in parsed.reasoning.lower() and "bright disc" in parsed.reasoning


def test_empty_mask_on_a_dark_lesion_on_lighter_skin_clicks_the_lesion():
    """Colour photograph: a dark brown lesion on pinkish skin that fills the border."""
    rng = np.random.default_rng(3)
    lesion = _disc(50, 44, 22)
    image = np.empty((SIZE, SIZE, 3), np.float64)
    image[...] = (225, 180, 165)
    image[lesion] = (110, 70, 50)
    image = np.clip(image + rng.normal(0, 6, image.shape), 0, 255).astype(np.uint8)
    parsed = _ask(image, np.zeros(lesion.shape, bool), request="Segment the skin lesion.")
    x, y = _pixel(parsed)
    assert parsed.action.kind == POSITIVE and _disc(50, 44, 16)[y, x]
    assert "dark structure" in parsed.reasoning


def test_the_request_can_name_the_side():
    image, truth = _scene()
    parsed = _ask(image, np.zeros_like(truth), request="Segment the dark background.")
    x, y = _pixel(parsed)
    assert not truth[y, x] and "dark structure" in parsed.reasoning


def test_a_perfect_mask_terminates_with_an_answer():
    image, truth = _scene()
    parsed = _ask(image, truth, preview=_ideal(truth))
    assert parsed.action.kind == TERMINATE
    assert parsed.answer and parsed.reasoning


def test_no_pixel_is_proposed_twice_and_an_opposite_click_is_respected():
    image, truth = _scene()
    mask = truth & ~HOLE
    seen = []
    for _ in range(3):  # the mask never changes (the clicks are not applied): each proposal is new
        parsed = _ask(image, mask, [Click(x, y, True) for x, y in seen], preview=_ideal(truth))
        assert parsed.action.kind == POSITIVE
        assert HOLE[_pixel(parsed)[::-1]] and _pixel(parsed) not in seen
        seen.append(_pixel(parsed))
    x, y = seen[0]
    # Someone said the hole is not target: the policy leaves it and removes the leak instead.
    vetoed = _ask(image, mask | LEAK, [Click(x, y, False)], preview=_ideal(truth))
    assert vetoed.action.kind == NEGATIVE
    assert LEAK[_pixel(vetoed)[::-1]]


@pytest.mark.parametrize("seed", range(6))
def test_output_always_parses_and_stays_on_the_image(seed):
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (40 + seed * 7, 55, 3), dtype=np.uint8)
    masks = [
        np.zeros(image.shape[:2], bool),
        np.ones(image.shape[:2], bool),
        rng.random(image.shape[:2]) > 0.5,
        _disc(20, 25, 3 + 3 * seed, size=max(image.shape[:2]))[: image.shape[0], : image.shape[1]],
    ]
    for mask in masks:
        text = build_policy("heuristic").respond(Observation(image, mask, "", 0, ()))
        parsed = parse_response(text)
        assert parsed.ok, parsed.error
        assert parsed.reasoning
        if parsed.action.is_point:
            assert not parsed.action.to_pixel(image.shape[1], image.shape[0])[2]


def test_constant_image_still_answers():
    image = np.full((30, 30, 3), 90, np.uint8)
    parsed = _ask(image, np.zeros((30, 30), bool))
    assert parsed.action.kind == POSITIVE


def test_bad_options_and_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="Unknown heuristic policy option"):
        build_policy("heuristic", temperature=0.1)
    with pytest.raises(ValueError, match="min_fraction"):
        build_policy("heuristic", min_fraction=2.0)
    with pytest.raises(ValueError, match="RGB"):
        build_policy("heuristic").respond(Observation(np.zeros((8, 8), np.uint8), np.zeros((8, 8), bool), "", 0))
