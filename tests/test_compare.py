"""Comparison reports: the metrics on hand-computed cases, `embedsearch compare` end to end for
two small real models (HTML, JSON against its schema, Markdown), ANN mode, bad input, and the
HTML in headless Chromium."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from embedsearch.evaluation.ann import knn_recall
from embedsearch.evaluation.metrics import (
    bootstrap_ci,
    bootstrap_indices,
    jaccard,
    mean_jaccard,
    paired_difference,
    ranking_metrics,
    spearman,
)

ROOT = Path(__file__).resolve().parents[1]
LEE_QUERIES = ROOT / "corpora" / "lee-queries.jsonl"
SCHEMA = ROOT / "embedsearch" / "evaluation" / "report_schema.json"


pytestmark = pytest.mark.slow  # embeds corpora with several models


# --------------------------------------------------------------------------- metrics by hand


def test_ranking_metrics_hand_computed():
    ranked = [["a", "x", "b"], ["x", "y", "c"], ["x", "y", "w"], ["r1", "r2", "q"]]
    relevant = [{"a", "b"}, {"c"}, {"z"}, {"r1", "r2", "r3", "r4", "r5"}]
    m = ranking_metrics(ranked, relevant, k=2)
    # k = 2: query 0 finds a (rank 1) of 2 relevant; query 1 finds nothing in its top 2
    assert m["recall@2"].tolist() == [0.5, 0.0, 0.0, 1.0]  # query 3: capped, 2 found of min(2, 5)
    assert m["mrr@2"].tolist() == [1.0, 0.0, 0.0, 1.0]
    m = ranking_metrics(ranked, relevant, k=3)
    assert m["recall@3"].tolist() == [1.0, 1.0, 0.0, pytest.approx(2 / 3)]
    assert m["mrr@3"].tolist() == [1.0, pytest.approx(1 / 3), 0.0, 1.0]
    # nDCG@3, query 0: DCG = 1 + 1/log2(4) = 1.5; ideal (2 relevant) = 1 + 1/log2(3)
    assert m["ndcg@3"][0] == pytest.approx(1.5 / (1 + 1 / math.log2(3)))
    assert m["ndcg@3"][1] == pytest.approx(0.5)  # one relevant at rank 3: (1/log2 4) / 1
    assert m["ndcg@3"][2] == 0.0
    assert m["ndcg@3"][3] == pytest.approx((1 + 1 / math.log2(3)) / (1 + 1 / math.log2(3) + 0.5))


def test_ranking_metrics_reject_bad_input():
    from embedsearch.errors import InvalidArgument

    with pytest.raises(InvalidArgument, match="no relevant"):
        ranking_metrics([["a"]], [set()], k=1)
    with pytest.raises(InvalidArgument, match="rankings"):
        ranking_metrics([["a"]], [], k=1)


def test_jaccard_and_spearman_with_ties():
    assert jaccard([1, 2, 3], [2, 3, 4]) == 0.5
    assert jaccard([], []) == 1.0 and jaccard([1], [2]) == 0.0
    assert mean_jaccard([[1, 2], [3]], [[1, 2], [4]]) == 0.5
    # x has a tie: ranks 1, 2.5, 2.5, 4; rho = 4.5 / sqrt(4.5 * 5)
    assert spearman([1, 2, 2, 3], [1, 2, 3, 4]) == pytest.approx(4.5 / math.sqrt(22.5))
    assert spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert spearman([5, 5, 5], [1, 2, 3]) is None  # undefined for a constant side
    from scipy.stats import spearmanr

    rng = np.random.default_rng(1)
    x, y = rng.integers(0, 5, 50), rng.integers(0, 5, 50)  # many ties
    assert spearman(x, y) == pytest.approx(spearmanr(x, y).statistic)


def test_bootstrap_intervals_and_paired_differences():
    idx = bootstrap_indices(200, 500, seed=3)
    assert idx.shape == (500, 200)
    mean, low, high = bootstrap_ci(np.full(200, 0.7), idx)
    assert mean == low == high == pytest.approx(0.7)
    values = np.random.default_rng(0).random(200)
    mean, low, high = bootstrap_ci(values, idx)
    assert low < mean < high and high - low < 0.2
    same = paired_difference(values, values, idx)
    assert same["difference"] == 0 and not same["significant"]
    better = paired_difference(values + 0.1, values, idx)
    assert better["significant"] and better["low"] == pytest.approx(0.1)
    noisy = paired_difference(values, np.random.default_rng(9).random(200), idx)
    assert noisy["low"] < 0 < noisy["high"] and not noisy["significant"]


def test_knn_recall_hand_case():
    truth = np.array([[0, 1, 2], [3, 4, 5]])
    found = np.array([[2, 1, 9], [3, -1, -1]])
    assert knn_recall(found, truth) == pytest.approx((2 / 3 + 1 / 3) / 2)


# --------------------------------------------------------------------------- end to end


@pytest.fixture(scope="session")
def w2v_model(tmp_path_factory) -> Path:
    """A small real word2vec model trained on the Lee background corpus."""
    from click.testing import CliRunner

    from embedsearch.cli import main
    from embedsearch.datasets import gensim_data

    out = tmp_path_factory.mktemp("models") / "w2v"
    args = [
        "train",
        "word2vec",
        str(gensim_data("lee_background.cor")),
        "-o",
        str(out),
        "--encoding",
        "latin-1",
        "--dim",
        "32",
        "--epochs",
        "5",
        "--min-count",
        "2",
        "--deterministic",
    ]
    r = CliRunner().invoke(main, args, catch_exceptions=False)
    assert r.exit_code == 0, r.output
    return out


def _validate(report: dict) -> None:
    import jsonschema

    jsonschema.validate(report, json.loads(SCHEMA.read_text()))


@pytest.fixture(scope="session")
def lee_report(tmp_path_factory, w2v_model) -> Path:
    from click.testing import CliRunner

    from embedsearch.cli import main

    out = tmp_path_factory.mktemp("report")
    args = [
        "compare",
        "hashing",
        f"w2v={w2v_model}",
        "--corpus",
        "lee",
        "--queries",
        str(LEE_QUERIES),
        "-o",
        str(out / "cmp.html"),
        "--json",
        str(out / "cmp.json"),
        "--markdown",
        str(out / "cmp.md"),
        "--bootstrap",
        "200",
    ]
    r = CliRunner().invoke(main, args, catch_exceptions=False)
    assert r.exit_code == 0, r.output
    return out


def test_compare_two_models_on_lee(lee_report, w2v_model):
    report = json.loads((lee_report / "cmp.json").read_text())
    _validate(report)
    assert [m["label"] for m in report["models"]] == ["hashing", "w2v"]
    s = report["settings"]
    assert s["corpus"]["documents"] == 350 and s["queries"]["count"] == 45 and s["queries"]["mode"] == "queries"
    assert "compare hashing" in s["command"]
    metrics = report["metrics"]
    for name in ("recall@10", "mrr@10", "ndcg@10"):
        for label in ("hashing", "w2v"):
            v = metrics[name]["values"][label]
            assert 0 <= v["low"] <= v["value"] <= v["high"] <= 1
        assert metrics[name]["best"] in ("hashing", "w2v")
        loser = "w2v" if metrics[name]["best"] == "hashing" else "hashing"
        # the loser carries its paired test against the best, and is tied exactly when it is not significant
        vs = metrics[name]["values"][loser]["vs_best"]
        assert (loser in metrics[name]["tied_with_best"]) == (not vs["significant"])
    # word level applies to the word model only, and the report says why not for hashing
    assert metrics["wordsim353"]["values"]["hashing"] is None
    assert "no notion of word meaning" in metrics["wordsim353"]["why_empty"]["hashing"]
    w = metrics["wordsim353"]["values"]["w2v"]
    assert 0 < w["oov_rate"] < 1 and "OOV rate" in w["note"]
    assert metrics["google_analogy"]["values"]["w2v"]["value"] is not None
    sections = report["analogy_sections"]["w2v"]
    assert len(sections) == 14 and sum(x["questions"] for x in sections) == 19544
    assert metrics["dimension"]["values"]["w2v"]["value"] == 32 and metrics["dimension"]["best"] is None
    assert metrics["index_bytes"]["values"]["w2v"]["value"] > 350 * 32 * 4
    # agreement: symmetric, ones on the diagonal
    jac = np.array(report["agreement"]["jaccard@10"])
    assert np.allclose(jac, jac.T) and np.allclose(np.diag(jac), 1) and 0 <= jac[0, 1] < 1
    assert len(report["map"]["ids"]) == len(report["map"]["models"]["w2v"]["x"]) == 350
    assert report["disagreements"] and set(report["disagreements"][0]["first_relevant_rank"]) == {"hashing", "w2v"}
    _check_cases(report)

    md = (lee_report / "cmp.md").read_text()
    assert md.startswith("# Embedding comparison on lee") and "| recall@10 (capped) |" in md
    assert "| embedding throughput (documents/s) |" in md and "| query time (ms/query; " in md
    assert "## Quality against speed" in md and "On the front: " in md
    assert "## Example hits" in md and f"## Queries {report['missed']['model']} missed" in md
    assert "hashing has no notion of word meaning" in md
    html = (lee_report / "cmp.html").read_text()
    for chart in (
        "chart-retrieval",
        "chart-pareto",
        "chart-word",
        "chart-analogy",
        "chart-jaccard",
        "chart-rank",
        "chart-cost",
        "chart-map",
    ):
        assert f'id="{chart}"' in html
    assert 'id="examples"' in html and 'id="missed"' in html and "On the front: " in html
    first = report["examples"][0]
    assert first["query"] in html and first["hits"]["w2v"][0]["snippet"] in html
    # self-contained: no scripts, nothing fetched from anywhere
    assert "<script" not in html and "http://" not in html and "https://" not in html.replace("https://json-schema", "")


def test_compare_label_mode_and_stdout(cli, w2v_model):
    r = cli(
        "compare",
        "hashing",
        str(w2v_model),
        "--corpus",
        "mini_newsgroup",
        "--label-field",
        "label",
        "--no-word-level",
        "--no-docsim",
        "--bootstrap",
        "100",
        "--json",
        "-",
    )
    assert r.exit_code == 0, r.output
    report = json.loads(r.output[r.output.index("{") :])
    _validate(report)
    assert report["settings"]["queries"]["mode"] == "label" and report["settings"]["queries"]["count"] == 200
    assert "wordsim353" not in report["metrics"]
    assert report["map"]["colour_by"] == "metadata 'label'"
    assert set(report["map"]["colours"]) == {"alt.atheism", "sci.space"}
    # two labels of ~100 posts each: any model beats the 0.5 a random ranking would reach on MRR
    assert report["metrics"]["mrr@10"]["values"]["hashing"]["value"] > 0.5
    r = cli("compare", "hashing", "--corpus", "lee", "--no-word-level", "--no-docsim")
    assert r.exit_code == 0, r.output
    assert "recall@10" in r.output and "no labelled queries" not in r.output  # a table, empty cells as dashes
    assert "embedding throughput (documents/s)" in r.output


def test_compare_ann_mode(cli, tmp_path):
    r = cli(
        "compare",
        "--index-specs",
        "Flat,HNSW16,IVF16,SQ8",
        "--model",
        "hashing",
        "--corpus",
        "lee",
        "-o",
        str(tmp_path / "ann.html"),
        "--json",
        str(tmp_path / "ann.json"),
        "--markdown",
        "-",
    )
    assert r.exit_code == 0, r.output
    report = json.loads((tmp_path / "ann.json").read_text())
    _validate(report)
    specs = {s["spec"]: s for s in report["specs"]}
    assert list(specs) == ["Flat", "HNSW16", "IVF16,Flat", "SQ8"]
    assert specs["Flat"]["recall@10"] == 1.0 and specs["Flat"]["knob"] is None
    assert specs["HNSW16"]["recall@10"] > 0.9
    ivf = specs["IVF16,Flat"]
    assert [p["param"] for p in ivf["points"]] == [1, 2, 4, 8, 16] and ivf["points"][-1]["recall"] == pytest.approx(1.0)
    assert ivf["notes"] and "FAISS recommends" in ivf["notes"][0]
    # SQ8 stores a byte per dimension, Flat four: the index sizes show it
    assert specs["SQ8"]["bytes_per_vector"] < specs["Flat"]["bytes_per_vector"] / 2
    assert "| index | recall@10 |" in r.output
    assert 'id="chart-ann"' in (tmp_path / "ann.html").read_text()


@pytest.mark.parametrize(
    "args, code, message",
    [
        (["hashing", "--corpus", "no-such-corpus"], 2, "neither a file or directory nor a bundled corpus"),
        (["--corpus", "lee"], 2, "name at least one model"),
        (["hashing", "--corpus", "lee", "--queries", "{queries}", "--label-field", "label"], 2, "not both"),
        (["--index-specs", "Flat", "--corpus", "lee"], 2, "needs exactly one model"),
        (["--index-specs", "Flat,Bogus", "--model", "hashing", "--corpus", "lee"], 2, "unknown index spec 'Bogus'"),
        (["--index-specs", "IVF1024", "--model", "hashing", "--corpus", "lee"], 2, "needs at least 1024 vectors"),
        (["hashing", "--corpus", "lee", "--label-field", "colour"], 1, "has no 'colour' metadata"),
        (["hashing", "--corpus", "lee", "-o", "{dir}"], 2, "is a directory"),
        (["no/such/model", "--corpus", "lee"], 2, "unknown model"),
        (["hashing", "hashing", "--corpus", "lee"], 2, "share a label"),
    ],
)
def test_compare_bad_input(cli, tmp_path, args, code, message):
    queries = tmp_path / "q.jsonl"
    queries.write_text('{"query": "x", "relevant": ["lee-test-1"]}\n')
    args = [a.format(queries=queries, dir=tmp_path) for a in args]
    r = cli("compare", *args)
    assert r.exit_code == code, r.output
    assert message in r.output


@pytest.mark.parametrize(
    "line, message",
    [
        ("not json", "q.jsonl:2: not JSON"),
        ('{"query": "x"}', "q.jsonl:2: 'relevant' must be a non-empty list"),
        ('{"query": "", "relevant": ["lee-test-1"]}', "q.jsonl:2: 'query' must be a non-empty string"),
        ('{"query": "x", "relevant": ["lee-test-1", "nope-1"]}', "q.jsonl:2: relevant ids not in the corpus: nope-1"),
        ("[1, 2]", "q.jsonl:2: expected an object"),
    ],
)
def test_bad_query_files_name_the_line(cli, tmp_path, line, message):
    queries = tmp_path / "q.jsonl"
    queries.write_text('{"query": "fine", "relevant": ["lee-test-2"]}\n' + line + "\n")
    r = cli("compare", "hashing", "--corpus", "lee", "--queries", str(queries), "--no-word-level", "--no-docsim")
    assert r.exit_code == 1 and message in r.output, r.output


def test_bundled_query_set_is_valid():
    """Every line of the project's labelled query set parses, and every relevant id exists."""
    from embedsearch.datasets import bundled_corpus
    from embedsearch.evaluation.compare import read_queries

    docs = bundled_corpus("lee")
    queries = read_queries(LEE_QUERIES, {d.id for d in docs})
    assert len(queries) >= 40 and len({q.id for q in queries}) == len(queries)
    assert all(1 <= len(q.relevant) <= 20 for q in queries)


