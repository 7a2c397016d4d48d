"""gensim's mini_newsgroup read from its pickle opcodes, never unpickled."""

from __future__ import annotations

import pickle
import pickletools
from collections import Counter

import numpy as np
import pytest

from embedsearch.datasets import Opaque, mini_newsgroup, ndarray_from, read_pickle_data, split_headers
from embedsearch.errors import CorpusError


def test_mini_newsgroup_without_unpickling(no_pickle):
    raw = mini_newsgroup(strip_headers=False)
    assert raw.label_names == ["alt.atheism", "sci.space"]
    assert Counter(d.metadata["label"] for d in raw.documents) == {"alt.atheism": 100, "sci.space": 100}
    # the decoded targets agree with each post's own Newsgroups header
    for doc in raw.documents:
        groups = split_headers(doc.text)[0].get("newsgroups", "")
        assert doc.metadata["label"] in groups.split(","), (doc.id, groups)
    stripped = mini_newsgroup()
    assert all(not d.text.startswith("Newsgroups:") and "Path:" not in d.text[:5] for d in stripped.documents)
    assert all(d.text for d in stripped.documents)


def test_reader_builds_plain_values_and_never_calls_globals():
    arr = np.arange(6, dtype=np.int64).reshape(2, 3)
    payload = {"a": [1, 2.5, "x", None, True], "b": (1, 2), "arr": arr}
    for protocol in (0, 2, 4):
        value = read_pickle_data(pickle.dumps(payload, protocol=protocol))
        assert value["a"] == [1, 2.5, "x", None, True] and value["b"] == (1, 2)
        assert isinstance(value["arr"], Opaque)  # a numpy array stays an inert record...
        if protocol < 3:
            np.testing.assert_array_equal(ndarray_from(value["arr"]), arr)  # ...that can be decoded
    evil = pickle.dumps(Opaque, protocol=0).replace(b"embedsearch.datasets\nOpaque", b"os\nsystem")
    assert isinstance(read_pickle_data(evil), Opaque)
    assert read_pickle_data(evil).name == "os.system"


class Plain:
    def __init__(self) -> None:
        self.x = 1


def test_unknown_opcodes_are_refused():
    data = pickle.dumps(Plain(), protocol=2)
    assert "NEWOBJ" in {op.name for op, _, _ in pickletools.genops(data)}
    with pytest.raises(CorpusError, match="opcode NEWOBJ"):
        read_pickle_data(data)
