#!/usr/bin/env python3
"""scikit-learn's averages of the cases sklearn_parity_test.cc draws.

usage: sklearn_reference.py CASES.json OUT.json

CASES.json is a list of {"name": str, "y_true": [int], "y_pred": [int]}.
OUT.json gets one object per case, in the same order, with what scikit-learn
computes from y_true and y_pred alone (no `labels` argument, zero_division=0):
  labels       unique_labels(y_true, y_pred), the classes it averages over
  prfs_macro   precision_recall_fscore_support(average="macro"): [p, r, f1]
  prfs_weighted  the same with average="weighted": [p, r, f1]
  report_macro   classification_report(output_dict=True)["macro avg"]: [p, r, f1]
  report_weighted_f1  classification_report(...)["weighted avg"]["f1-score"]
Floats are written by json, i.e. in shortest round-trip form.
"""

import json
import sys

from sklearn.metrics import classification_report, precision_recall_fscore_support
from sklearn.utils.multiclass import unique_labels


def averages(y_true, y_pred):
    def prfs(average):
        p, r, f, _ = precision_recall_fscore_support(
            y_true, y_pred, average=average, zero_division=0
        )
        return [float(p), float(r), float(f)]

    report = classification_report(y_true, y_pred, output_dict=True, zero_division=0)
    macro = report["macro avg"]
    return {
        "labels": [int(c) for c in unique_labels(y_true, y_pred)],
        "prfs_macro": prfs("macro"),
        "prfs_weighted": prfs("weighted"),
        "report_macro": [float(macro["precision"]), float(macro["recall"]),
                         float(macro["f1-score"])],
        "report_weighted_f1": float(report["weighted avg"]["f1-score"]),
    }


def main():
    if len(sys.argv) != 3:
        sys.exit(f"usage: {sys.argv[0]} CASES.json OUT.json (got {len(sys.argv) - 1} arguments)")
    with open(sys.argv[1], encoding="utf-8") as f:
        cases = json.load(f)
    results = []
    for case in cases:
        result = averages(case["y_true"], case["y_pred"])
        result["name"] = case["name"]
        results.append(result)
    with open(sys.argv[2], "w", encoding="utf-8") as f:
        json.dump(results, f)


if __name__ == "__main__":
    main()
