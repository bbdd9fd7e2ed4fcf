"""Group commit's mechanism, with threads (the API's gevent worker patches the same primitives)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from fibapi.groupcommit import GroupCommit
from processes import wait_until


class Writes:
    """A write that records each group, and can be held until released."""

    def __init__(self, answer: Callable[[int], object] = lambda item: item * 10) -> None:
        self.groups: list[list[int]] = []
        self.answer = answer
        self.entered = threading.Event()
        self.release = threading.Event()
        self.release.set()

    def __call__(self, group: list[int]) -> list[object]:
        self.groups.append(list(group))
        self.entered.set()
        assert self.release.wait(10)
        return [self.answer(item) for item in group]


def in_threads(commit: GroupCommit[int, object], items: list[int]) -> tuple[list[threading.Thread], dict[int, object]]:
    outcomes: dict[int, object] = {}

    def call(item: int) -> None:
        try:
            outcomes[item] = commit(item)
        except BaseException as exc:
            outcomes[item] = exc

    threads = [threading.Thread(target=call, args=(item,)) for item in items]
    for thread in threads:
        thread.start()
    return threads, outcomes


def wait_for_waiters(commit: GroupCommit[Any, Any], count: int) -> None:
    wait_until(lambda: commit.waiting() >= count, timeout=10, interval=0.001)


def during_a_held_write(
    commit: GroupCommit[int, object], writes: Writes, first: int, items: list[int]
) -> tuple[dict[int, object], dict[int, object]]:
    """`first` alone, its write held while `items` arrive; then all released: what each caller got."""
    writes.release.clear()
    leader, first_outcome = in_threads(commit, [first])
    assert writes.entered.wait(10)
    later, outcomes = in_threads(commit, items)
    wait_for_waiters(commit, len(items))
    writes.release.set()
    for thread in leader + later:
        thread.join(10)
    return first_outcome, outcomes


def test_a_lone_call_writes_at_once_alone() -> None:
    writes = Writes()
    commit: GroupCommit[int, object] = GroupCommit(writes)
    assert commit(4) == 40
    assert commit(5) == 50
    assert writes.groups == [[4], [5]]


def test_calls_arriving_during_a_write_share_the_next_one() -> None:
    writes = Writes()
    commit: GroupCommit[int, object] = GroupCommit(writes)
    first_outcome, outcomes = during_a_held_write(commit, writes, 1, list(range(2, 22)))
    assert writes.groups[0] == [1]
    assert sorted(writes.groups[1]) == list(range(2, 22))  # all twenty in one write
    assert len(writes.groups) == 2
    assert first_outcome == {1: 10}
    assert outcomes == {item: item * 10 for item in range(2, 22)}


def test_a_group_is_bounded_and_the_rest_follow_at_once() -> None:
    writes = Writes()
    commit: GroupCommit[int, object] = GroupCommit(writes, max_group=4)
    _, outcomes = during_a_held_write(commit, writes, 0, list(range(1, 11)))
    assert [len(group) for group in writes.groups] == [1, 4, 4, 2]
    assert outcomes == {item: item * 10 for item in range(1, 11)}


def test_an_item_refused_by_the_write_raises_in_its_own_caller_only() -> None:
    refused = ValueError("refused")
    writes = Writes(lambda item: refused if item % 2 else item)
    commit: GroupCommit[int, object] = GroupCommit(writes)
    _, outcomes = during_a_held_write(commit, writes, 0, [1, 2, 3, 4])
    assert outcomes == {1: refused, 2: 2, 3: refused, 4: 4}


def test_a_failed_write_raises_in_every_caller_of_its_group_and_the_next_group_still_runs() -> None:
    calls = []

    def write(group: list[int]) -> list[object]:
        calls.append(group)
        if len(calls) == 1:
            raise ConnectionError("Postgres went away")
        return list(group)

    commit: GroupCommit[int, object] = GroupCommit(write)
    with pytest.raises(ConnectionError):
        commit(1)
    assert commit(2) == 2


def test_a_leader_killed_mid_write_leaves_nobody_waiting() -> None:
    """A greenlet killed by gunicorn's timeout sees GreenletExit, a BaseException: the others must still wake."""
    writes = Writes()
    kill = threading.Event()

    def write(group: list[int]) -> list[object]:
        if group == [0]:
            writes.entered.set()
            assert kill.wait(10)
            raise KeyboardInterrupt  # what no `except Exception` catches
        return writes(group)

    commit: GroupCommit[int, object] = GroupCommit(write)
    first, first_outcome = in_threads(commit, [0])
    assert writes.entered.wait(10)
    writes.entered.clear()
    later, outcomes = in_threads(commit, [1, 2])
    wait_for_waiters(commit, 2)
    kill.set()
    for thread in first + later:
        thread.join(10)
        assert not thread.is_alive()
    assert isinstance(first_outcome[0], KeyboardInterrupt)
    assert outcomes == {1: 10, 2: 20}  # handed on to: written in the next group
