"""Fuzzing the model-file loader: corrupted, truncated and spliced bytes, hostile JSON
headers and .npy headers (re-zipped, so they get past the CRC) never crash ``fastnn.load``
and never raise anything but ValueError.  The mutators live in tests/loader_fuzzing.py
(tools/fuzz_loader.py drives them for a longer atheris run)."""

from __future__ import annotations

import random

import loader_fuzzing as fuzz
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

FUZZ = settings(max_examples=150, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def good():
    return fuzz.seed_file()


def test_seed_file_loads(good, tmp_path):
    assert fuzz.check(good, str(tmp_path / "m.fnn")) == "ok"


@pytest.mark.parametrize("mutator", fuzz.MUTATORS, ids=lambda m: m.__name__)
@FUZZ
@given(seed=st.integers(0, 2**63))
def test_mutated_files_give_value_error_only(mutator, seed, good, tmp_path):
    data = mutator(good, random.Random(seed))
    fuzz.check(data, str(tmp_path / "fuzz.fnn"))


@FUZZ
@given(data=st.binary(max_size=4096))
def test_arbitrary_bytes(data, tmp_path):
    fuzz.check(data, str(tmp_path / "fuzz.fnn"))


@FUZZ
@given(cut=st.integers(0, 10**6), junk=st.binary(max_size=64))
def test_truncated_and_appended(cut, junk, good, tmp_path):
    for data in (good[:cut % (len(good) + 1)], good + junk, junk + good):
        fuzz.check(data, str(tmp_path / "fuzz.fnn"))


def _rewrite(good: bytes, edit) -> bytes:
    import json

    ent = fuzz._entries(good)
    meta = json.loads(ent["fastnn.json"])
    edit(meta, ent)
    ent["fastnn.json"] = json.dumps(meta).encode()
    return fuzz._zip(ent)


def _dense(meta):
    return [sp for sp in meta["model"]["layers"] if sp["type"] == "Dense"][-1]


@pytest.mark.parametrize("edit,match", [
    # a 3 kB file must not make the loader allocate and initialize gigabytes
    (lambda m, e: _dense(m)["config"].update(out_features=2**28), "parameters but the file"),
    (lambda m, e: _dense(m)["config"].update(out_features=2**62), "parameters but the file"),
    (lambda m, e: m["layer_state"][4].update(seed=-1), "Dropout state"),
    (lambda m, e: m["layer_state"][4].update(counter=2**64), "Dropout state"),
    (lambda m, e: m["optimizer"].update(step_count=-5), "step_count"),
    (lambda m, e: m.update(step=-1), "negative"),
    (lambda m, e: e.update({"params/0000.npy": e["params/0000.npy"] + b"\0" * 10**6}),
     "larger"),
], ids=["dense-2**28", "dense-2**62", "dropout-seed", "dropout-counter", "opt-step",
        "model-step", "oversized-entry"])
def test_hostile_headers(edit, match, good, tmp_path):
    import fastnn as fnn

    path = tmp_path / "bad.fnn"
    path.write_bytes(_rewrite(good, edit))
    with pytest.raises(ValueError, match=match):
        fnn.load(path)