# --------------------------------------------------------------------------- in a browser


def test_report_opens_in_chromium_offline(lee_report, artifacts):
    from tests.test_browser import _require_browser

    chromium = _require_browser()
    from playwright.sync_api import sync_playwright

    errors, requests = [], []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("request", lambda req: requests.append(req.url))
            page.goto((lee_report / "cmp.html").resolve().as_uri())
            page.wait_for_load_state("load")
            assert errors == []
            # nothing but the file itself and its inlined images was requested
            assert all(u.startswith(("file://", "data:")) for u in requests), requests
            images = page.locator("figure img")
            assert images.count() == 8
            widths = page.eval_on_selector_all("figure img", "imgs => imgs.map(i => i.complete ? i.naturalWidth : 0)")
            assert all(w > 100 for w in widths), widths
            assert page.locator("#summary-table td.best").count() >= 5
            assert "w2v" in page.inner_text("#summary-table")
            page.screenshot(path=str(artifacts / "compare-report.png"), full_page=True)
        finally:
            browser.close()


def test_knn_recall_counts_ties_with_the_kth_neighbour():
    truth = np.array([[0, 1]])  # 1 and 2 are duplicates: both at similarity 0.8
    found = np.array([[0, 2]])
    assert knn_recall(found, truth) == 0.5
    assert knn_recall(found, truth, found_sims=np.array([[0.9, 0.8]]), kth_sims=np.array([0.8])) == 1.0
    assert knn_recall(found, truth, found_sims=np.array([[0.9, 0.7]]), kth_sims=np.array([0.8])) == 0.5


