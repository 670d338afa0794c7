"""robustcli from Python: assess two candidates, select among a few, and write the report.

Run it as it is (a minute on a laptop; everything goes to a local MLflow store):

    python examples/api.py                     # store: $MLFLOW_TRACKING_URI or sqlite:///mlruns/mlflow.db
    python examples/api.py sqlite:///tmp/x.db  # another store

A second run trains nothing: every instance is read back from MLflow.
"""

from __future__ import annotations

import sys

from robustcli.api import Study, list_candidates


def main(tracking_uri: str | None = None) -> None:
    # the candidates a task offers, filtered by their parameters (no store needed)
    adam = list_candidates("synthetic", where={"optimizer": "adam", "hidden": 16})
    print(f"{len(adam)} Adam candidates with 16 hidden units, e.g. {adam[0].description}")

    # one study: a task, a store and the training settings (the CLI's option names)
    study = Study(
        "synthetic",
        name="api-example",
        tracking_uri=tracking_uri,
        train_size=128,
        min_epochs=8,
        window=4,
        max_epochs=30,
        seed=7,
    )

    # N instances of a candidate: trains only what MLflow does not hold yet
    small = study.assess("small", instances=3)
    mean = small.statistics["mean"]
    print(f"small: {small.loss['name']} = {mean['value']:.4f} [{mean['low']:.4f}, {mean['high']:.4f}] "
          f"over {small.instances} instances ({small.trained_now} trained now)")
    print(small.to_frame().to_string(index=False))  # one row per instance (pandas)

    # Algorithm 1 over four candidates, by the race rule on the mean loss
    chosen = study.select(rule="race", criterion="mean", candidates=["small", "wide", adam[1].id], max_steps=3)
    print(f"selected {chosen.selected_name or chosen.selected_description} after {chosen.result.steps} steps "
          f"({chosen.result.trainings} trainings)")
    for survivor in chosen.summary:
        print(f"  {survivor.name or survivor.description}: {survivor.quote()}")

    # the study's page: box plots, the selection's path, the summaries
    report = study.report("api-example.html")
    print(f"report: {report.out}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else None)
