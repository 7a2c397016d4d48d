"""Every trainer's model directory loads in the sentence-transformers releases users run (3.x, 4.x,
5.x and this environment's 6.x) and gives embedsearch's own vectors there; files are readable by
others as the umask allows; a fine-tuned MiniLM keeps MiniLM's max_seq_length.

The older releases are installed once per machine by pip into a cache directory (``--target``,
``--no-deps``, exact versions), beside this environment's torch and numpy: 3.x and 4.x need
transformers 4, which is installed there too. Each release runs in its own subprocess."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from embedsearch.corpus import Document
from embedsearch.embedders import load_embedder
from embedsearch.models import import_vectors
from embedsearch.trainers.portable import NotPortable, make_portable
from embedsearch.trainers.triplet import TripletParams, train_triplet

pytestmark = pytest.mark.slow  # trains models, installs and imports other sentence-transformers releases

TRANSFORMERS_4 = ["transformers==4.57.1", "tokenizers==0.22.1", "huggingface-hub==0.36.0"]
RELEASES = {  # release -> what its --target directory holds
    "3.4.1": ["sentence-transformers==3.4.1", *TRANSFORMERS_4],
    "4.1.0": ["sentence-transformers==4.1.0", *TRANSFORMERS_4],
    "5.7.0": ["sentence-transformers==5.7.0"],
}
TEXTS = ["ruby n1 n2", "azure cobalt n3", "a question about interest rates", "the bank raised rates again"]
LOAD = """
import json, sys, warnings
warnings.simplefilter("ignore")
import sentence_transformers
from sentence_transformers import SentenceTransformer
dirs, texts = json.loads(sys.argv[1])
out = {"version": sentence_transformers.__version__, "models": {}}
for d in dirs:
    m = SentenceTransformer(d, device="cpu")
    out["models"][d] = {"max_seq_length": m.max_seq_length,
                        "vectors": m.encode(texts, convert_to_numpy=True, normalize_embeddings=False).tolist()}
