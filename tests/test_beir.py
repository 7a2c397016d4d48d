"""BEIR in, MTEB out: the BEIR reader and its errors, `evaluate --beir` and `compare --beir`, their
TREC runs and MTEB results, and every metric checked against pytrec_eval (trec_eval, which BEIR
and MTEB call) on the same run."""

from __future__ import annotations

import json
import random
import shlex
from pathlib import Path

import pytest

from embedsearch.errors import CorpusError, InvalidArgument
from embedsearch.evaluation.beir import load_beir
from embedsearch.evaluation.trec import CUTOFFS, MEASURES, read_run, trec_metrics, trec_order

pytrec_eval = pytest.importorskip("pytrec_eval")  # the oracle (the dev extra installs it)

ROOT = Path(__file__).resolve().parents[1]
LEE_QUERIES = ROOT / "corpora" / "lee-queries.jsonl"
SCHEMA = ROOT / "embedsearch" / "evaluation" / "report_schema.json"
SHOWN = ("ndcg_at_10", "recall_at_10", "map_at_10", "mrr_at_10")
TREC_NAMES = {"ndcg": "ndcg_cut", "map": "map_cut", "recall": "recall", "precision": "P", "hit_rate": "success"}


def write_beir(path: Path, corpus: list[dict], queries: list[dict], qrels: list[tuple], split: str = "test") -> Path:
    (path / "qrels").mkdir(parents=True, exist_ok=True)
    (path / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in corpus))
    (path / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in queries))
    rows = "".join(f"{q}\t{d}\t{s}\n" for q, d, s in qrels)
    (path / "qrels" / f"{split}.tsv").write_text("query-id\tcorpus-id\tscore\n" + rows)
    return path


def lee_beir(path: Path, *, documents: int | None = None) -> Path:
    """The Lee corpus and the project's 45 Lee queries as a BEIR set, with graded judgements: a
    query's first relevant story 2, the others 1, one story judged 0; plus a query nobody judged
    (skipped) and one judged with 0 only (it counts, scoring 0). Every third story has a title.
    ``documents``: only the judged stories and distractors up to this many (a smaller set)."""
    from embedsearch.datasets import bundled_corpus

    queries = [json.loads(line) for line in LEE_QUERIES.read_text().splitlines() if line.strip()]
    docs = bundled_corpus("lee")
    if documents is not None:
        judged = {d for q in queries for d in q["relevant"]}
        keep = judged | {d.id for d in docs if d.id not in judged and d.id.startswith("lee-test-")}
        docs = [d for d in docs if d.id in keep][:documents]
        kept = {d.id for d in docs}
        queries = [{**q, "relevant": [d for d in q["relevant"] if d in kept]} for q in queries]
        queries = [q for q in queries if q["relevant"]]
    corpus = [{"_id": d.id, "title": d.text.split(".")[0][:60] if i % 3 == 0 else "", "text": d.text} for i, d in enumerate(docs)]
    qrels = []
    for i, q in enumerate(queries):
        qrels += [(q["id"], d, 2 if j == 0 else 1) for j, d in enumerate(q["relevant"])]
        other = next(d["_id"] for d in corpus[i:] + corpus if d["_id"] not in q["relevant"])
        qrels.append((q["id"], other, 0))
    qrels.append(("nothing-relevant", corpus[0]["_id"], 0))
    rows = [{"_id": q["id"], "text": q["query"]} for q in queries]
    rows += [{"_id": "unjudged", "text": "a query the split does not judge"}, {"_id": "nothing-relevant", "text": "cricket"}]
    return write_beir(path, corpus, rows, qrels)


@pytest.fixture(scope="module")
def lee(tmp_path_factory) -> Path:
    return lee_beir(tmp_path_factory.mktemp("beir") / "lee-beir")


def tiny(path: Path) -> Path:
    """Three documents, two queries: the bad-input tests break one thing each."""
    corpus = [{"_id": "d1", "title": "Fire", "text": "bushfires near Sydney"}, {"_id": "d2", "text": "interest rates rise"}]
    corpus.append({"_id": "d3", "text": "cricket test match"})
    queries = [{"_id": "q1", "text": "bushfires"}, {"_id": "q2", "text": "bank rates"}]
    return write_beir(path, corpus, queries, [("q1", "d1", 2), ("q2", "d2", 1), ("q2", "d3", 0)])


# --------------------------------------------------------------------------- the reader


