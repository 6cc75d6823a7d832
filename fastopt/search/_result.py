"""The result of a search: the ranked table, the best configuration and model."""
import math


class SearchResult:
    """``table``: every trial as a dict (``rank``, ``trial``, the searched
    arguments, ``score`` = the monitored log, the final validation logs,
    ``status``, ``seconds``), best first; failed trials (NaN score) last.
    ``best_params`` (searched and fixed arguments), ``best_score``,
    ``best_model`` (the best trial's model, or the refitted one),
    ``test_scores`` (``evaluate`` on ``test_data`` of the best model only,
    or None)."""

    def __init__(self, method, monitor, mode, rows, best_params, best_model, refit_fn):
        self.method, self.monitor, self.mode = method, monitor, mode
        sign = 1.0 if mode == "min" else -1.0
        ranked = sorted(rows, key=lambda r: (math.isnan(r["score"]),
                                             sign * r["score"] if not math.isnan(r["score"])
                                             else 0.0, r["trial"]))
        self.table = [{"rank": k, **row} for k, row in enumerate(ranked, 1)]
        self.best_params = best_params
        self.best_score = self.table[0]["score"]
        self.best_model = best_model
        self.test_scores = None
        self._refit_fn = refit_fn

    def refit(self, x, y):
        """Train the best configuration again (same builder, same seed) on
        ``x``, ``y``, all of them; it becomes ``best_model``, returned."""
        self.best_model = self._refit_fn(self.best_params, x, y)
        return self.best_model

    def test(self, x_test, y_test):
        """``best_model.evaluate(x_test, y_test)``, kept as ``test_scores``:
        the one use of a test set, after the selection."""
        self.test_scores = self.best_model.evaluate(x_test, y_test)
        return self.test_scores

    def to_dataframe(self):
        """The table as a pandas DataFrame (pandas imported only here)."""
        import pandas as pd

        return pd.DataFrame(self.table).set_index("rank")

    def __str__(self):
        keys = [k for k in self.table[0] if k not in ("rank", "status", "error")]
        lines = [f"{self.method} search, {len(self.table)} trials, ranked by {self.monitor} "
                 f"({'lower' if self.mode == 'min' else 'higher'} is better)",
                 "rank  " + "  ".join(keys)]
        for row in self.table:
            cells = [_cell(row.get(k)) for k in keys]
            lines.append(f"{row['rank']:4d}  " + "  ".join(cells)
                         + ("" if row["status"] == "ok" else "  (failed)"))
        return "\n".join(lines)

    def __repr__(self):
        return (f"SearchResult({self.method}, {len(self.table)} trials, best {self.monitor}="
                f"{self.best_score:.6g}, best_params={self.best_params!r})")


def _cell(value):
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)