def test_index_specs_split_on_semicolons_when_a_spec_has_a_comma(cli):
    from click import BadParameter

    from embedsearch.cli.compare import split_specs

    assert split_specs(("Flat,HNSW32,IVF256,SQ8",)) == ["Flat", "HNSW32", "IVF256", "SQ8"]
    assert split_specs(("Flat;IVF256,SQ8", "HNSW16")) == ["Flat", "IVF256,SQ8", "HNSW16"]
    with pytest.raises(BadParameter, match="named twice"):
        split_specs(("Flat,Flat",))
    r = cli("compare", "--index-specs", "Flat;IVF8,SQ8", "--model", "hashing", "--corpus", "lee", "--json", "-")
    assert r.exit_code == 0, r.output
    report = json.loads(r.output[r.output.index("{") :])
    assert [s["spec"] for s in report["specs"]] == ["Flat", "IVF8,SQ8"]
    assert "--index-specs 'Flat;IVF8,SQ8'" in report["settings"]["command"]


def test_paired_spearman_difference():
    from embedsearch.evaluation.metrics import paired_spearman_difference

    rng = np.random.default_rng(0)
    truth = rng.random(300)
    good = truth + rng.normal(0, 0.1, 300)
    bad = truth + rng.normal(0, 1.0, 300)
    res = paired_spearman_difference(good, bad, truth, resamples=300)
    assert res["significant"] and res["low"] > 0 and res["items"] == 300
    assert res["difference"] == pytest.approx(spearman(good, truth) - spearman(bad, truth))
    same = paired_spearman_difference(good, good, truth, resamples=300)
    assert same["difference"] == 0 and not same["significant"]
    # only the items both models scored count
    holes = good.copy()
    holes[:100] = np.nan
    assert paired_spearman_difference(holes, bad, truth, resamples=100)["items"] == 200


