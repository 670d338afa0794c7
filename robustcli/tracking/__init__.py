"""Where studies are kept: MLflow (runs, metrics, tags), read back for every report and resume.

The only package that writes MLflow. :mod:`~robustcli.tracking.tags` names the run kinds and the
tags; :mod:`~robustcli.tracking.mlflow_store` creates, finds and ends runs of every kind, finished
ones through the crash-safe journal of :mod:`~robustcli.tracking.writer`; a selection's run is
:mod:`~robustcli.tracking.selection_store`, an analysis's :mod:`~robustcli.tracking.analysis_runs`,
a NAS search's :mod:`~robustcli.tracking.nas_runs`.
"""
