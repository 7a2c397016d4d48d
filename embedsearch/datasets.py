"""Data shipped inside installed packages (gensim's test data), read without executing anything.

gensim's wheel ships ``test_data/mini_newsgroup``: a zlib-compressed protocol-0 pickle of a
scikit-learn ``Bunch`` (texts, integer targets as a numpy array, target names). Loading it
with ``pickle`` would import and call whatever the file names, so it is never unpickled:
:func:`read_pickle_data` walks the opcodes with :mod:`pickletools` and builds plain Python
values, turning every global reference and call into an inert :class:`Opaque` record.
"""

from __future__ import annotations

import io
import pickletools
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from embedsearch.corpus import Document
from embedsearch.errors import CorpusError

_MARK = object()


def gensim_data(name: str) -> Path:
    """A file from gensim's bundled test data (the wheel ships it; nothing is downloaded)."""
    from gensim.test.utils import datapath

    path = Path(datapath(name))
    if not path.exists():
        raise CorpusError(f"gensim's bundled data file {name} is missing; reinstall gensim")
    return path


def lee_documents() -> Iterator[Document]:
    """The Lee corpus: 300 background news stories and the 50 rated test stories."""
    for split, filename in (("background", "lee_background.cor"), ("test", "lee.cor")):
        with open(gensim_data(filename), encoding="latin-1") as f:
            for n, line in enumerate(f, start=1):
                text = line.strip()
                if text:
                    yield Document(f"lee-{split}-{n}", text, {"source": "lee", "split": split, "n": n})


@dataclass
class Opaque:
    """A global reference (``call`` is None) or a call of one, recorded and never executed."""

    name: str
    args: Any = None
    state: Any = None
    items: list = field(default_factory=list)


def read_pickle_data(data: bytes) -> Any:
    """Interpret a pickle's opcodes into lists, dicts, tuples, strings, numbers and Opaque records.

    Only the data-building opcodes are understood; anything else raises :class:`CorpusError`.
    Nothing is imported and no callable is invoked.
    """
    stack: list[Any] = []
    memo: dict[Any, Any] = {}

    def pop_mark() -> list:
        i = len(stack) - 1
        while stack[i] is not _MARK:
            i -= 1
        items = stack[i + 1 :]
        del stack[i:]
        return items

    for op, arg, _pos in pickletools.genops(io.BytesIO(data)):
        name = op.name
        if name in ("PROTO", "FRAME"):
            continue
        if name == "STOP":
            break
        if name == "MARK":
            stack.append(_MARK)
        elif name in ("INT", "BININT", "BININT1", "BININT2", "LONG", "LONG1", "LONG4", "FLOAT", "BINFLOAT"):
            stack.append(arg)
        elif name in ("STRING", "BINSTRING", "SHORT_BINSTRING", "UNICODE", "BINUNICODE", "SHORT_BINUNICODE",
                      "BINUNICODE8", "BINBYTES", "SHORT_BINBYTES", "BINBYTES8"):  # fmt: skip
            stack.append(arg)
        elif name == "NONE":
            stack.append(None)
        elif name in ("NEWTRUE", "NEWFALSE"):
            stack.append(name == "NEWTRUE")
        elif name == "EMPTY_LIST":
            stack.append([])
        elif name == "EMPTY_DICT":
            stack.append({})
        elif name == "EMPTY_TUPLE":
            stack.append(())
        elif name == "LIST":
            stack.append(pop_mark())
        elif name == "TUPLE":
            stack.append(tuple(pop_mark()))
        elif name in ("TUPLE1", "TUPLE2", "TUPLE3"):
            n = int(name[-1])
            items = stack[-n:]
            del stack[-n:]
            stack.append(tuple(items))
        elif name == "DICT":
            items = pop_mark()
            stack.append(dict(zip(items[::2], items[1::2], strict=True)))
        elif name == "APPEND":
            value = stack.pop()
            _append(stack[-1], [value])
        elif name == "APPENDS":
            items = pop_mark()
            _append(stack[-1], items)
        elif name == "SETITEM":
            value = stack.pop()
            key = stack.pop()
            _setitem(stack[-1], key, value)
        elif name == "SETITEMS":
            items = pop_mark()
            for k, v in zip(items[::2], items[1::2], strict=True):
                _setitem(stack[-1], k, v)
        elif name in ("PUT", "BINPUT", "LONG_BINPUT"):
            memo[arg] = stack[-1]
        elif name == "MEMOIZE":
            memo[len(memo)] = stack[-1]
        elif name in ("GET", "BINGET", "LONG_BINGET"):
            stack.append(memo[arg])
        elif name == "GLOBAL":
            stack.append(Opaque(arg.replace(" ", ".")))
        elif name == "STACK_GLOBAL":
            qualname = stack.pop()
            module = stack.pop()
            stack.append(Opaque(f"{module}.{qualname}"))
        elif name == "REDUCE":
            args = stack.pop()
            func = stack.pop()
            stack.append(Opaque(func.name if isinstance(func, Opaque) else repr(func), args=args))
        elif name == "BUILD":
            state = stack.pop()
            target = stack[-1]
            if isinstance(target, Opaque):
                target.state = state
            else:
                raise CorpusError("pickle data: BUILD on a plain value")
        else:
            raise CorpusError(f"pickle data uses opcode {name}, which this reader does not interpret")
    if len(stack) != 1:
        raise CorpusError("pickle data did not reduce to one value")
    return stack[0]


