"""The verdict store: durable appends, undo, several reviewers, conflict rules, corrupt lines."""

from __future__ import annotations

import json

import pytest

from entroad.errors import InputError
from entroad.review.store import VerdictStore

IDS = ["a.png", "b.png", "c.png"]


def test_verdicts_survive_a_new_store_on_the_same_file(tmp_path):
    path = tmp_path / "v.jsonl"
    s = VerdictStore(path, IDS)
    s.add("a.png", "anomalous", "ann", marks=[{"type": "box", "x0": 0.1, "y0": 0.2, "x1": 0.5, "y1": 0.6}])
    s.add("b.png", "normal", "ann")
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    assert [x["id"] for x in lines] == ["a.png", "b.png"]  # on disk as soon as add() returns
    assert all(x["reviewer"] == "ann" and x["time"] for x in lines)
    again = VerdictStore(path, IDS)
    assert again.state("a.png").by_reviewer["ann"].verdict == "anomalous"
    assert again.state("a.png").by_reviewer["ann"].marks[0]["x1"] == 0.5
    assert again.reviewed() == 2


def test_undo_withdraws_the_reviewers_last_verdict_and_is_replayed(tmp_path):
    path = tmp_path / "v.jsonl"
    s = VerdictStore(path, IDS)
    s.add("a.png", "normal", "ann")
    s.add("a.png", "anomalous", "ann")
    s.add("b.png", "normal", "bob")
    undone = s.undo("ann")
    assert undone.id == "a.png" and undone.verdict == "anomalous"
    assert s.state("a.png").by_reviewer["ann"].verdict == "normal"  # back to the earlier verdict
    assert s.undo("ann").verdict == "normal" and s.state("a.png") is None
    assert s.undo("ann") is None  # nothing left to undo: nothing written
    replayed = VerdictStore(path, IDS)
    assert replayed.state("a.png") is None and replayed.state("b.png").by_reviewer["bob"].verdict == "normal"
    assert sum(1 for _ in path.open()) == 5  # 3 verdicts + 2 undos, nothing rewritten


def test_conflicts_are_listed_and_the_rule_decides(tmp_path):
    s = VerdictStore(tmp_path / "v.jsonl", IDS)
    s.add("a.png", "normal", "ann")
    s.add("a.png", "anomalous", "bob")
    s.add("b.png", "anomalous", "ann")
    s.add("b.png", "skip", "bob")  # a skip is no verdict: no conflict
    s.add("c.png", "anomalous", "ann")
    s.add("c.png", "normal", "bob")
    assert [i for i, _ in s.conflicts()] == ["a.png", "c.png"]
    assert s.decide("a.png", "exclude") is None
    assert s.decide("a.png", "anomalous").reviewer == "bob"
    assert s.decide("c.png", "latest").reviewer == "bob"
    assert s.decide("c.png", "anomalous").reviewer == "ann"
    assert s.decide("b.png", "exclude").verdict == "anomalous"
    with pytest.raises(InputError, match="conflict rule"):
        s.decide("a.png", "coin-toss")


def test_corrupt_line_is_reported_with_its_number(tmp_path):
    path = tmp_path / "v.jsonl"
    s = VerdictStore(path, IDS)
    s.add("a.png", "normal", "ann")
    with path.open("a") as f:
        f.write('{"id": "b.png", "verdict": "norm\n')  # a torn write
    with pytest.raises(InputError, match=r"line 2 is broken") as e:
        VerdictStore(path, IDS)
    assert str(path) in str(e.value) and "norm" in str(e.value)  # names the file and shows the line
    path.write_text(path.read_text().splitlines()[0] + '\n{"id": "b.png", "verdict": "maybe", "reviewer": "x", "time": "t"}\n')
    with pytest.raises(InputError, match=r"line 2 is broken .*unknown verdict"):
        VerdictStore(path, IDS)


def test_bad_input_is_refused(tmp_path):
    s = VerdictStore(tmp_path / "v.jsonl", IDS)
    with pytest.raises(KeyError):
        s.add("../../etc/passwd", "normal", "ann")
    with pytest.raises(InputError, match="verdict must be"):
        s.add("a.png", "broken", "ann")
    with pytest.raises(InputError, match="reviewer name"):
        s.add("a.png", "normal", "  ")
    with pytest.raises(InputError, match="fractions"):
        s.add("a.png", "anomalous", "ann", marks=[{"type": "box", "x0": 0, "y0": 0, "x1": 2, "y1": 1}])
    assert not (tmp_path / "v.jsonl").exists()  # nothing invalid was written