def test_best_model_and_ties_without_a_paired_test():
    from embedsearch.evaluation.compare import _pick_best

    metric = {"higher_is_better": False, "values": {"a": {"value": 5}, "b": {"value": 5}, "c": {"value": 9}, "d": None}}
    _pick_best(metric)
    assert metric["best"] == "a" and metric["tied_with_best"] == ["b"]
    metric = {"higher_is_better": None, "values": {"a": {"value": 1}, "b": {"value": 2}}}
    _pick_best(metric)
    assert metric["best"] is None  # no direction is better (the dimension)
    metric = {"higher_is_better": True, "values": {"a": {"value": 1}, "b": {"value": 1}}}
    _pick_best(metric)
    assert metric["best"] is None  # all equal: nobody is best


def test_each_model_builds_its_exact_index_once(monkeypatch, hashing):
    """Regression: the index was rebuilt on every ranking call, so the query time included it.
    Two labels of one model share its vectors and its index."""
    from embedsearch.datasets import bundled_corpus
    from embedsearch.evaluation import compare, retrieval_run

    built = []
    real = retrieval_run.flat_index
    monkeypatch.setattr(retrieval_run, "flat_index", lambda vectors: built.append(len(vectors)) or real(vectors))
    docs = bundled_corpus("lee")
    queries = compare.read_queries(LEE_QUERIES, {d.id for d in docs})
    report = compare.compare_models(
        ["hashing", "h2=hashing"], docs, queries=queries, word_level=False, docsim=False, resamples=100
    )
    assert built == [350]
    assert report["metrics"]["query_ms"]["values"]["hashing"]["value"] > 0
    assert report["metrics"]["ndcg@10"]["values"]["h2"]["value"] == report["metrics"]["ndcg@10"]["values"]["hashing"]["value"]


def test_html_to_stdout(cli, tmp_path, monkeypatch):
    """Regression: '-o -' wrote no HTML anywhere (it printed the summary table instead)."""
    monkeypatch.chdir(tmp_path)
    r = cli("compare", "--index-specs", "Flat", "--model", "hashing", "--corpus", "lee", "-o", "-")
    assert r.exit_code == 0, r.output
    assert r.output.lstrip().lower().startswith("<!doctype html>") and 'id="chart-ann"' in r.output
    assert r.output.rstrip().endswith("</html>")  # the page alone: no table printed after it
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- trade-off and cases