def _append(target: Any, values: list) -> None:
    if isinstance(target, list):
        target.extend(values)
    elif isinstance(target, Opaque):
        target.items.extend(values)
    else:
        raise CorpusError("pickle data: APPEND to a value that is not a list")


def _setitem(target: Any, key: Any, value: Any) -> None:
    if not isinstance(target, dict):
        raise CorpusError("pickle data: SETITEM on a value that is not a dict")
    target[key] = value


def ndarray_from(value: Any) -> np.ndarray:
    """A numpy array recorded as ``_reconstruct(...)`` + BUILD state (version, shape, dtype,
    fortran order, raw bytes), decoded from the bytes and the dtype's own state."""
    if not (isinstance(value, Opaque) and value.name.endswith("_reconstruct") and isinstance(value.state, tuple)):
        raise CorpusError("expected a numpy array in the pickle data")
    _version, shape, dtype, fortran, raw = value.state
    if not (isinstance(dtype, Opaque) and isinstance(dtype.args, tuple) and isinstance(dtype.state, tuple)):
        raise CorpusError("unreadable dtype in the pickle data")
    kind = dtype.args[0]  # e.g. 'i8'
    order = dtype.state[1]  # '<', '>' or '|'
    if isinstance(raw, Opaque) and raw.name == "_codecs.encode" and isinstance(raw.args, tuple) and len(raw.args) == 2:
        raw = raw.args[0]  # Python 3 writes bytes at protocols 0-2 as _codecs.encode(text, "latin1")
    if isinstance(raw, str):  # Python 2's protocol 0 keeps bytes as a latin-1 string
        raw = raw.encode("latin-1")
    if not isinstance(raw, bytes):
        raise CorpusError("unreadable array data in the pickle data")
    arr = np.frombuffer(raw, dtype=np.dtype((order if order in "<>" else "") + kind))
    return arr.reshape(shape, order="F" if fortran else "C")


@dataclass
class LabelledCorpus:
    documents: list[Document]
    label_names: list[str]


def split_headers(text: str) -> tuple[dict[str, str], str]:
    """A news article's ``Key: value`` header block and its body (after the first blank line)."""
    head, sep, body = text.partition("\n\n")
    if not sep:
        return {}, text
    headers = {}
    for line in head.splitlines():
        key, colon, value = line.partition(":")
        if colon and key and " " not in key:
            headers[key.strip().lower()] = value.strip()
    return headers, body.strip()


def mini_newsgroup(*, strip_headers: bool = True) -> LabelledCorpus:
    """gensim's labelled newsgroup sample (200 posts, alt.atheism and sci.space) as documents
    with ``label`` and ``subject`` metadata. ``strip_headers`` drops the header block, whose
    ``Newsgroups:`` line would give the label away to any model."""
    path = gensim_data("mini_newsgroup")
    try:
        data = zlib.decompress(path.read_bytes())
    except zlib.error as exc:
        raise CorpusError(f"{path}: not zlib data ({exc})") from None
    bunch = read_pickle_data(data)
    fields = None
    if isinstance(bunch, Opaque):
        # copy_reg._reconstructor(Bunch, dict, {...}): a dict subclass built from the third argument
        fields = bunch.state if isinstance(bunch.state, dict) else None
        if fields is None and isinstance(bunch.args, tuple) and len(bunch.args) == 3:
            fields = bunch.args[2]
    if not isinstance(fields, dict) or not {"data", "target", "target_names"} <= set(fields):
        raise CorpusError(f"{path}: not the expected Bunch of data, target and target_names")
    texts, targets, names = fields["data"], ndarray_from(fields["target"]), list(fields["target_names"])
    if len(texts) != len(targets):
        raise CorpusError(f"{path}: {len(texts)} texts but {len(targets)} targets")
    docs = []
    for i, (text, target) in enumerate(zip(texts, targets, strict=True)):
        headers, body = split_headers(text)
        meta = {"label": names[int(target)], "source": "mini_newsgroup", "subject": headers.get("subject", "")}
        docs.append(Document(f"mini_newsgroup-{i}", body if strip_headers and body else text, meta))
    return LabelledCorpus(docs, names)


#: corpora read from installed packages, by the name ``--corpus`` accepts
BUNDLED_CORPORA = {
    "lee": "gensim's Lee news corpus: 300 background + 50 rated stories (metadata split: background/test)",
    "lee-background": "the 300 background stories of the Lee corpus",
    "mini_newsgroup": "gensim's 200 newsgroup posts, headers stripped (metadata label: alt.atheism or sci.space)",
}


def bundled_corpus(name: str) -> list[Document]:
    """The documents of a bundled corpus (see :data:`BUNDLED_CORPORA`)."""
    if name == "lee":
        return list(lee_documents())
    if name == "lee-background":
        return [d for d in lee_documents() if d.metadata["split"] == "background"]
    if name == "mini_newsgroup":
        return mini_newsgroup().documents
    raise CorpusError(f"unknown bundled corpus {name!r}; choose one of {', '.join(BUNDLED_CORPORA)}")