print(json.dumps(out))
"""


def _compat_root() -> Path:
    root = os.environ.get("EMBEDSEARCH_TEST_COMPAT_DIR")
    return Path(root) if root else Path.home() / ".cache" / "embedsearch-tests" / "sentence-transformers"


@pytest.fixture(scope="session")
def releases() -> dict[str, Path]:
    """release -> a directory to put first on PYTHONPATH, installed once per machine."""
    found = {}
    for release, pins in RELEASES.items():
        target = _compat_root() / release
        if not (target / ".complete").exists():
            cmd = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--disable-pip-version-check",
                   "--target", str(target), *pins]  # fmt: skip
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
            assert r.returncode == 0, f"pip could not install {pins}: {r.stderr[-2000:]}"
            (target / ".complete").write_text(" ".join(pins))
        found[release] = target
    return found


def _load_in(release_dir: Path | None, dirs: list[Path]) -> dict:
    env = {**os.environ, "PYTHONPATH": str(release_dir) if release_dir else "", "HF_HUB_OFFLINE": "1"}
    r = subprocess.run([sys.executable, "-c", LOAD, json.dumps([[str(d) for d in dirs], TEXTS])],
                       capture_output=True, text=True, env=env, timeout=600, check=False)  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def _planted_word_model(root: Path) -> tuple[Path, list[Document]]:
    rng = np.random.default_rng(0)
    noise = [f"n{i}" for i in range(40)]
    signal = {"red": ["ruby", "crimson"], "blue": ["azure", "cobalt"]}
    words = noise + [w for ws in signal.values() for w in ws]
    vec = rng.standard_normal((len(words), 16)).astype(np.float32)
    (root / "v.txt").write_text("".join(f"{w} {' '.join(map(str, v))}\n" for w, v in zip(words, vec, strict=True)))
    import_vectors(root / "v.txt", "glove", root / "wm")
    docs = [Document(f"d{i}", " ".join([*rng.choice(noise, 8), *rng.choice(signal["red" if i % 2 else "blue"], 2)]),
                     {"label": "red" if i % 2 else "blue"}) for i in range(120)]  # fmt: skip
    return root / "wm", docs


@pytest.fixture(scope="module")
def trained(tmp_path_factory, student) -> dict[str, Path]:
    """One directory per trainer output: triplet on MiniLM, triplet on word vectors, distill."""
    from embedsearch.datasets import mini_newsgroup

    root = tmp_path_factory.mktemp("portable")
    base, docs = _planted_word_model(root)
    train_triplet(TripletParams(base=str(base), epochs=1, batch_size=16, device="cpu"), root / "triplet-words",
                  documents=docs, label_field="label")  # fmt: skip
    news = mini_newsgroup().documents[::10]
    train_triplet(TripletParams(epochs=1, batch_size=8, max_seq_length=32, held_out=0.25, device="cpu"),
                  root / "triplet-minilm", documents=news, label_field="label")  # fmt: skip
    return {"triplet-minilm": root / "triplet-minilm", "triplet-words": root / "triplet-words", "distill": student}


def _cosines(a, b) -> np.ndarray:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def test_every_trainer_output_loads_in_every_release_with_our_vectors(trained, releases):
    ours = {name: load_embedder(str(d), device="cpu", cache=False).embed(TEXTS) for name, d in trained.items()}
    dirs = list(trained.values())
    for release, target in [*releases.items(), ("6 (this environment)", None)]:
        got = _load_in(target, dirs)
        assert got["version"].split(".")[0] == release[0], got["version"]
        for name, d in trained.items():
            cos = _cosines(ours[name], got["models"][str(d)]["vectors"])
            assert cos.min() >= 0.99999, (release, name, cos)
        assert got["models"][str(trained["triplet-minilm"])]["max_seq_length"] == 256, release


def test_modules_use_the_long_standing_names_and_files_are_readable(trained):
    for d in trained.values():
        types = [m["type"] for m in json.loads((d / "modules.json").read_text())]
        assert all(t.startswith("sentence_transformers.models.") for t in types), types
        modes = {p.relative_to(d): stat.S_IMODE(p.stat().st_mode) for p in d.rglob("*")}
        assert all(m == (0o755 if (d / p).is_dir() else 0o644) for p, m in modes.items()), modes
    config = json.loads((trained["triplet-minilm"] / "sentence_bert_config.json").read_text())
    assert config == {"max_seq_length": 256, "do_lower_case": False}  # MiniLM's, though it trained on 32 tokens
    assert load_embedder(str(trained["triplet-minilm"]), device="cpu", cache=False).config()["max_seq_length"] == 256


def test_file_modes_follow_the_umask(tmp_path):
    base, docs = _planted_word_model(tmp_path)
    old = os.umask(0o027)
    try:
        train_triplet(TripletParams(base=str(base), epochs=1, batch_size=16, device="cpu"), tmp_path / "out",
                      documents=docs[:60], label_field="label")  # fmt: skip
    finally:
        os.umask(old)
    out = tmp_path / "out"
    assert {stat.S_IMODE(p.stat().st_mode) for p in out.rglob("*") if p.is_file()} == {0o640}
    assert stat.S_IMODE((out / "2_Dense").stat().st_mode) == 0o750


def test_a_setting_older_releases_lack_is_refused_by_name(tmp_path):
    d = tmp_path / "m"
    (d / "1_Pooling").mkdir(parents=True)
    pooling = "sentence_transformers.sentence_transformer.modules.pooling.Pooling"
    (d / "modules.json").write_text(json.dumps([{"idx": 1, "name": "1", "path": "1_Pooling", "type": pooling}]))
    config = {"embedding_dimension": 8, "pooling_mode": "mean", "module_output_name": "other"}
    (d / "1_Pooling" / "config.json").write_text(json.dumps(config))
    with pytest.raises(NotPortable, match="module_output_name"):
        make_portable(d)
    (d / "modules.json").write_text(json.dumps([{"idx": 0, "name": "0", "path": "", "type": "mypackage.Custom"}]))
    with pytest.raises(NotPortable, match="mypackage.Custom"):
        make_portable(d)