def _check_cases(report: dict) -> None:
    """The Pareto front, example hits and missed queries of a real report, checked against the
    query file and the metrics they come from."""
    from embedsearch.evaluation.pareto import dominates

    k = report["settings"]["k"]
    pareto = report["pareto"]
    assert pareto["x"] == "docs_per_second" and pareto["y"] == f"ndcg@{k}"
    points = {m: (p["x"], p["y"]) for m, p in pareto["points"].items()}
    assert points["w2v"][1] == report["metrics"][f"ndcg@{k}"]["values"]["w2v"]["value"]
    for m in points:
        beaten = any(dominates(points[o], points[m]) for o in points if o != m)
        assert (m in pareto["front"]) == (not beaten)
    queries = [json.loads(line) for line in LEE_QUERIES.read_text().splitlines() if line.strip()]
    assert [e["query_id"] for e in report["examples"]] == [q["id"] for q in queries[:3]]
    for e, q in zip(report["examples"], queries, strict=False):
        assert set(e["hits"]) == {"hashing", "w2v"} and e["relevant"] == len(q["relevant"])
        for hits in e["hits"].values():
            assert len(hits) == 3 and all(h["relevant"] == (h["id"] in q["relevant"]) for h in hits)
            assert all(0 < len(h["snippet"]) <= 142 for h in hits)
    missed = report["missed"]
    assert missed["model"] == report["metrics"][f"ndcg@{k}"]["best"] and missed["of"] == len(queries)
    assert missed["count"] >= 1 and len(missed["queries"]) == min(missed["count"], 20)  # hashing misses a few
    texts = {q["id"]: q["query"] for q in queries}
    assert all(texts[m["query_id"]] == m["query"] and missed["model"] not in m["found_by"] for m in missed["queries"])


def test_pareto_front_dominance_and_ties():
    from embedsearch.evaluation.pareto import front_sentence, pareto_front

    points = {
        "slow-good": (10.0, 0.9),
        "slow-good-twin": (10.0, 0.9),  # the same figures: neither dominates the other
        "fast": (1000.0, 0.5),
        "fast-worse": (1000.0, 0.4),  # as fast, worse: dominated by fast alone
        "middle-worse": (50.0, 0.45),  # slower and worse than fast
        "slowest-best": (5.0, 0.95),
        "middle": (100.0, 0.7),
    }
    front, beaten = pareto_front(points)
    assert front == ["slowest-best", "slow-good", "slow-good-twin", "middle", "fast"]
    assert beaten == {"fast-worse": ["fast"], "middle-worse": ["fast", "middle"]}
    text = front_sentence({"front": front, "dominated_by": beaten})
    assert text.startswith("On the front: slowest-best, slow-good, slow-good-twin, middle, fast.")
    assert "fast-worse (by fast)" in text
    assert pareto_front({"only": (1.0, 0.1)}) == (["only"], {})


def test_tradeoff_picks_the_quality_metric():
    from embedsearch.evaluation.pareto import tradeoff

    def metric(values):
        return {"values": {m: None if v is None else {"value": v} for m, v in values.items()}}

    report = {
        "settings": {"k": 10},
        "metrics": {
            "docs_per_second": metric({"a": 100.0, "b": 10.0, "c": 50.0}),
            "ndcg@10": metric({"a": None, "b": None, "c": None}),  # no queries
            "lee_spearman": metric({"a": 0.2, "b": 0.6, "c": None}),
        },
    }
    out = tradeoff(report)
    assert out["y"] == "lee_spearman" and set(out["points"]) == {"a", "b"}  # c has no quality figure
    assert out["front"] == ["b", "a"] and out["dominated_by"] == {}
    report["metrics"]["ndcg@10"] = metric({"a": 0.5, "b": 0.4, "c": 0.3})
    out = tradeoff(report)
    assert out["y"] == "ndcg@10" and out["front"] == ["a"] and out["dominated_by"] == {"b": ["a"], "c": ["a"]}
    del report["metrics"]["ndcg@10"], report["metrics"]["lee_spearman"]
    assert tradeoff(report) is None


def test_missed_queries_and_example_hits_by_hand():
    from embedsearch.evaluation.compare import Query
    from embedsearch.evaluation.examples import best_model, example_hits, missed_queries, snippet

    queries = [Query("q1", "first", {"d1"}), Query("q2", "second", {"d2", "d3"}), Query("q3", "third", {"d4"})]
    rankings = {
        "a": [["d1", "d9"], ["d9", "d8"], ["d8", "d9"]],  # misses q2 and q3 in its top 2
        "b": [["d9", "d8"], ["d8", "d3"], ["d9", "d8"]],  # finds q2's d3 at rank 2
    }
    out = missed_queries(queries, rankings, "a", 2)
    assert out["count"] == 2 and out["of"] == 3
    assert [(q["query_id"], q["found_by"]) for q in out["queries"]] == [("q2", ["b"]), ("q3", [])]
    assert missed_queries(queries, rankings, "a", 1, limit=1)["queries"][0]["query_id"] == "q2"
    texts = {d: f"text of {d} " * 30 for d in ("d1", "d3", "d8", "d9")}
    hits = example_hits(queries, rankings, texts, count=2, top=2)
    assert [h["id"] for h in hits[1]["hits"]["b"]] == ["d8", "d3"]
    assert [h["relevant"] for h in hits[1]["hits"]["b"]] == [False, True]
    assert hits[0]["hits"]["a"][0]["snippet"].endswith(" …") and len(hits[0]["hits"]["a"][0]["snippet"]) <= 142
    assert snippet("  short\n text ") == "short text"
    metric = {"best": None, "values": {"a": {"value": 0.5}, "b": {"value": 0.5}, "c": None}}
    assert best_model(metric) == "a"  # all equal: the first with the top value
    assert best_model({"best": "b", "values": {}}) == "b"


