"""The per-frame -> text smoother's rules, as pure unit tests (no model, no video)."""

from __future__ import annotations

import pytest

from aslhpc.recognize.stream import TextSmoother


def frames(label: str, n: int, prob: float = 0.99) -> list[tuple[str, float]]:
    return [(label, prob)] * n


def test_a_letter_fires_on_exactly_the_hold_th_confident_frame():
    s = TextSmoother(hold=3, threshold=0.8)
    assert s.update("A", 0.9) is None
    assert s.update("A", 0.9) is None
    event = s.update("A", 0.9)
    assert event is not None and (event.frame, event.label, event.text) == (2, "A", "A")
    assert s.text == "A"


def test_frames_below_the_threshold_do_not_count_and_break_the_run():
    s = TextSmoother(hold=3, threshold=0.8)
    assert s.feed([("A", 0.9), ("A", 0.9), ("A", 0.79), ("A", 0.9), ("A", 0.9)]) == ""
    assert s.pending == ("A", 2)
    assert s.feed([("A", 0.8)]) == "A"  # the threshold itself is confident enough


def test_a_different_top_class_restarts_the_count():
    s = TextSmoother(hold=3, threshold=0.5)
    assert s.feed([("A", 0.9), ("A", 0.9), ("B", 0.9), ("A", 0.9), ("A", 0.9)]) == ""
    assert s.feed(frames("A", 1)) == "A"


def test_holding_a_sign_writes_it_once():
    s = TextSmoother(hold=3, threshold=0.8)
    assert s.feed(frames("A", 50)) == "A"
    assert len(s.events) == 1


def test_a_blurry_gap_does_not_repeat_the_letter():
    s = TextSmoother(hold=3, threshold=0.8)
    assert s.feed(frames("A", 4) + frames("B", 5, prob=0.3) + frames("A", 4)) == "A"


def test_nothing_re_arms_the_same_letter():
    s = TextSmoother(hold=3, threshold=0.8)
    assert s.feed(frames("L", 4) + frames("nothing", 3) + frames("L", 4)) == "LL"


def test_a_short_nothing_is_not_enough_to_repeat():
    s = TextSmoother(hold=3, threshold=0.8)
    assert s.feed(frames("L", 4) + frames("nothing", 2) + frames("L", 4)) == "L"


def test_another_sign_between_two_runs_allows_the_repeat():
    s = TextSmoother(hold=2, threshold=0.8)
    assert s.feed(frames("A", 3) + frames("B", 3) + frames("A", 3)) == "ABA"


def test_space_writes_a_space_and_del_removes_the_last_character():
    s = TextSmoother(hold=2, threshold=0.8)
    text = s.feed(frames("H", 2) + frames("I", 2) + frames("space", 2) + frames("X", 2) + frames("del", 2))
    assert text == "HI "
    assert [e.label for e in s.events] == ["H", "I", "space", "X", "del"]
    assert [e.text for e in s.events] == ["H", "HI", "HI ", "HI X", "HI "]


def test_del_on_empty_text_is_harmless():
    s = TextSmoother(hold=2, threshold=0.8)
    assert s.feed(frames("del", 2)) == ""
    assert s.feed(frames("nothing", 2) + frames("del", 2) + frames("A", 2)) == "A"


def test_del_held_deletes_one_character_only():
    s = TextSmoother(hold=2, threshold=0.8)
    assert s.feed(frames("A", 2) + frames("B", 2) + frames("del", 9)) == "A"


def test_nothing_itself_writes_nothing():
    s = TextSmoother(hold=2, threshold=0.8)
    assert s.feed(frames("nothing", 10)) == ""
    assert s.events == []


def test_hold_of_one_fires_immediately():
    s = TextSmoother(hold=1, threshold=0.0)
    assert s.feed([("A", 0.1), ("B", 0.1), ("B", 0.1)]) == "AB"


@pytest.mark.parametrize("kwargs", [{"hold": 0}, {"threshold": 1.5}, {"threshold": -0.1}])
def test_bad_settings_are_refused(kwargs):
    with pytest.raises(ValueError):
        TextSmoother(**kwargs)
