"""Writing a recommendation run's suggestions and prospects: one home for the one-process run
(ml.training) and the scoring chunks (ml.scoring)."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
from django.db import connection

from ml import data
from ml.control import control_ids
from ml.models import Prospect, Suggestion
from ml.publishing import json_default

SUGGESTION_COLUMNS = ["run_id", "customer_id", "kind", "rank", "product_id", "score", "reason", "evidence", "basis",
                      "expected_on", "control"]
PROSPECT_COLUMNS = ["run_id", "product_id", "rank", "customer_id", "score", "reason", "control"]
# A chunk's prospects are written at ranks index * n + 1 ... (its own top n per product) and
# ranked over every chunk when the last one is done; ranks above RANK_SHIFT are the renumbering's
# step, so a fanned-out run has at most RANK_SHIFT // n chunks (ranks are small integers).
RANK_SHIFT = 16_000


def write_suggestions(run_id: int, recs: pd.DataFrame) -> tuple[int, int]:
    """Write the suggestions ``recs`` (Recommender.suggest_chunks' frame) under run ``run_id``,
    the control group's flagged (they are written, so that the uplift is measured on them, and
    never listed). Returns (rows, reorder rows). Call inside the caller's transaction."""
    control = control_ids(recs["customer_id"].unique())
    recs = recs.assign(run_id=run_id, evidence=evidence_texts(recs["evidence"]),
                       control=recs["customer_id"].isin(control))
    data.write_frame(Suggestion, recs[SUGGESTION_COLUMNS])
    return len(recs), int((recs["kind"] == "reorder").sum())


def write_prospects(run_id: int, prospects: pd.DataFrame | None, rank_offset: int = 0) -> int:
    """Write ``prospects`` (product_id, rank, customer_id, score, reason) under run ``run_id``,
    their ranks moved up by ``rank_offset``; returns the rows written."""
    if prospects is None or prospects.empty:
        return 0
    control = control_ids(prospects["customer_id"].unique())
    frame = prospects.assign(run_id=run_id, rank=prospects["rank"].to_numpy(np.int64) + rank_offset,
                             control=prospects["customer_id"].isin(control))
    return data.write_frame(Prospect, frame[PROSPECT_COLUMNS])


def keep_top_prospects(run_id: int, n: int) -> int:
    """Keep the top ``n`` prospects per product of run ``run_id`` over the chunks' own top lists
    (written at ranks index * n + their rank), ranked 1..n: best score first, on a tie the earlier
    chunk and then the chunk's own order, as one pass over every customer in order ranks them
    (ml.pipelines.recommendation.suggesting.merge_prospects). Returns the rows kept. Call inside
    the caller's transaction."""
    table = connection.ops.quote_name(Prospect._meta.db_table)
    ranked = (f"SELECT id, ROW_NUMBER() OVER (PARTITION BY product_id ORDER BY score DESC, rank) AS place "  # noqa: S608  # nosec B608 -- the table name is the model's
              f"FROM {table} WHERE run_id = %s")
    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {table} WHERE id IN (SELECT id FROM ({ranked}) AS r WHERE r.place > %s)",  # noqa: S608  # nosec B608
                       [run_id, n])
        # Two steps, so that no row takes a rank another row of its product still holds.
        cursor.execute(f"UPDATE {table} SET rank = r.place + %s FROM ({ranked}) AS r WHERE {table}.id = r.id",  # noqa: S608  # nosec B608
                       [RANK_SHIFT, run_id])
        cursor.execute(f"UPDATE {table} SET rank = rank - %s WHERE run_id = %s", [RANK_SHIFT, run_id])  # noqa: S608  # nosec B608
        return cursor.rowcount


def evidence_texts(evidence: pd.Series) -> list:
    """Each suggestion's evidence as JSON text. The pipeline shares one evidence dict between
    the suggestions with the same figures (a million rows, a few thousand dicts): each is
    serialised once."""
    texts = {}
    out = []
    for ev in evidence:
        text = texts.get(id(ev))
        if text is None:
            text = texts[id(ev)] = json.dumps(ev, default=json_default)
        out.append(text)
    return out

