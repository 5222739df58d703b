"""Persisted flow results are typed JSON, and a record of any other kind is refused unread.

Prefect reads a result with the serializer the stored record names; a pickled record written
into the results bucket would run code in the flow run that checks its cache key. These tests
forge such a record and check that nothing in it runs.
"""

from __future__ import annotations

import asyncio
import pickle
from pathlib import Path

import numpy as np
import pytest
from prefect.results import ResultStore
from prefect.serializers import PickleSerializer

from lerenet.data.quarantine import Finding
from lerenet.data.split_result import Split
from lerenet.data.splits import Episode, Fold
from lerenet.data.suite import Outcome
from lerenet.data.validate import ValidationReport
from lerenet.evaluation.gate import GateDecision
from lerenet.results import EvaluationReport, ModelScores, ShotEvidence, ShotScores, TrainSummary
from lerenet.services import typed_json
from lerenet.services.typed_json import UntrustedValue
from pipelines.result_store import PACKAGES, CheckedResults, TypedJSONSerializer, UntrustedResult


def _split() -> Split:
    episode = Episode("MT_Crack", "images/MT_Crack/a.png", ("images/MT_Crack/b.png",))
    return Split(
        sha256="ab" * 32,
        folds=(Fold(["MT_Break"], ["MT_Fray"], ["MT_Crack"]),),
        held_out=frozenset({"images/MT_Break/c.png", "images/MT_Break/d.png"}),
        episodes={"fold0/test_1shot.json": (episode,)},
        novel_classes=("MT_Crack",),
        out_dir="outputs/split",
    )


def _scores() -> ModelScores:
    shot = ShotScores(0.5, 0.4, 0.6, 0.7, 0.6, 0.8, 30, {"MT_Crack": 0.5}, {}, {})
    evidence = ShotEvidence(np.arange(12, dtype=np.float64).reshape(3, 4), ["MT_Crack"] * 3)
    return ModelScores("lerenet", 0, "test", {"1shot": shot}, {"1shot": evidence})


def test_the_pipelines_result_types_come_back_equal() -> None:
    values = [
        _split(),
        TrainSummary("run1", "outputs/best.pt", 1500, 0.52, 1500, throughput={"it/s": 3.5}),
        EvaluationReport("models:/m-1", "ab" * 32, "run1", _scores(), seen={"MT_Break": _scores()}),
        GateDecision(True, ["beats the baseline"], {"delta": [0.1, float("nan")]}),
        ValidationReport(
            "data",
            54,
            {"MT_Crack": 6},
            [Outcome("counts", None, True, True, observed={"MT_Crack": np.int64(6)})],
            [Finding("MT_Crack", "a.png", "size", "too small", "drop it")],
        ),  # fmt: skip
        {1: Path("a/b"), "k": ({"x"}, None)},
    ]
    for value in values:
        back = typed_json.loads(typed_json.dumps(value), PACKAGES)
        if isinstance(value, GateDecision):
            assert back.numbers["delta"][0] == 0.1 and np.isnan(back.numbers["delta"][1])
            assert (back.passed, back.reasons) == (value.passed, value.reasons)
            continue
        assert back == value
        assert type(back) is type(value)
    report = typed_json.loads(typed_json.dumps(values[2]), PACKAGES)
    evidence = report.lerenet.evidence["1shot"]
    np.testing.assert_array_equal(evidence.stats, values[2].lerenet.evidence["1shot"].stats)
    assert evidence.stats.dtype == np.float64 and evidence.classes == ["MT_Crack"] * 3
    assert values[4].outcomes[0].observed == {"MT_Crack": 6}


def test_exceptions_come_back_as_their_class_when_it_is_known() -> None:
    from lerenet.services.reach import ServiceUnavailable

    for exc in (ValueError("bad"), FileNotFoundError("gone"), ServiceUnavailable("down")):
        back = typed_json.loads(typed_json.dumps(exc), PACKAGES)
        assert type(back) is type(exc) and str(back) == str(exc)
    foreign = typed_json.loads(typed_json.dumps(pickle.UnpicklingError("x")), PACKAGES)
    assert type(foreign) is RuntimeError and "_pickle.UnpicklingError: x" in str(foreign)


