"""Machine-learning utility: train on synthetic, test on real (TSTR).

A gradient-boosted model (scikit-learn's HistGradientBoosting, native categorical features,
``random_state=0``, the protocol of ``bench/utility.py``) learns the target column from the
synthetic table, and is scored on the real holdout rows, which neither the synthesizer nor the
model saw. The same model trained on the real training rows is the yardstick. Classification is
scored by ROC AUC (one-vs-rest macro average for more than two classes), regression by R^2.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from synthgen.evaluate.columns import CATEGORICAL, labels, values

# HistGradientBoosting's native categorical support takes at most 255 categories per feature.
_MAX_CATEGORIES = 250
MAX_TRAIN_ROWS = 100_000


def _features(
    frame: pd.DataFrame, kinds: dict[str, str], categories: dict[str, list[str]]
) -> pd.DataFrame:
    out: dict[str, Any] = {}
    for name, sdtype in kinds.items():
        if sdtype == CATEGORICAL:
            out[name] = pd.Categorical(labels(frame[name]), categories=categories[name])
        else:
            out[name] = values(frame[name], sdtype)
    return pd.DataFrame(out)


def train_synthetic_test_real(
    train: pd.DataFrame,
    synthetic: pd.DataFrame,
    holdout: pd.DataFrame,
    target: str,
    kinds: dict[str, str],
    *,
    seed: int = 0,
) -> dict[str, Any]:
    """The utility section of a report: TSTR score next to the train-on-real score."""
    try:
        from sklearn.ensemble import (
            HistGradientBoostingClassifier,
            HistGradientBoostingRegressor,
        )
        from sklearn.metrics import r2_score, roc_auc_score
        from threadpoolctl import threadpool_limits
    except ImportError as exc:
        raise ImportError("the utility test (--target) needs scikit-learn: "
                          "pip install 'synthgen[evaluate]'") from exc

    if target not in kinds:
        raise ValueError(f"--target {target!r} is not a learned column of the table; "
                         f"choose one of {', '.join(kinds)}")
    features = {k: v for k, v in kinds.items() if k != target}
    if not features:
        raise ValueError("the table has no column besides the target to predict it from")
    categories = {
        name: [str(v) for v in pd.Series(labels(train[name])).value_counts().index[
            :_MAX_CATEGORIES]]
        for name, sdtype in features.items() if sdtype == CATEGORICAL
    }
    rng = np.random.default_rng(seed)

    def cap(frame: pd.DataFrame) -> pd.DataFrame:
        if len(frame) <= MAX_TRAIN_ROWS:
            return frame
        return frame.iloc[np.sort(rng.choice(len(frame), MAX_TRAIN_ROWS, replace=False))]

    train, synthetic = cap(train), cap(synthetic)
    classification = kinds[target] == CATEGORICAL
    result: dict[str, Any] = {
        "target": target,
        "task": "classification" if classification else "regression",
        "metric": "roc_auc" if classification else "r2",
        "model": "HistGradientBoosting (native categorical features, random_state=0)",
        "test": "holdout rows (never seen by the synthesizer or the model)",
    }

    if classification:
        classes = sorted({v for v in labels(train[target]) if v is not None})
        y_test_all = labels(holdout[target])
        keep_test = np.isin(y_test_all, classes)
        x_test = _features(holdout[keep_test], features, categories)
        y_test = y_test_all[keep_test].astype(str)

        def score(frame: pd.DataFrame) -> tuple[float | None, int, str | None]:
            y = labels(frame[target])
            keep = np.isin(y, classes)  # a label the real data lacks (e.g. "Other") is unusable
            x, y = _features(frame[keep], features, categories), y[keep].astype(str)
            if len(np.unique(y)) < 2:
                return None, int(keep.sum()), "fewer than two classes to learn from"
            model = HistGradientBoostingClassifier(categorical_features="from_dtype",
                                                   random_state=0)
            model.fit(x, y)
            proba = pd.DataFrame(model.predict_proba(x_test), columns=model.classes_)
            proba = proba.reindex(columns=classes, fill_value=0.0).to_numpy()
            present = sorted(set(y_test))
            if len(present) < 2:
                return None, int(keep.sum()), "the holdout holds a single class"
            if len(classes) == 2:
                return float(roc_auc_score(y_test == classes[1], proba[:, 1])), int(
                    keep.sum()), None
            cols = [classes.index(c) for c in present]
            p = proba[:, cols]
            p = p / np.clip(p.sum(1, keepdims=True), 1e-12, None)
            return float(roc_auc_score(y_test, p, multi_class="ovr", labels=present)), int(
                keep.sum()), None

        result["positive_class"] = classes[1] if len(classes) == 2 else None
        result["test_rows"] = int(keep_test.sum())
    else:
        y_test_all = values(holdout[target], kinds[target])
        keep_test = ~np.isnan(y_test_all)
        x_test = _features(holdout[keep_test], features, categories)
        y_test_num = y_test_all[keep_test]

        def score(frame: pd.DataFrame) -> tuple[float | None, int, str | None]:
            y = values(frame[target], kinds[target])
            keep = ~np.isnan(y)
            if keep.sum() < 2 or len(y_test_num) < 2:
                return None, int(keep.sum()), "too few rows with a target value"
            model = HistGradientBoostingRegressor(categorical_features="from_dtype",
                                                  random_state=0)
            model.fit(_features(frame[keep], features, categories), y[keep])
            return float(r2_score(y_test_num, model.predict(x_test))), int(keep.sum()), None

        result["test_rows"] = int(keep_test.sum())

    # One OpenMP thread: after training, torch's OpenMP workers still spin, and scikit-learn's
    # own pool competing with them ran 20-30x slower on a 2-core machine (0.4 s vs 10 s).
    with threadpool_limits(limits=1, user_api="openmp"):
        syn_score, syn_rows, syn_note = score(synthetic)
        real_score, real_rows, real_note = score(train)
    result.update({
        "synthetic_score": syn_score,
        "real_score": real_score,
        "synthetic_train_rows": syn_rows,
        "real_train_rows": real_rows,
        "notes": [f"{who}: {note}" for who, note in
                  (("synthetic", syn_note), ("real", real_note)) if note],
    })
    return result
