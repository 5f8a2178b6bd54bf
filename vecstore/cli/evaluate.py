"""``vecstore eval``: a table's retrieval quality on BEIR judgements (nDCG, recall and MRR at k),
one mode or several side by side with paired-bootstrap confidence intervals. Thin over
:mod:`vecstore.evaluation`."""

from __future__ import annotations

from typing import Any

import click

from ..errors import InvalidArgumentError
from ..evaluation import METRICS, RetrievalScores, compare_scores, evaluate_table, load_qrels, load_queries
from . import cli, emit
from .commands import MODES, _connect, key_option, plain_option, ranking_options, refinement, store_argument


def _modes(mode: str, compare: str | None) -> list[str]:
    if compare is None:
        return [mode]
    modes = [m.strip().lower() for m in compare.split(",") if m.strip()]
    bad = [m for m in modes if m not in MODES]
    if bad or len(modes) < 2 or len(set(modes)) != len(modes):
        raise InvalidArgumentError(
            f"--compare {compare!r}: expected two or more distinct modes separated by commas, from "
            f"{', '.join(MODES)} (e.g. --compare vector,keyword,hybrid)")
    return modes


@cli.command(name="eval")
@store_argument
@click.argument("table")
@click.option("--queries", "queries_path", required=True, type=click.Path(dir_okay=False),
              help="BEIR queries.jsonl: one {\"_id\" or \"id\", \"text\"} a line.")
@click.option("--qrels", "qrels_path", required=True, type=click.Path(dir_okay=False),
              help="BEIR qrels.tsv: a header, then 'query-id corpus-id score' a line.")
@click.option("--split", default=None, help="Keep only the qrels rows of this 'split' column value.")
@click.option("--mode", type=click.Choice(MODES), default="vector", show_default=True,
              help="How the table is searched.")
@click.option("--compare", default=None, metavar="MODES",
              help="Several modes side by side, e.g. vector,keyword,hybrid: each against the first, "
              "with paired-bootstrap confidence intervals (replaces --mode).")
@click.option("-k", "k", default=10, show_default=True, type=click.IntRange(1), help="The cut-off.")
@click.option("--where", default=None, help="SQL filter applied to every query.")
@click.option("--id-column", default=None,
              help="The column the qrels' corpus-ids name (default: doc_id when the table has it, "
              "one hit per document, else id).")
@ranking_options
@click.option("--resamples", default=10_000, show_default=True, type=click.IntRange(1),
              help="Bootstrap resamples for --compare.")
@click.option("--seed", default=0, show_default=True, help="Bootstrap seed for --compare.")
@key_option
@plain_option
def evaluate(store: str, table: str, queries_path: str, qrels_path: str, split: str | None, mode: str,
             compare: str | None, k: int, where: str | None, id_column: str | None, fusion: str | None,
             rrf_k: int | None, alpha: float | None, reranker: str | None, rerank_candidates: int,
             resamples: int, seed: int, api_key: str | None, plain: bool) -> None:
    """nDCG@k, recall@k and MRR@k of TABLE's search on judged queries (BEIR files): one JSON
    object, or with --compare one line per mode, each later one with its difference from the
    first and a 95% paired-bootstrap confidence interval. Judged queries without a text score
    0; a document counts once, at the rank of its best chunk."""
    modes = _modes(mode, compare)
    if fusion is not None and "hybrid" not in modes:
        raise InvalidArgumentError("--fusion merges the rankings of hybrid search: add hybrid to the modes")
    queries = load_queries(queries_path)
    qrels = load_qrels(qrels_path, split=split)
    if not any(q in queries for q, rels in qrels.items() if any(g > 0 for g in rels.values())):
        raise InvalidArgumentError(
            f"no query of {queries_path} has a relevant judgement in {qrels_path}: check that the "
            f"files belong together (and --split)")
    tbl = _connect(store, api_key).open_table(table)
    scores: dict[str, RetrievalScores] = {}
    for m in modes:
        refine = refinement(m, fusion, rrf_k, alpha, reranker, rerank_candidates)
        scores[m] = evaluate_table(tbl, queries, qrels, mode=m, k=k, where=where, id_column=id_column,
                                   refine=refine)
    base = modes[0]
    records: list[dict[str, Any]] = []
    for m in modes:
        record: dict[str, Any] = {"mode": m, **scores[m].summary()}
        if compare is not None and m != base:
            diffs = compare_scores(scores[m], scores[base], resamples=resamples, seed=seed)
            record["vs"] = base
            for metric in METRICS:
                c = diffs[metric]
                record[f"{metric}@{k} delta"] = c.delta
                record[f"{metric}@{k} ci95"] = [c.ci_low, c.ci_high]
        records.append(record)
    if not plain:
        emit(records, plain=False)
        return
    rows = []
    for r in records:
        row: dict[str, Any] = {"mode": r["mode"]}
        for metric in METRICS:
            name = f"{metric}@{k}"
            row[name] = f"{r[name]:.4f}"
            if compare is not None:  # the difference from the first mode, and its 95% interval
                row[f"Δ{metric} [95% CI]"] = "" if "vs" not in r else (
                    f"{r[name + ' delta']:+.4f} [{r[name + ' ci95'][0]:+.4f}, {r[name + ' ci95'][1]:+.4f}]")
        row["queries"] = r["queries"]
        rows.append(row)
    emit(rows, plain=True)