def test_the_reader_reads_documents_graded_queries_and_skips_unjudged(lee):
    beir = load_beir(lee)
    assert beir.name == "lee-beir" and beir.split == "test" and len(beir.documents) == 350
    first = beir.documents[0]
    assert first.metadata["title"] and first.text.startswith(first.metadata["title"] + " ")
    assert "title" not in beir.documents[1].metadata  # no title: the text alone
    assert [q.id for q in beir.queries][-1] == "nothing-relevant" and beir.skipped == ["unjudged"]
    assert len(beir.queries) == 46 and beir.without_relevant == 1
    hih = next(q for q in beir.queries if q.id == "hih")
    assert sorted(set(hih.grades.values())) == [0, 1, 2] and hih.relevant == {d for d, g in hih.grades.items() if g > 0}
    notes = " ".join(beir.notes())
    assert "1 of 47 queries has no judgements" in notes and "1 judged query has no relevant document" in notes
    assert load_beir(lee).fingerprint == beir.fingerprint and len(beir.fingerprint) == 64


def test_a_header_less_qrels_file_keeps_its_first_judgement(tmp_path):
    path = tiny(tmp_path / "t")
    (path / "qrels" / "test.tsv").write_text("q1\td1\t1\nq2\td2\t1\n")
    assert [q.id for q in load_beir(path).queries] == ["q1", "q2"]