def test_schema_constrains_the_new_sections(lee_report):
    import jsonschema

    report = json.loads((lee_report / "cmp.json").read_text())
    for section, bad in (
        ("pareto", {"x": "docs_per_second", "y": "ndcg@10", "points": {}, "front": "w2v", "dominated_by": {}}),
        ("examples", [{"query_id": "q", "query": "x", "relevant": 1, "hits": {"w2v": [{"id": "d"}]}}]),
        ("missed", {"model": "w2v", "k": 10, "count": 1, "of": 45}),
    ):
        broken = {**report, section: bad}
        with pytest.raises(jsonschema.ValidationError):
            _validate(broken)
    _validate({**report, "pareto": None})  # no quality metric measured


def test_map_panel_draws_every_document():
    """The map shows all sampled documents as points (the old one drew a few categories), with
    one legend entry per coloured category plus the two greys."""
    from embedsearch.evaluation.charts import _map_palette, _map_panel, _pyplot

    rng = np.random.default_rng(0)
    colours = [f"topic-{i % 15}" for i in range(300)] + ["(no query)"] * 100
    palette = _map_palette(colours, max_categories=12)
    assert len(palette) == 12 and "(no query)" not in palette
    assert len(set(map(tuple, palette.values()))) == 12  # distinct colours
    plt = _pyplot()
    fig, ax = plt.subplots()
    pts = {"x": rng.random(400).tolist(), "y": rng.random(400).tolist(), "label": "m", "explained_variance": [0.2, 0.1]}
    _map_panel(ax, pts, colours, palette, named=4)
    assert sum(len(c.get_offsets()) for c in ax.collections) == 400
    assert len(ax.get_legend_handles_labels()[1]) == 14
    assert len(ax.texts) == 4 and ax.get_title() == "m (30% of variance)"
    plt.close(fig)


# --------------------------------------------------------------------------- search modes as contenders


def test_recommendation_prefers_the_cheaper_of_tied_contenders():
    from embedsearch.evaluation.recommend import recommend, sentence

    def report(tied):
        cells = {"a": {"value": 0.80, "low": 0.75, "high": 0.85}, "b": {"value": 0.79, "low": 0.74, "high": 0.84}}
        return {
            "settings": {"k": 10},
            "metrics": {
                "ndcg@10": {"label": "nDCG@10", "values": cells, "best": "a", "tied_with_best": tied},
                "query_ms": {"values": {"a": {"value": 9.0}, "b": {"value": 2.0}}},
            },
            "models": [
                {"label": "a", "model": "minilm", "mode": "hybrid", "fusion": {"fusion": "rrf", "alpha": None}},
                {"label": "b", "model": "minilm", "mode": "dense", "fusion": None},
            ],
        }

    rec = recommend(report(["b"]))  # tied: the cheaper one, the best named as the alternative
    assert (rec["label"], rec["alternative"]) == ("b", "a")
    assert rec["command"] == "embedsearch index alter COLLECTION --default-mode dense"
    assert "statistically tied with the best, a (0.800), at 2.00 against 9.00 ms/query" in sentence(rec)
    rec = recommend(report([]))  # significantly better: the best, whatever it costs
    assert (rec["label"], rec["alternative"]) == ("a", None)
    assert rec["command"] == "embedsearch index alter COLLECTION --lexical --default-mode hybrid --fusion rrf"
    assert sentence(rec).startswith("Use a: nDCG@10 0.800 [0.750, 0.850], 9.00 ms/query (the best nDCG@10).")
    assert "the default of a collection of minilm (`index create --model minilm`)" in sentence(rec)
    no_best = report([])
    no_best["metrics"]["ndcg@10"]["best"] = None
    assert recommend(no_best) is None


def test_contender_specs_parse():
    from embedsearch.errors import InvalidArgument
    from embedsearch.evaluation.contenders import parse_contender, parse_contenders

    c = parse_contender("minilm+hybrid")
    assert (c.label, c.mode, c.model, c.fusion, c.alpha) == ("minilm+hybrid", "hybrid", "minilm", "relative", 0.85)
    c = parse_contender("w=models/w2v+hybrid:weighted:0.7")
    assert (c.label, c.mode, c.model, c.fusion, c.alpha) == ("w", "hybrid", "models/w2v", "weighted", 0.7)
    assert parse_contender("x+hybrid:weighted").alpha == 0.5
    c = parse_contender("models/w2v+lexical")
    assert (c.label, c.mode, c.model) == ("w2v+lexical", "lexical", "models/w2v")
    c = parse_contender("bm25")
    assert (c.label, c.mode, c.model) == ("bm25", "lexical", None)
    assert parse_contender("models/w2v").mode == "dense"
    for bad, message in (
        ("minilm+semantic", "unknown search mode '+semantic'"),
        ("+hybrid", "name the model before '+hybrid'"),
        ("bm25+hybrid", "bm25 is a contender of its own"),
        ("minilm+lexical:rrf", "takes no fusion settings"),
        ("minilm+hybrid:max", "unknown fusion 'max'"),
        ("minilm+hybrid:weighted:2", "alpha must be a number between 0 and 1"),
        ("minilm+hybrid:rrf:0.3", "alpha applies to fusion relative and weighted only"),
        ("minilm+hybrid:weighted:x", "alpha 'x' is not a number"),
    ):
        with pytest.raises(InvalidArgument, match=message.replace("+", r"\+").replace("(", r"\(")):
            parse_contender(bad)
    with pytest.raises(InvalidArgument, match="share a label"):
        parse_contenders(["bm25", "bm25"])


