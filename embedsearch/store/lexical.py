"""The lexical index: full-text search over a collection's stored text, inside the metadata database.

    embedsearch index create news --model minilm            # --lexical is the default
    embedsearch index alter news --lexical                  # an existing collection gains one
    embedsearch search news "error E1234" --mode lexical

One table per collection, named from its integer id (``lexical_<id>``, never from a user string),
keyed by the document's row id (the FAISS id), so collections never share posting lists:

* SQLite: a contentless FTS5 table (``content=''``: the text is stored once, in ``documents``),
  tokenizer ``unicode61 remove_diacritics 0``, ranked with FTS5's ``bm25()`` (Okapi BM25,
  k1 = 1.2, b = 0.75). A contentless table deletes a row by being given its indexed text again:
  the delete reads it from ``documents`` in SQL, before the document row goes.
* PostgreSQL: a table of ``tsvector`` (``to_tsvector('simple', text)``: lower-cased words, no
  stemming and no stop words, like unicode61, so both databases match the same words) with a GIN
  index, ranked by the same Okapi BM25 as FTS5 (k1 = 1.2, b = 0.75, idf floored at 1e-6) computed
  in SQL: term counts from the tsvector's positions, the document count and token total from
  ``lexical_stats``, kept in the same transaction as the rows. PostgreSQL's own ``ts_rank_cd``
  knows no term rarity and made a much weaker lexical side (MRR@10 0.205 against BM25's 0.529
  on the Debian FAQ set), so both databases now rank alike.

Rows are written and deleted in the transaction that writes and deletes the documents
(:meth:`Collection._commit`), so the index can never disagree with them. Whether a collection has
one is a row of ``lexical_indexes``.

Queries are never parsed by FTS5 or ``to_tsquery`` as the user typed them: :func:`query_terms`
cuts the text into words (letters and digits; everything else, operators and quotes included, is
a separator), and each word goes to the database as a quoted term inside one bound parameter, the
terms OR-ed. So ``"AND"``, ``NEAR(``, ``*``, ``'; DROP TABLE`` or an unbalanced quote are words or
separators, never syntax; a query with no words matches nothing.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import numpy as np
from sqlalchemy import delete, insert, select, text, update

from embedsearch.corpus import batched
from embedsearch.store.metadata import lexical_indexes, lexical_stats

MAX_TERMS = 64  # distinct words of a query that are searched (the first ones)
_WORD = re.compile(r"[^\W_]+")  # letters and digits: unicode61's token characters, near enough
_CHUNK = 500
K1, B = 1.2, 0.75  # FTS5's bm25() defaults, used on PostgreSQL too


def _tokens(tsv: str) -> str:
    """SQL: the tokens a tsvector column was made from (each lexeme's positions; 1 if stripped)."""
    return f"(SELECT coalesce(sum(coalesce(array_length(u.positions, 1), 1)), 0) FROM unnest({tsv}) AS u)"


def words(value: str) -> Iterable[re.Match]:
    """The words of ``value`` (as regex matches, for their offsets)."""
    return _WORD.finditer(value)


def normalise(word: str) -> str:
    return word.lower()


def query_terms(query: str, limit: int | None = MAX_TERMS) -> list[str]:
    """The distinct lower-cased words of a query, in order (at most ``limit``, None: all)."""
    out = list(dict.fromkeys(normalise(m.group()) for m in words(query)))
    return out if limit is None else out[:limit]


def table_name(collection_id: int) -> str:
    """The collection's lexical table: built from its integer id only."""
    return f"lexical_{int(collection_id)}"


# ---- declaration ----------------------------------------------------------------------------
def enabled(conn, collection_id: int) -> bool:
    return (
        conn.execute(select(lexical_indexes.c.collection_id).where(lexical_indexes.c.collection_id == collection_id)).first()
        is not None
    )


def create(conn, collection_id: int, generation: int) -> int:
    """Declare and build the index from every stored document (in the caller's transaction; the
    declaration row is written first so that SQLite's DDL runs inside that transaction).
    Returns the documents indexed."""
    conn.execute(insert(lexical_indexes).values(collection_id=collection_id, created_gen=generation))
    name = table_name(collection_id)
    if conn.dialect.name == "postgresql":
        conn.execute(text(f"CREATE TABLE {name} (row_id BIGINT PRIMARY KEY, tsv TSVECTOR NOT NULL)"))
        conn.execute(text(f"CREATE INDEX {name}_tsv ON {name} USING GIN (tsv)"))
    else:
        conn.execute(text(f"CREATE VIRTUAL TABLE {name} USING fts5(text, content='', tokenize='unicode61 remove_diacritics 0')"))
    return index_rows(conn, collection_id)


def drop(conn, collection_id: int) -> bool:
    """Forget the index (in the caller's transaction); False when there was none."""
    gone = conn.execute(delete(lexical_indexes).where(lexical_indexes.c.collection_id == collection_id)).rowcount
    if gone:
        conn.execute(text(f"DROP TABLE IF EXISTS {table_name(collection_id)}"))
        conn.execute(delete(lexical_stats).where(lexical_stats.c.collection_id == collection_id))
    return bool(gone)


# ---- writes (called from Collection._commit, in its transaction) ------------------------------
def index_rows(conn, collection_id: int, lo: int | None = None, hi: int | None = None) -> int:
    """Index the stored documents with row ids in [lo, hi) (all when no bounds), reading their
    text in SQL."""
    name = table_name(collection_id)
    where = "collection_id = :cid" + ("" if lo is None else " AND row_id >= :lo AND row_id < :hi")
    params = {"cid": collection_id, "lo": lo, "hi": hi}
    if conn.dialect.name == "postgresql":
        sql = (f"WITH added AS (INSERT INTO {name} (row_id, tsv) SELECT row_id, to_tsvector('simple', text) "
               f"FROM documents WHERE {where} RETURNING tsv) SELECT count(*), coalesce(sum({_tokens('tsv')}), 0) FROM added")
        docs, tokens = conn.execute(text(sql), params).one()
        _count(conn, collection_id, int(docs), int(tokens))
        return int(docs)
    sql = f"INSERT INTO {name} (rowid, text) SELECT row_id, text FROM documents WHERE {where}"
    return int(conn.execute(text(sql), params).rowcount or 0)


def _count(conn, collection_id: int, docs: int, tokens: int) -> None:
    """Add to the index's BM25 statistics (PostgreSQL); an index without them (made by an older
    version) gets them counted whole, after this change."""
    if not docs:
        return
    c = lexical_stats.c
    changed = conn.execute(
        update(lexical_stats).where(c.collection_id == collection_id).values(docs=c.docs + docs, tokens=c.tokens + tokens)
    ).rowcount
    if not changed:
        name = table_name(collection_id)
        docs, tokens = conn.execute(text(f"SELECT count(*), coalesce(sum({_tokens('tsv')}), 0) FROM {name}")).one()
        conn.execute(insert(lexical_stats).values(collection_id=collection_id, docs=int(docs), tokens=int(tokens)))


def delete_rows(conn, collection_id: int, row_ids: Iterable[int]) -> None:
    """Remove rows from the index; call it before their documents are deleted (SQLite reads the
    text it indexed from them)."""
    name = table_name(collection_id)
    for part in batched((int(i) for i in row_ids), _CHUNK):
        if conn.dialect.name == "postgresql":
            sql = (f"WITH gone AS (DELETE FROM {name} WHERE row_id = ANY(:ids) RETURNING tsv) "
                   f"SELECT count(*), coalesce(sum({_tokens('tsv')}), 0) FROM gone")
            docs, tokens = conn.execute(text(sql), {"ids": part}).one()
            _count(conn, collection_id, -int(docs), -int(tokens))
        else:
            conn.execute(
                text(
                    f"INSERT INTO {name} ({name}, rowid, text) SELECT 'delete', row_id, text FROM documents "
                    "WHERE collection_id = :cid AND row_id IN (SELECT value FROM json_each(:ids))"
                ),
                {"cid": collection_id, "ids": _json(part)},
            )


def on_commit(conn, collection_id: int, removed: Iterable[int], lo: int, hi: int, stage: str) -> None:
    """The index's part of a commit: ``stage`` "before" (rows about to be deleted) or "after"
    (rows [lo, hi) just inserted)."""
    if stage == "before":
        delete_rows(conn, collection_id, removed)
    elif hi > lo:
        index_rows(conn, collection_id, lo, hi)


# ---- reads ----------------------------------------------------------------------------------
def row_count(conn, collection_id: int) -> int:
    """Documents in the index (``index verify`` compares it with the documents)."""
    name = table_name(collection_id)
    if conn.dialect.name == "postgresql":
        return int(conn.execute(text(f"SELECT count(*) FROM {name}")).scalar_one())
    # a contentless table cannot be scanned; its docsize shadow table has one row per document
    return int(conn.execute(text(f"SELECT count(*) FROM {name}_docsize")).scalar_one())


def counted_docs(conn, collection_id: int) -> int | None:
    """The documents PostgreSQL's BM25 statistics count (None: SQLite, or none kept yet)."""
    if conn.dialect.name != "postgresql":
        return None
    row = conn.execute(select(lexical_stats.c.docs).where(lexical_stats.c.collection_id == collection_id)).first()
    return None if row is None else int(row[0])


def size_bytes(conn, collection_id: int) -> int | None:
    """Bytes the index takes in the database (pages, when the database can say; else None)."""
    name = table_name(collection_id)
    if conn.dialect.name == "postgresql":
        return int(conn.execute(text("SELECT pg_total_relation_size(CAST(:t AS regclass))"), {"t": name}).scalar_one())
    try:
        return int(
            conn.execute(
                text("SELECT coalesce(sum(pgsize), 0) FROM dbstat WHERE name LIKE :p ESCAPE '\\'"),
                {"p": name.replace("_", "\\_") + "%"},
            ).scalar_one()
        )
    except Exception:  # SQLite built without the dbstat table
        return None


def search(conn, collection_id: int, terms: list[str], limit: int | None) -> tuple[np.ndarray, np.ndarray]:
    """(row ids, scores) of the documents holding any of ``terms``, best first, at most ``limit``
    (None: all). Higher scores are better on both databases."""
    if not terms:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
    name = table_name(collection_id)
    cap = "" if limit is None else " LIMIT :n"
    if conn.dialect.name == "postgresql":
        # each term a quoted lexeme: terms are letters and digits only, so no quote or operator
        # can appear; the query text and the terms are bound parameters
        q = " | ".join(f"'{t}'" for t in terms)
        sql = _pg_bm25(name) + f" ORDER BY s DESC, row_id{cap}"
    else:
        q = " OR ".join('"' + t.replace('"', '""') + '"' for t in terms)
        sql = f"SELECT rowid, -bm25({name}) AS s FROM {name} WHERE {name} MATCH :q ORDER BY bm25({name}), rowid{cap}"
    params = {"q": q, "n": limit, "terms": sorted(set(terms)), "cid": collection_id}
    rows = conn.execute(text(sql), params).all()
    ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
    scores = np.fromiter((r[1] for r in rows), dtype=np.float64, count=len(rows))
    return ids, scores


def _pg_bm25(name: str) -> str:
    """SQL: (row_id, s) for the documents matching tsquery ``:q``, ``s`` FTS5's BM25 over the
    distinct ``:terms``. A term's document frequency is counted among the matches (every document
    holding it matches); a document's length is its token count."""
    stats = "(SELECT {col} FROM lexical_stats WHERE collection_id = :cid)"
    n = f"coalesce({stats.format(col='docs')}, (SELECT count(*) FROM {name}))::float8"
    tokens = f"coalesce({stats.format(col='tokens')}, (SELECT sum({_tokens('tsv')}) FROM {name}))::float8"
    f = "coalesce(array_length(u.positions, 1), 1)"
    return (
        f"WITH st AS (SELECT {n} AS n, {tokens} AS tokens), "
        f"hits AS (SELECT m.row_id, u.lexeme, {f}::float8 AS f, sum({f}) OVER (PARTITION BY m.row_id)::float8 AS dl "
        f"FROM {name} AS m, unnest(m.tsv) AS u WHERE m.tsv @@ to_tsquery('simple', :q)), "
        "tf AS (SELECT * FROM hits WHERE lexeme = ANY(CAST(:terms AS text[]))), "
        "df AS (SELECT lexeme, count(*)::float8 AS df FROM tf GROUP BY lexeme), "
        "idf AS (SELECT lexeme, CASE WHEN x > 0 THEN x ELSE 1e-6 END AS idf FROM "
        "(SELECT df.lexeme, ln((st.n - df.df + 0.5) / (df.df + 0.5)) AS x FROM df, st) AS raw) "
        f"SELECT tf.row_id, sum(idf.idf * tf.f * {K1 + 1} / (tf.f + {K1} * ({1 - B} + {B} * tf.dl * st.n / "
        "greatest(st.tokens, 1)))) AS s "
        "FROM tf JOIN idf ON idf.lexeme = tf.lexeme, st GROUP BY tf.row_id"
    )


def search_selected(
    engine, collection_id: int, terms: list[str], n: int, selected: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """The best ``n`` lexical matches among ``selected`` row ids (sorted; None: all rows). Reads
    ``4n`` matches first and all of them only when the filter left fewer than ``n`` of those, so
    a filtered search still returns ``n`` whenever ``n`` selected documents match."""
    with engine.connect() as conn:
        if selected is None:
            return search(conn, collection_id, terms, n)
        if not len(selected):
            return search(conn, collection_id, [], n)
        limit: int | None = 4 * n
        while True:
            ids, scores = search(conn, collection_id, terms, limit)
            keep = np.isin(ids, selected, assume_unique=True)
            if keep.sum() >= n or limit is None or len(ids) < limit:
                return ids[keep][:n], scores[keep][:n]
            limit = None


def _json(ids: list[int]) -> str:
    import json

    return json.dumps(ids)