@pytest.mark.parametrize(
    "damage, error, message",
    [
        (lambda p: (p / "corpus.jsonl").unlink(), CorpusError, "is not a BEIR directory: no corpus.jsonl"),
        (lambda p: (p / "queries.jsonl").unlink(), CorpusError, "is not a BEIR directory: no queries.jsonl"),
        (
            lambda p: (p / "qrels" / "test.tsv").rename(p / "qrels" / "dev.tsv"),
            InvalidArgument,
            "has no qrels/test.tsv; its splits: dev",
        ),
        (
            lambda p: _append(p / "corpus.jsonl", "not json\n[1]\n"),
            CorpusError,
            "corpus.jsonl: 2 malformed lines (first: line 4: not JSON (Expecting value); line 5: expected an object",
        ),
        (lambda p: _append(p / "corpus.jsonl", '{"text": "x"}\n'), CorpusError, "line 4: '_id' must be a non-empty string"),
        (lambda p: _append(p / "corpus.jsonl", '{"_id": "d9", "title": ""}\n'), CorpusError, "line 4: 'text' must be a string"),
        (lambda p: _append(p / "corpus.jsonl", '{"_id": "d9", "text": " "}\n'), CorpusError, "line 4: no title and no text"),
        (
            lambda p: _append(p / "corpus.jsonl", '{"_id": "d1", "text": "again"}\n'),
            CorpusError,
            "1 document id repeats (first: d1)",
        ),
        (
            lambda p: _append(p / "queries.jsonl", '{"_id": "q3"}\n'),
            CorpusError,
            "queries.jsonl: 1 malformed line (first: line 3:",
        ),
        (lambda p: _append(p / "queries.jsonl", '{"_id": "q1", "text": "x"}\n'), CorpusError, "1 query id repeats (first: q1)"),
        (lambda p: _append(p / "qrels" / "test.tsv", "q1 d2 1\n"), CorpusError, "expected 3 tab-separated fields"),
        (lambda p: _append(p / "qrels" / "test.tsv", "q1\td2\thigh\n"), CorpusError, "line 5: score 'high' is not an integer"),
        (
            lambda p: _append(p / "qrels" / "test.tsv", "q1\td1\t1\n"),
            CorpusError,
            "q1 d1 judged again with another score (2, then 1)",
        ),
        (
            lambda p: _append(p / "qrels" / "test.tsv", "q1\td17\t1\nq1\td18\t1\nq2\td99\t0\nq2\td18\t1\n"),
            CorpusError,
            "qrels/test.tsv names 3 corpus ids not in corpus.jsonl (first: d17, d18, d99)",
        ),
        (
            lambda p: _append(p / "qrels" / "test.tsv", "q9\td1\t1\n"),
            CorpusError,
            "names 1 query id not in queries.jsonl (first: q9)",
        ),
        (lambda p: (p / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n"), CorpusError, "test.tsv: no judgements"),
        (lambda p: (p / "corpus.jsonl").write_bytes(b'{"_id": "d1", "text": "caf\xe9"}\n'), CorpusError, "line 1: not UTF-8"),
    ],
)
def test_bad_beir_directories_are_refused_with_counts(tmp_path, damage, error, message):
    path = tiny(tmp_path / "t")
    damage(path)
    with pytest.raises(error) as caught:
        load_beir(path)
    assert message in str(caught.value)


def _append(path: Path, text: str) -> None:
    with path.open("a") as f:
        f.write(text)


@pytest.mark.parametrize(
    "args, code, message",
    [
        (["evaluate", "hashing", "--beir", "{beir}", "--split", "dev"], 2, "has no qrels/dev.tsv; its splits: test"),
        (["evaluate", "hashing", "--beir", "{beir}/nope"], 2, "does not exist"),
        (["evaluate", "hashing", "--mteb-json", "out"], 2, "--mteb-json needs --beir DIR"),
        (["evaluate", "hashing", "--split", "dev", "--runs", "r"], 2, "--split, --runs need --beir DIR"),
        (["evaluate", "hashing", "--beir", "{beir}", "--task-name", "a/b", "--mteb-json", "o"], 2, "task name 'a/b'"),
        (["evaluate", "hashing", "--beir", "{beir}", "--language", "english"], 2, "language 'english'"),
        (["evaluate", "hashing", "--beir", "{beir}", "--runs", "{beir}/corpus.jsonl"], 2, "is a file"),
        (["evaluate", "no/such/model", "--beir", "{beir}"], 2, "unknown model"),
        (["evaluate", "hashing+semantic", "--beir", "{beir}"], 2, "unknown search mode"),
        (
            ["compare", "hashing", "--beir", "{beir}", "--corpus", "lee"],
            2,
            "--beir brings its own corpus and queries: drop --corpus",
        ),
        (["compare", "hashing"], 2, "give --corpus (a file, directory or bundled corpus) or --beir DIR"),
        (["evaluate", "hashing", "--beir", "{spaced}", "--runs", "r"], 2, "1 document id holds whitespace (first: 'd 1')"),
        (["evaluate", "hashing", "--beir", "{broken}"], 1, "qrels/test.tsv names 1 corpus id not in corpus.jsonl (first: d7)"),
        (["compare", "hashing", "--beir", "{broken}"], 1, "qrels/test.tsv names 1 corpus id not in corpus.jsonl (first: d7)"),
    ],
)
def test_cli_refuses_bad_beir_input(cli, tmp_path, monkeypatch, args, code, message):
    monkeypatch.chdir(tmp_path)
    beir, broken = tiny(tmp_path / "t"), tiny(tmp_path / "b")
    _append(broken / "qrels" / "test.tsv", "q1\td7\t1\n")
    spaced = write_beir(tmp_path / "s", [{"_id": "d 1", "text": "x"}], [{"_id": "q1", "text": "x"}], [("q1", "d 1", 1)])
    r = cli(*[a.format(beir=beir, broken=broken, spaced=spaced) for a in args])
    assert r.exit_code == code, r.output
    assert message in r.output
    assert not (tmp_path / "out").exists() and not (tmp_path / "o").exists() and not (tmp_path / "r").exists()


# --------------------------------------------------------------------------- metrics = pytrec_eval


def pytrec_scores(qrels: dict, run: dict, cutoffs=CUTOFFS) -> dict[str, dict[str, float]]:
    """Per query, every metric of ours from pytrec_eval: trec_eval's measures, and MRR@k as
    trec_eval's reciprocal rank of the run cut at k (in trec_eval's own order)."""
    ks = ",".join(map(str, cutoffs))
    measures = {f"{name}.{ks}" for name in TREC_NAMES.values()}
    out = {
        q: {f"{m}_at_{k}": s[f"{TREC_NAMES[m]}_{k}"] for m in TREC_NAMES for k in cutoffs}
        for q, s in _evaluate(qrels, run, measures).items()
    }
    for k in cutoffs:
        cut = {q: dict(trec_order(hits.items())[:k]) for q, hits in run.items()}
        for q, s in _evaluate(qrels, cut, {"recip_rank"}).items():
            out[q][f"mrr_at_{k}"] = s["recip_rank"]
    return out


def _evaluate(qrels: dict, run: dict, measures: set[str]) -> dict:
    return pytrec_eval.RelevanceEvaluator(qrels, measures).evaluate({q: run.get(q, {}) for q in qrels})


def mean_scores(per_query: dict[str, dict[str, float]]) -> dict[str, float]:
    names = next(iter(per_query.values()))
    return {name: sum(s[name] for s in per_query.values()) / len(per_query) for name in names}


def qrels_of(path: Path) -> dict[str, dict[str, int]]:
    return {q.id: dict(q.grades) for q in load_beir(path).queries}


def test_trec_metrics_equal_pytrec_eval_on_random_runs():
    """Graded and negative judgements, ties, short and empty runs, queries with nothing relevant."""
    rng = random.Random(0)
    docs = [f"d{i}" for i in range(60)]
    qrels, run = {}, {}
    for q in range(300):
        qrels[f"q{q}"] = {d: rng.choice([0, 0, 1, 2, 3, -1]) for d in rng.sample(docs, rng.randint(1, 15))}
        run[f"q{q}"] = {d: rng.choice([0.1, 0.2, 0.5, rng.random()]) for d in rng.sample(docs, rng.randint(0, 60))}
    qids = sorted(qrels)
    ours = trec_metrics([[d for d, _ in trec_order(run[q].items())] for q in qids], [qrels[q] for q in qids])
    ref = pytrec_scores(qrels, run)
    assert set(ours) == {f"{m}_at_{k}" for m in MEASURES for k in CUTOFFS}
    for i, q in enumerate(qids):
        for name, values in ours.items():
            assert values[i] == pytest.approx(ref[q][name], abs=1e-12), (q, name)


def test_ties_are_ranked_by_document_id_descending(cli, tmp_path):
    """Three identical documents score the same: trec_eval (and so BEIR and MTEB) ranks them
    d3, d2, d1, so the relevant d1 comes third: nDCG@1 is 0."""
    corpus = [{"_id": f"d{i}", "text": "the same words"} for i in (1, 2, 3)]
    path = write_beir(tmp_path / "ties", corpus, [{"_id": "q", "text": "same words"}], [("q", "d1", 1)])
    r = cli("evaluate", "hashing", "--beir", str(path), "--runs", str(tmp_path / "runs"), "--json")
    assert r.exit_code == 0, r.output
    lines = (tmp_path / "runs" / "hashing.run").read_text().splitlines()
    assert [line.split()[2] for line in lines] == ["d3", "d2", "d1"] and len({line.split()[4] for line in lines}) == 1
    scores = json.loads(r.stdout)["scores"]
    assert scores["ndcg_at_1"] == 0.0 and scores["mrr_at_3"] == pytest.approx(1 / 3)
    ref = mean_scores(pytrec_scores(qrels_of(path), read_run(tmp_path / "runs" / "hashing.run")))
    assert scores["ndcg_at_3"] == pytest.approx(ref["ndcg_at_3"], abs=1e-12) == 0.5


def test_evaluate_beir_equals_pytrec_eval_and_writes_mteb_results(cli, lee, tmp_path):
    out, runs = tmp_path / "mteb", tmp_path / "runs"
    r = cli("evaluate", "hashing", "--beir", str(lee), "--mteb-json", str(out), "--runs", str(runs), "--json")
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout)
    assert summary["depth"] == 350 and summary["beir"]["queries"] == 46 and summary["beir"]["skipped_queries"] == 1
    run = read_run(runs / "hashing.run")
    assert len(run) == 46 and all(len(hits) == 350 for hits in run.values())  # every document, in order
    ref = mean_scores(pytrec_scores(qrels_of(lee), run))
    assert set(summary["scores"]) == set(ref)
    for name, value in summary["scores"].items():
        assert value == pytest.approx(ref[name], abs=1e-6), name
    print(f"evaluate hashing: {_agreement(summary['scores'], ref)}")

    [task] = out.glob("results/*/*/lee-beir.json")
    assert task.parent.parent.name == "embedsearch__hashing" and (task.parent / "model_meta.json").is_file()
    result, meta = json.loads(task.read_text()), json.loads((task.parent / "model_meta.json").read_text())
    assert {"dataset_revision", "task_name", "mteb_version", "scores", "evaluation_time", "kg_co2_emissions"} <= set(result)
    assert result["task_name"] == "lee-beir" and result["dataset_revision"] == "sha256:" + summary["beir"]["fingerprint"]
    [entry] = result["scores"]["test"]
    assert entry["main_score"] == entry["ndcg_at_10"] == summary["main_score"]
    assert entry["hf_subset"] == "default" and entry["languages"] == ["eng-Latn"]
    assert {k: v for k, v in entry.items() if k in ref} == summary["scores"]
    assert meta["name"] == "embedsearch/hashing" and meta["revision"] == task.parent.name and meta["embed_dim"] == 256

    r = cli("evaluate", "hashing", "--beir", str(lee))  # the table
    assert r.exit_code == 0 and "hashing [hashing (no weights)] on lee-beir, test split: 46 queries" in r.output
    assert f"{summary['scores']['ndcg_at_10']:.4f}" in r.output and "note: 1 of 47 queries has no judgements" in r.output


def test_compare_beir_equals_pytrec_eval_for_every_contender(cli, lee, tmp_path):
    import jsonschema

    out, runs, report_path = tmp_path / "mteb", tmp_path / "runs", tmp_path / "cmp.json"
    args = ["compare", "hashing", "bm25", "hashing+hybrid:rrf", "--beir", str(lee), "--no-word-level", "--no-docsim"]
    r = cli(*args, "--mteb-json", str(out), "--runs", str(runs), "--task-name", "LeeBeir", "--json", str(report_path))
    assert r.exit_code == 0, r.output
    report = json.loads(report_path.read_text())
    jsonschema.validate(report, json.loads(SCHEMA.read_text()))
    assert report["settings"]["queries"]["mode"] == "beir" and report["beir"]["depth"] == 350
    assert any("skipped, as BEIR and MTEB skip them" in n for n in report["notes"])
    qrels = qrels_of(lee)
    for label in ("hashing", "bm25", "hashing+hybrid:rrf"):
        ref = mean_scores(pytrec_scores(qrels, read_run(runs / f"{label}.run")))
        for name, value in report["beir"]["scores"][label].items():
            assert value == pytest.approx(ref[name], abs=1e-6), (label, name)
        for ours, theirs in (
            ("ndcg@10", "ndcg_at_10"),
            ("recall@10", "recall_at_10"),
            ("map@10", "map_at_10"),
            ("mrr@10", "mrr_at_10"),
        ):
            assert report["metrics"][ours]["values"][label]["value"] == pytest.approx(ref[theirs], abs=1e-6), (label, ours)
        [task] = out.glob(f"results/embedsearch__{label}/*/LeeBeir.json")
        assert json.loads(task.read_text())["scores"]["test"][0]["main_score"] == pytest.approx(ref["ndcg_at_10"], abs=1e-6)
        print(f"compare {label}: {_agreement(report['beir']['scores'][label], ref)}")
    assert (out / "results" / "embedsearch__bm25" / "no_revision_available" / "model_meta.json").is_file()
    # tied scores, so the tie order is tested
    rows = [line.split() for line in (runs / "bm25.run").read_text().splitlines()]
    assert any(a[0] == b[0] and a[4] == b[4] for a, b in zip(rows[:-1], rows[1:], strict=True))
    # the dense contender ranks as `evaluate` ranks: the same run
    r = cli("evaluate", "hashing", "--beir", str(lee), "--runs", str(tmp_path / "alone"))
    assert r.exit_code == 0
    assert _ranking(tmp_path / "alone" / "hashing.run") == _ranking(runs / "hashing.run")


def _agreement(ours: dict[str, float], ref: dict[str, float]) -> str:
    worst = max(abs(ours[n] - ref[n]) for n in ref)
    shown = ", ".join(f"{n} {ours[n]:.6f} / {ref[n]:.6f}" for n in SHOWN)
    return f"ours / pytrec_eval: {shown}; largest difference over {len(ref)} metrics {worst:.1e}"


def _ranking(path: Path) -> list[tuple[str, str]]:
    return [tuple(line.split()[:3:2]) for line in path.read_text().splitlines()]


@pytest.mark.slow
def test_readme_beir_example_runs_as_written(cli, tmp_path, monkeypatch):
    """The README's `--beir` block, with MiniLM, on a small stand-in for scifact/ built from Lee."""
    from tests.test_readme import _blocks

    [block] = [b for b in _blocks("bash") if "--beir scifact" in b]
    lines = [line.split("  #")[0] for line in block.replace("\\\n", " ").splitlines() if line.startswith("embedsearch ")]
    assert len(lines) == 3
    monkeypatch.chdir(tmp_path)
    lee_beir(tmp_path / "scifact", documents=40)
    outputs = []
    for line in lines:
        r = cli(*shlex.split(line)[1:])
        assert r.exit_code == 0, f"{line}\n{r.output}"
        outputs.append(r.stdout)
    assert json.loads(outputs[1])["label"] == "bm25"
    minilm = json.loads(next((tmp_path / "mteb-results").glob("results/embedsearch__minilm/*/scifact.json")).read_text())
    ref = mean_scores(pytrec_scores(qrels_of(tmp_path / "scifact"), read_run(tmp_path / "runs" / "minilm.run")))
    assert minilm["scores"]["test"][0]["ndcg_at_10"] == pytest.approx(ref["ndcg_at_10"], abs=1e-6) and ref["ndcg_at_10"] > 0.5
    assert {p.name for p in (tmp_path / "runs").iterdir()} == {"minilm.run", "bm25.run", "minilm+hybrid.run"}
    assert (tmp_path / "reports" / "scifact.html").is_file()
