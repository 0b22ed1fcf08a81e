"""Queue setups: guarantees proportional to a VC's nodes, and validated config files."""

from __future__ import annotations

from pathlib import Path

import pytest

from scheduler.domain.snapshot import QueueView, TypeQuota
from scheduler.sim.queues import (
    proportional_queues,
    queues_from_config,
    queues_from_vc,
    with_trace_queues,
)
from scheduler.sim.rows import TraceError

from .factories import write_lines


def test_the_worked_example() -> None:
    assert proportional_queues({"a": 3, "b": 1}, 16) == (
        QueueView("a", weight=1.5, guaranteed_gpus=12),
        QueueView("b", weight=0.5, guaranteed_gpus=4),
    )


def test_guarantees_are_whole_gpus_that_add_up_to_the_capacity() -> None:
    queues = proportional_queues({"a": 1, "b": 1, "c": 1}, 10)
    assert sorted(q.guaranteed_gpus for q in queues) == [3, 3, 4]


def test_vc_file(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "vc.csv", ["vc,node num", "x,64", "y,32", "z,32"])
    queues = queues_from_vc(path, 512)
    assert [(q.name, q.guaranteed_gpus, q.weight) for q in queues] == [
        ("x", 256, pytest.approx(1.5)),
        ("y", 128, pytest.approx(0.75)),
        ("z", 128, pytest.approx(0.75)),
    ]
    bad = write_lines(tmp_path / "bad.csv", ["vc,node num", "x,64", "y,many"])
    with pytest.raises(TraceError, match="row 3: node num 'many' is not a number"):
        queues_from_vc(bad, 512)


def test_config_as_list_or_mapping() -> None:
    as_list = queues_from_config(
        {
            "queues": [
                {"name": "org"},
                {"name": "a", "weight": 2, "guaranteed_gpus": 8, "parent": "org"},
                {"name": "b", "type_quotas": [{"gpu_type": "T4", "max_gpus": 4}]},
            ]
        }
    )
    assert as_list[1] == QueueView("a", weight=2.0, guaranteed_gpus=8, parent="org")
    assert as_list[2].type_quotas == (TypeQuota("T4", 0, 4),)
    as_mapping = queues_from_config({"queues": {"a": {"weight": 2}, "b": None}})
    assert [(q.name, q.weight) for q in as_mapping] == [("a", 2.0), ("b", 1.0)]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"queues": [{"name": "a", "weight": -1}]}, "queue a: weight"),
        ({"queues": [{"name": "a", "colour": "red"}]}, "queue a: colour"),
        ({"queues": [{"name": "a"}, {"name": "a"}]}, "named twice"),
        ({"queues": "a"}, "a queue config is"),
    ],
)
def test_a_bad_config_names_the_queue(data: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        queues_from_config(data)


def test_trace_queues_without_a_setup_get_defaults() -> None:
    views = with_trace_queues([QueueView("b", weight=3)], ["a", "b", "c"])
    assert views == (QueueView("a"), QueueView("b", weight=3), QueueView("c"))
