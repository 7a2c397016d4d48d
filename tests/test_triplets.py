"""Triplet sources: files with line-numbered errors, stratified splits, mining."""

from __future__ import annotations

import numpy as np
import pytest

from embedsearch.corpus import Document
from embedsearch.errors import CorpusError, InvalidArgument
from embedsearch.trainers.triplets import mine_triplets, read_triplets, split_labelled


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("t.jsonl", '{"anchor": "a", "positive": "b", "negative": "c"}\n{"anchor": "a", "positive": "b"}\n',
         r"t\.jsonl:2: 'negative' is missing or empty"),
        ("t.jsonl", '{"anchor": "a", "positive": " ", "negative": "c"}\n', r"t\.jsonl:1: 'positive' is missing or empty"),
        ("t.jsonl", '{"anchor": "a", "positive": "b", "negative": "c"}\n{oops\n', r"t\.jsonl:2: malformed JSON"),
        ("t.jsonl", '["a", "b", "c"]\n', r"t\.jsonl:1: expected an object"),
        ("t.jsonl", "\n\n", "no triplets"),
        ("t.csv", "anchor,positive\na,b\n", r"t\.csv:1: the header lacks negative"),
        ("t.csv", "anchor,positive,negative\na,b,c\nd,,f\n", r"t\.csv:3: 'positive' is missing or empty"),
    ],
)  # fmt: skip
def test_bad_triplet_files_name_the_line(name, content, message, tmp_path):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(CorpusError, match=message):
        read_triplets(path)


def test_good_triplet_files(tmp_path):
    (tmp_path / "t.jsonl").write_text('{"anchor": " a ", "positive": "b", "negative": "c", "extra": 1}\n')
    (tmp_path / "t.tsv").write_text("anchor\tpositive\tnegative\nx\ty\tz\n")
    assert [(t.anchor, t.positive, t.negative) for t in read_triplets(tmp_path / "t.jsonl")] == [("a", "b", "c")]
    assert [(t.anchor, t.negative) for t in read_triplets(tmp_path / "t.tsv")] == [("x", "z")]
    (tmp_path / "latin.jsonl").write_bytes(b'{"anchor": "caf\xe9", "positive": "b", "negative": "c"}\n')
    with pytest.raises(CorpusError, match="--encoding"):
        read_triplets(tmp_path / "latin.jsonl")


def labelled(counts: dict[str, int]) -> list[Document]:
    return [Document(f"{lab}-{i}", f"text {lab} {i}", {"team": lab}) for lab, n in counts.items() for i in range(n)]


def test_split_is_by_document_and_stratified():
    docs = labelled({"a": 20, "b": 10, "c": 5, "solo": 1})
    skipped = []
    split = split_labelled(docs, "team", held_out=0.2, on_skip=skipped.append)
    assert split.skipped_labels == ["solo"] and "only one document" in skipped[0]
    train_ids, test_ids = {d.id for d in split.train}, {d.id for d in split.held_out}
    assert not train_ids & test_ids and len(train_ids | test_ids) == 35
    per_label = {lab: sum(d.metadata["team"] == lab for d in split.held_out) for lab in "abc"}
    assert per_label == {"a": 4, "b": 2, "c": 2}
    assert split_labelled(docs, "team", seed=1).held_out == split_labelled(docs, "team", seed=1).held_out


def test_split_errors():
    with pytest.raises(CorpusError, match="at least two labels"):
        split_labelled(labelled({"a": 5, "b": 1}), "team")
    with pytest.raises(CorpusError, match="no 'group' label"):
        split_labelled(labelled({"a": 5, "b": 5}), "group")


def test_random_mining_respects_labels():
    docs = labelled({"a": 6, "b": 6, "c": 6})
    label_of = {d.text: d.metadata["team"] for d in docs}
    triplets = mine_triplets(docs, "team", strategy="random", per_anchor=3)
    assert len(triplets) == 54
    for t in triplets:
        assert label_of[t.anchor] == label_of[t.positive] != label_of[t.negative] and t.anchor != t.positive


def test_hard_and_semi_hard_negatives_against_brute_force():
    rng = np.random.default_rng(0)
    docs = labelled({"a": 15, "b": 15, "c": 15})
    x = rng.standard_normal((45, 16)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    labels = np.array([d.metadata["team"] for d in docs])
    index = {d.text: i for i, d in enumerate(docs)}
    hard = mine_triplets(docs, "team", strategy="hard", embeddings=x)
    for t in hard:
        i, n = index[t.anchor], index[t.negative]
        wrong = np.flatnonzero(labels != labels[i])
        assert n == wrong[np.argmax(x[wrong] @ x[i])]  # the most similar wrong-label document
    semi = mine_triplets(docs, "team", strategy="semi-hard", embeddings=x, margin=0.3)
    inside = 0
    for t in semi:
        i, p, n = index[t.anchor], index[t.positive], index[t.negative]
        assert labels[n] != labels[i]
        s_pos, s_neg = x[i] @ x[p], x[i] @ x[n]
        if s_pos - 0.3 < s_neg < s_pos:
            inside += 1
    assert inside > len(semi) // 2  # most anchors have a negative in the window
    with pytest.raises(InvalidArgument, match="needs one embedding per document"):
        mine_triplets(docs, "team", strategy="hard")
    with pytest.raises(InvalidArgument, match="unknown mining strategy"):
        mine_triplets(docs, "team", strategy="hardest")