def test_a_model_directory_with_a_plus_in_its_name_is_a_model(tmp_path, monkeypatch):
    from embedsearch.evaluation.contenders import parse_contender

    monkeypatch.chdir(tmp_path)
    (tmp_path / "a+hybrid").mkdir()
    assert parse_contender("a+hybrid").mode == "dense"


@pytest.mark.parametrize(
    "spec, message",
    [
        ("hashing+semantic", "unknown search mode '+semantic'"),
        ("hashing+hybrid:weighted:1.5", "alpha must be a number between 0 and 1"),
        ("models/none+hybrid", "unknown model"),
    ],
)
def test_a_bad_contender_is_refused_before_any_model_loads(cli, monkeypatch, spec, message):
    import embedsearch.embedders as embedders

    def no_loading(*args, **kwargs):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(embedders, "load_embedder", no_loading)
    r = cli("compare", "hashing", spec, "--corpus", "lee", "--queries", str(LEE_QUERIES))
    assert r.exit_code == 2, r.output
    assert message in r.output and "a model was loaded" not in r.output


@pytest.fixture(scope="session")
def modes_report(tmp_path_factory) -> Path:
    from click.testing import CliRunner

    from embedsearch.cli import main

    out = tmp_path_factory.mktemp("modes")
    args = ["compare", "hashing", "hashing+lexical", "hashing+hybrid", "bm25", "--corpus", "lee",
            "--queries", str(LEE_QUERIES), "--bootstrap", "200", "--no-word-level",
            "-o", str(out / "cmp.html"), "--json", str(out / "cmp.json"), "--markdown", str(out / "cmp.md")]  # fmt: skip
    r = CliRunner().invoke(main, args, catch_exceptions=False)
    assert r.exit_code == 0, r.output
    return out


def test_search_modes_side_by_side(modes_report):
    report = json.loads((modes_report / "cmp.json").read_text())
    _validate(report)
    labels = ["hashing", "hashing+lexical", "hashing+hybrid", "bm25"]
    models = {m["label"]: m for m in report["models"]}
    assert list(models) == labels
    assert [models[x]["mode"] for x in labels] == ["dense", "lexical", "hybrid", "lexical"]
    assert models["bm25"]["model"] is None and models["bm25"]["dim"] is None
    assert models["hashing+hybrid"]["fusion"] == {"fusion": "relative", "alpha": 0.85}
    assert models["hashing"]["index_seconds"] is None and models["bm25"]["index_seconds"] > 0
    # one model, embedded once: its contenders share the embedding time
    assert models["hashing"]["embed_seconds"] == models["hashing+hybrid"]["embed_seconds"]
    metrics = report["metrics"]
    for name in ("recall@10", "mrr@10", "ndcg@10"):
        values = metrics[name]["values"]
        for label in labels:
            assert 0 <= values[label]["low"] <= values[label]["value"] <= values[label]["high"] <= 1
        best = metrics[name]["best"]
        assert best in labels
        for label in labels:
            if label != best:  # every other contender carries its paired test against the best
                vs = values[label]["vs_best"]
                assert (label in metrics[name]["tied_with_best"]) == (not vs["significant"])
        # lexical search never uses the vectors: hashing+lexical ranks as bm25 does
        assert values["hashing+lexical"]["value"] == values["bm25"]["value"]
    # words beat hashed words on these queries (the library's own bench_hybrid finds the same)
    assert metrics["ndcg@10"]["values"]["bm25"]["value"] > metrics["ndcg@10"]["values"]["hashing"]["value"]
    assert metrics["ndcg@10"]["values"]["hashing"]["vs_best"]["significant"]
    # cost: every column filled or explained
    assert metrics["dimension"]["values"]["bm25"] is None and "no vectors" in metrics["dimension"]["why_empty"]["bm25"]
    assert metrics["docs_per_second"]["label"] == "indexing throughput (documents/s)"
    assert "no embedding" in metrics["docs_per_second"]["values"]["bm25"]["note"]
    # the report ends with what to use: the best by nDCG@10, or the cheapest contender tied with it
    rec = report["recommendation"]
    best = metrics["ndcg@10"]["best"]
    assert rec["label"] in [best, *metrics["ndcg@10"]["tied_with_best"]]
    assert rec["value"] == metrics["ndcg@10"]["values"][rec["label"]]["value"]
    assert rec["query_ms"] == metrics["query_ms"]["values"][rec["label"]]["value"]
    expected = {"hashing": "--default-mode dense", "hashing+lexical": "--lexical --default-mode lexical",
                "bm25": "--lexical --default-mode lexical",
                "hashing+hybrid": "--lexical --default-mode hybrid --fusion relative --alpha 0.85"}  # fmt: skip
    assert rec["command"] == f"embedsearch index alter COLLECTION {expected[rec['label']]}"
    assert "## Recommendation" in (modes_report / "cmp.md").read_text()
    assert 'id="recommendation"' in (modes_report / "cmp.html").read_text()
    assert "embedding" in metrics["docs_per_second"]["values"]["hashing+hybrid"]["note"]
    lex = metrics["index_bytes"]["values"]["bm25"]["value"]
    assert lex > 0 and metrics["index_bytes"]["values"]["hashing+hybrid"]["value"] == (
        metrics["index_bytes"]["values"]["hashing"]["value"] + lex
    )
    for label in labels:
        assert metrics["query_ms"]["values"][label]["value"] > 0
    # vectors-only sections: the model in, the search modes out, with the reason
    assert metrics["lee_spearman"]["values"]["hashing"]["value"] is not None
    assert "see hashing" in metrics["lee_spearman"]["why_empty"]["hashing+hybrid"]
    assert "bm25 has no vectors" in metrics["lee_spearman"]["why_empty"]["bm25"]
    assert list(report["map"]["models"]) == ["hashing"]
    agreement = report["agreement"]
    assert agreement["models"] == labels
    jac = np.array(agreement["jaccard@10"])
    assert jac[1, 3] == 1.0 and np.allclose(jac, jac.T)
    assert agreement["score_spearman"][0][0] == 1.0 and agreement["score_spearman"][0][3] is None
    assert set(report["pareto"]["points"]) == set(labels)
    assert set(report["disagreements"][0]["first_relevant_rank"]) == set(labels)
    assert set(report["examples"][0]["hits"]) == set(labels)
    assert any("Cost columns for search-mode contenders" in n for n in report["notes"])
    md = (modes_report / "cmp.md").read_text()
    assert "## Notes" in md and "| hashing+hybrid |" in md and "bm25 has no vectors" in md
    html = (modes_report / "cmp.html").read_text()
    assert 'id="notes"' in html and 'id="chart-pareto"' in html and 'id="chart-map"' in html