@pytest.mark.parametrize(
    "stored",
    [
        '{"__dataclass__": "os:system", "fields": {}}',
        '{"__dataclass__": "subprocess:Popen", "fields": {"args": "touch x"}}',
        # a class imported into a project module, not defined there
        '{"__dataclass__": "lerenet.results:Path", "fields": {}}',
        '{"__model__": "pydantic:BaseModel", "data": {}}',
        '{"__dataclass__": "lerenet.results:TrainSummary", "fields": {"__class__": 1}}',
        '{"__dataclass__": "lerenet..results:TrainSummary", "fields": {}}',
        '{"__array__": {"dtype": "|O", "shape": [1], "data": ""}}',
        '{"__array__": {"dtype": "<f8", "shape": [1000], "data": "AAAA"}}',
        '{"__dataclass__": "lerenet.results:TrainSummary"}',
        '{"__tuple__": 5}',
    ],
)
def test_a_stored_value_naming_anything_else_is_refused(stored: str) -> None:
    with pytest.raises(UntrustedValue):
        typed_json.loads(stored, PACKAGES)


def test_a_result_of_a_type_that_cannot_travel_fails_when_written() -> None:
    import enum
    from typing import NamedTuple

    class Kind(enum.StrEnum):
        A = "a"

    class Pair(NamedTuple):
        x: int

    with pytest.raises(TypeError, match=r"\$\.numbers\.f: a builtins\.builtin_function"):
        typed_json.dumps(GateDecision(True, numbers={"f": len}))
    for value in (Kind.A, Pair(1), np.array([object()])):  # would come back as another type
        with pytest.raises(TypeError, match="cannot be stored"):
            typed_json.dumps([value])


def _store(tmp_path: Path, serializer) -> ResultStore:
    """A store on fsspec's in-memory filesystem (a bucket of its own per test)."""
    bucket = CheckedResults(basepath=f"memory://{tmp_path.name}/results")
    return ResultStore(result_storage=bucket, serializer=serializer)


class _Payload:
    """Unpickling this creates a file: proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_pickled_record_in_the_bucket_is_never_unpickled(tmp_path: Path) -> None:
    marker = tmp_path / "code-ran"
    forged = _store(tmp_path, PickleSerializer())  # what an attacker with bucket write does
    forged.write(_Payload(marker), key="ingest-cache-key")
    assert forged.result_storage.filesystem.exists(f"{tmp_path.name}/results/ingest-cache-key")
    assert not marker.exists()

    store = _store(tmp_path, TypedJSONSerializer())
    assert not store.exists("ingest-cache-key")  # a cache check: the task runs again
    with pytest.raises(UntrustedResult, match="serializer 'pickle'"):
        store.read("ingest-cache-key")
    with pytest.raises(UntrustedResult, match="serializer 'pickle'"):  # the async path too
        asyncio.run(store.aread("ingest-cache-key"))
    assert not marker.exists()

    # the control: Prefect's own storage block runs the forged record's code on a cache check
    from prefect.filesystems import RemoteFileSystem

    plain = RemoteFileSystem(basepath=forged.result_storage.basepath)
    assert ResultStore(result_storage=plain).exists("ingest-cache-key") and marker.exists()

    store.write(_split(), key="ingest-cache-key")  # the rerun overwrites it
    assert store.exists("ingest-cache-key")
    assert store.read("ingest-cache-key").result == _split()


def test_a_record_that_names_a_decoder_is_refused(tmp_path: Path) -> None:
    from prefect.serializers import JSONSerializer

    forged = _store(tmp_path, JSONSerializer(object_decoder="os.system"))
    forged.write({"x": 1}, key="k")
    with pytest.raises(UntrustedResult, match="serializer 'json'"):
        _store(tmp_path, TypedJSONSerializer()).read("k")
    # bare bytes (a pickle, no record around it) go to the reading store's own serializer
    forged.result_storage.write_path("raw", pickle.dumps(_Payload(tmp_path / "ran")))
    with pytest.raises(ValueError):
        _store(tmp_path, TypedJSONSerializer()).read("raw")
    assert not (tmp_path / "ran").exists()


def test_a_record_with_two_metadata_keys_is_read_as_it_was_checked(tmp_path: Path) -> None:
    """The check and Prefect's parser must see one record: a duplicated key that one JSON
    parser reads first and another last would otherwise smuggle a pickle past the check."""
    marker = tmp_path / "code-ran"
    forged = _store(tmp_path, PickleSerializer())
    forged.write(_Payload(marker), key="k")
    bucket = forged.result_storage
    record = bucket.filesystem.cat(f"{tmp_path.name}/results/k").decode()
    ours = '{"serializer": {"type": "lerenet-json"}, "prefect_version": "3", "storage_key": "k"}'
    # the pickle's metadata first, ours last: Python's json keeps the last of a duplicated key
    bucket.write_path("k", (record.rstrip()[:-1] + f', "metadata": {ours}}}').encode())
    with pytest.raises(ValueError):  # the pickle's bytes reach only the typed-JSON decoder
        _store(tmp_path, TypedJSONSerializer()).read("k")
    assert not marker.exists()
