"""The feature index on disk: one SQLite file that a web UI, a notebook or ``sqlite3`` can query.

Why SQLite rather than DuckDB: every question asked of an index is a point lookup by feature
(a dashboard page, a ``show``, the features active on a prompt) or a small text search, which is
what a row store with B-tree keys does best; it ships with Python (no dependency), is one file
that copies and opens anywhere, every language and web framework reads it, and many readers can
open it while another process writes explanations into it. DuckDB wins on analytic scans over
millions of rows, which an index of one SAE does not need.

Tables (``feature`` is the latent or neuron index everywhere):
- ``meta(key, value)``: JSON values: what the index was built from (SAE checksum, model, site,
  dataset, context policy, tokens) and how (format version, window sizes, histogram edges).
- ``features``: density, firing count, mean and max activation, the log10-activation histogram,
  and ``peak_share``, the fraction of its top examples that peak on the commonest token.
- ``peaks(feature, rank, token, count)``: the tokens its top examples peak on, each with how many
  of them do; ``rank`` 0 is the commonest (ties: the one with the larger top example first).
  Display strings ("' sea'×12, ...") are rendered from these rows when read, never stored.
- ``examples``: ``kind`` 'top' (largest activation, ``rank`` 0 is the largest), 'sample'
  (uniform among firing contexts, with its ``quantile``), 'zero' (a context where it is silent);
  each a window of ``token_ids`` (int32 little-endian, -2 = outside the context, -1 = a position
  the activations exclude such as BOS) and the feature's ``activations`` on them (float16 LE),
  ``focus`` the index of the peak inside the window, and the window as plain ``text``.
  The held-out set that scores explanations, never shown to an explainer: 'heldout' (uniform
  among firing contexts that are none of the feature's 'top' or 'sample' ones, with its
  ``quantile``), 'near' (a window where it is silent but a neighbouring feature fires: a near
  miss) and 'heldout_zero' (a random window where it is silent).
- ``tokens(id, text)``: the decoded text of every token id in an example or a logit row (and of
  -1, shown as ``<special>``).
- ``logits``: the tokens each feature's write direction promotes (``sign`` +1) and suppresses (-1)
  through the final norm and the unembedding.
- ``neighbours``: the nearest features by decoder cosine. ``neurons``: for SAEs on MLP neurons, the
  neurons each feature draws on.
- ``explanations``: written by ``saescope explain``, one per (feature, explainer, prompt
  version): the explainer is a model's name or a baseline (``EXPLAINER_PEAKS``, and
  ``EXPLAINER_RANDOM`` + the model whose explanation of ``source_feature`` it borrows);
  ``explanation`` is NULL when the model's answer (kept in ``answer``) could not be parsed.
- ``scores``: written by ``saescope score``, one per (explanation, method, scorer): the score
  (balanced accuracy or correlation; NULL when no answer parsed), its bootstrap interval, the
  items scored ``n`` and the answers that could not be parsed ``n_unparsed``, tokens used.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np

from saescope._files import strict_json
from saescope.errors import SaescopeError

FORMAT = "saescope.index/3"
"""Version 3 added the held-out examples and the ``explanations`` / ``scores`` tables; version 2
replaced the ``features.top_tokens`` display string by the ``peaks`` table."""
READABLE = (FORMAT, "saescope.index/2")
"""Formats this saescope opens; only ``FORMAT`` holds the held-out set and explanations."""
EXPLAINER_PEAKS = "baseline:peak-tokens"
"""The explainer name of the no-LLM baseline: the feature's commonest peak tokens."""
EXPLAINER_RANDOM = "baseline:random-feature"
"""The explainer name prefix of the baseline that borrows another feature's explanation."""

SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE features (
    feature INTEGER PRIMARY KEY,
    fires INTEGER NOT NULL,
    density REAL NOT NULL,
    mean_activation REAL,
    max_activation REAL NOT NULL,
    histogram BLOB NOT NULL,  -- int32 LE counts over meta.histogram_log10_edges
    peak_share REAL NOT NULL  -- fraction of the top examples peaking on the commonest token
);
CREATE TABLE peaks (
    feature INTEGER NOT NULL,
    rank INTEGER NOT NULL,  -- 0: the token most top examples peak on
    token INTEGER NOT NULL,  -- tokens.id
    count INTEGER NOT NULL,  -- how many of the feature's top examples peak on it
    PRIMARY KEY (feature, rank)
) WITHOUT ROWID;
CREATE INDEX peaks_by_token ON peaks (token);
CREATE TABLE examples (
    feature INTEGER NOT NULL,
    kind TEXT NOT NULL
        CHECK (kind IN ('top', 'sample', 'zero', 'heldout', 'near', 'heldout_zero')),
    rank INTEGER NOT NULL,
    activation REAL NOT NULL,
    quantile INTEGER,
    context INTEGER NOT NULL,
    position INTEGER NOT NULL,
    focus INTEGER NOT NULL,
    token_ids BLOB NOT NULL,
    activations BLOB NOT NULL,
    text TEXT NOT NULL,
    PRIMARY KEY (feature, kind, rank)
) WITHOUT ROWID;
CREATE TABLE tokens (id INTEGER PRIMARY KEY, text TEXT NOT NULL);
CREATE TABLE logits (
    feature INTEGER NOT NULL,
    sign INTEGER NOT NULL CHECK (sign IN (-1, 1)),
    rank INTEGER NOT NULL,
    token INTEGER NOT NULL,
    value REAL NOT NULL,
    PRIMARY KEY (feature, sign, rank)
) WITHOUT ROWID;
CREATE TABLE neighbours (
    feature INTEGER NOT NULL,
    rank INTEGER NOT NULL,
    other INTEGER NOT NULL,
    cosine REAL NOT NULL,
    PRIMARY KEY (feature, rank)
) WITHOUT ROWID;
CREATE TABLE neurons (
    feature INTEGER NOT NULL,
    rank INTEGER NOT NULL,
    neuron INTEGER NOT NULL,
    weight REAL NOT NULL,
    PRIMARY KEY (feature, rank)
) WITHOUT ROWID;
CREATE TABLE explanations (
    id INTEGER PRIMARY KEY,
    feature INTEGER NOT NULL,
    explainer TEXT NOT NULL,  -- model name, or a baseline:... name
    prompt_version TEXT NOT NULL,
    explanation TEXT,  -- NULL: the answer could not be parsed
    answer TEXT NOT NULL,  -- the model's answer as generated ('' for the peak-token baseline)
    source_feature INTEGER,  -- the feature whose explanation a random baseline borrows
    prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    created TEXT NOT NULL,
    UNIQUE (feature, explainer, prompt_version)
);
CREATE TABLE scores (
    explanation INTEGER NOT NULL REFERENCES explanations (id),
    method TEXT NOT NULL CHECK (method IN ('detection', 'fuzzing', 'simulation')),
    scorer TEXT NOT NULL,
    prompt_version TEXT NOT NULL,
    score REAL,  -- NULL: no item could be scored
    ci_low REAL,
    ci_high REAL,
    n INTEGER NOT NULL,  -- items scored
    n_unparsed INTEGER NOT NULL,  -- answers that could not be parsed (not scored)
    prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    created TEXT NOT NULL,
    PRIMARY KEY (explanation, method, scorer)
) WITHOUT ROWID;
"""


def create(path: Path) -> sqlite3.Connection:
    """A new, empty index file at ``path`` (which must not exist)."""
    db = sqlite3.connect(path)
    db.executescript(SCHEMA)
    return db


def write_meta(db: sqlite3.Connection, meta: dict[str, Any]) -> None:
    db.executemany(
        "INSERT OR REPLACE INTO meta VALUES (?, ?)",
        [(k, strict_json(v, indent=None)) for k, v in meta.items()],
    )


def int32_blob(values: np.ndarray) -> bytes:
    return np.ascontiguousarray(values, dtype="<i4").tobytes()


ACT_DTYPE = "<f2"
"""Activations in example windows: float16 (3 significant digits is what a colour scale shows)."""


def act_blob(values: np.ndarray) -> bytes:
    limit = float(np.finfo(np.float16).max)
    return np.clip(values, -limit, limit).astype(ACT_DTYPE).tobytes()


def open_db(path: str | Path, read_only: bool = False) -> sqlite3.Connection:
    """Open an existing index (read-write, or ``read_only``: SQLite refuses every write, so a
    server killed mid-request cannot damage it), checking that it is one and of a format we
    read."""
    path = Path(path)
    if not path.is_file():
        partial = path.with_name(path.name + ".partial")
        hint = (
            f"; a build was interrupted ({partial}): rerun `saescope index` with --resume"
            if partial.exists()
            else "; build one with `saescope index`"
        )
        raise SaescopeError(f"no feature index at {path}{hint}")
    db = (
        # Read-only connections may be used from another thread than the one that opened them
        # (a web server opens at start and serves from its event loop): no writes can race.
        sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, check_same_thread=False)
        if read_only
        else sqlite3.connect(path)
    )
    try:
        row = db.execute("SELECT value FROM meta WHERE key = 'format'").fetchone()
    except sqlite3.DatabaseError as e:
        db.close()
        raise SaescopeError(f"{path} is not a saescope feature index ({e})") from e
    if row is None or json.loads(row[0]) not in READABLE:
        db.close()
        found = json.loads(row[0]) if row else None
        raise SaescopeError(
            f"{path} holds index format {found!r}; this saescope reads {FORMAT!r}: rebuild it "
            "with `saescope index ... --overwrite` (the same arguments as the first build)"
        )
    return db


def require_current(db: sqlite3.Connection, path: str | Path, command: str) -> None:
    """Refuse an index of an older readable format for ``command`` (explain, score), which
    needs the held-out set and the explanation tables only ``FORMAT`` has."""
    (found,) = db.execute("SELECT value FROM meta WHERE key = 'format'").fetchone()
    if json.loads(found) != FORMAT:
        raise SaescopeError(
            f"{path} is index format {json.loads(found)!r}, which has no held-out examples or "
            f"explanation tables; `saescope {command}` needs {FORMAT!r}: rebuild it with "
            "`saescope index ... --overwrite` (the same arguments as the first build)"
        )