def test_hybrid_contender_ranks_as_the_library_searches(modes_report, store, hashing):
    """The report's hybrid figures are embedsearch.search.search's: the same nDCG@10 per query
    from a collection built here with the public API."""
    from embedsearch.datasets import bundled_corpus
    from embedsearch.evaluation.compare import read_queries
    from embedsearch.search import search

    report = json.loads((modes_report / "cmp.json").read_text())
    docs = bundled_corpus("lee")
    queries = read_queries(LEE_QUERIES, {d.id for d in docs})
    coll = store.create("lee", hashing, "Flat", lexical=True)
    coll.add_documents(docs, hashing)
    for mode, label in (("hybrid", "hashing+hybrid"), ("lexical", "bm25")):
        hits = search(coll, [q.text for q in queries], 10, mode=mode, embedder=hashing, columns=())
        ranked = [[h.id for h in row] for row in hits]
        ndcg = ranking_metrics(ranked, [q.relevant for q in queries], 10)["ndcg@10"].mean()
        assert report["metrics"]["ndcg@10"]["values"][label]["value"] == pytest.approx(ndcg)


def test_a_model_and_its_hybrid_contender_embed_the_corpus_once(monkeypatch):
    from embedsearch.datasets import bundled_corpus
    from embedsearch.embedders.hashing import HashingEmbedder
    from embedsearch.evaluation.compare import Query, compare_models

    calls = []
    real = HashingEmbedder.embed_batch
    monkeypatch.setattr(HashingEmbedder, "embed_batch", lambda self, texts: calls.append(len(texts)) or real(self, texts))
    docs = bundled_corpus("lee")[:60]
    queries = [Query("q", "bushfires near Sydney", {docs[0].id})]
    report = compare_models(
        ["hashing", "hashing+hybrid", "hw=hashing+hybrid:weighted:0.3", "bm25"], docs, queries=queries,
        word_level=False, docsim=False, resamples=100,
    )  # fmt: skip
    assert calls.count(60) == 1  # the corpus, once; the rest are query batches
    assert report["models"][2]["fusion"] == {"fusion": "weighted", "alpha": 0.3}


def test_search_mode_contenders_in_label_mode(cli):
    r = cli("compare", "hashing+hybrid", "bm25", "--corpus", "mini_newsgroup", "--label-field", "label",
            "--no-word-level", "--no-docsim", "--bootstrap", "100", "--json", "-")  # fmt: skip
    assert r.exit_code == 0, r.output
    report = json.loads(r.output[r.output.index("{") :])
    _validate(report)
    for label in ("hashing+hybrid", "bm25"):
        # a document never finds itself; two labels of ~100 posts: better than the 0.5 of chance
        assert report["metrics"]["mrr@10"]["values"][label]["value"] > 0.5
    assert report["examples"][0]["query_id"] not in [h["id"] for h in report["examples"][0]["hits"]["bm25"]]
    assert report["map"]["models"] == {}
    assert any("first 64 distinct words" in n for n in report["notes"])
