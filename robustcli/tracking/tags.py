"""The names robust writes into MLflow: the kinds of run and the tags, each spelled here once.

Every run robust writes carries ``robust.kind`` (:data:`KIND`), one of the kinds below; the other
tags say what the run is (its candidate, its settings' fingerprint, its key). Readers in any layer
name a tag through these constants, so a tag is renamed in one place; a filter that finds runs is
built by :func:`run_filter`. No MLflow import: reading this module costs nothing.
"""

from __future__ import annotations

from collections.abc import Mapping

# -- kinds of run (the value of KIND) ------------------------------------------------------------
KIND = "robust.kind"
INSTANCE = "instance"  #: one training of a candidate (a child of its candidate's run)
CANDIDATE = "candidate"  #: a candidate under one settings fingerprint: the parent of its instances
BASELINE = "baseline"  #: a baseline fitted on the training samples of instances 0..N-1
SELECTION = "selection"  #: a selection (Algorithm 1)'s history
ANALYSIS = "study"  #: an analysis's table and figure (sample size, variance); "study": the value existing runs store
NAS = "nas"  #: a NAS search (its trials are its children)
NAS_TRIAL = "nas-trial"  #: one trial of a NAS search
RUN_KINDS = (INSTANCE, CANDIDATE, BASELINE, SELECTION, ANALYSIS, NAS, NAS_TRIAL)

# -- what every kind may carry ------------------------------------------------------------------
TASK = "robust.task"
STUDY_NAME = "robust.study"  # the study (MLflow experiment) a run belongs to
FINGERPRINT = "robust.fingerprint"  # the hash of every setting that changes an instance's result
DATA_FINGERPRINT = "robust.data_fingerprint"  # the hash of the settings that decide the samples
SETTINGS_JSON = "robust.settings_json"
LOSS_NAME = "robust.loss_name"
STATE = "robust.state"  # a selection's or search's own state: running, finished...

# -- candidates and instances -------------------------------------------------------------------
CANDIDATE_ID = "robust.candidate_id"
CANDIDATE_JSON = "robust.candidate_json"
CANDIDATE_NAME = "robust.candidate_name"
DESCRIPTION = "robust.description"
INSTANCE_INDEX = "robust.instance_index"
STATUS = "robust.status"  # finished | failed
STOP_REASON = "robust.stop_reason"
SPIKED = "robust.spiked"
ENGINE = "robust.engine"
STACK = "robust.stack"
FAILURE = "robust.failure"
PLAIN_REASON = "robust.plain_reason"

# -- provenance (tracking/provenance.py) ----------------------------------------------------------
VERSION_PREFIX = "robust.version."
GIT_COMMIT = "robust.git_commit"
DEVICE = "robust.device"
HOST = "robust.host"
TORCH_THREADS = "robust.torch_threads"
OMP_WAIT_POLICY = "robust.omp_wait_policy"
DETERMINISTIC_ALGORITHMS = "robust.deterministic_algorithms"

# -- baselines ------------------------------------------------------------------------------------
BASELINE_NAME = "robust.baseline"
INSTANCES = "robust.instances"  # how many instances' samples a baseline run holds

# -- selections -----------------------------------------------------------------------------------
SELECTION_KEY = "robust.selection_key"
SELECTION_JSON = "robust.selection_json"
SELECTED = "robust.selected"
TRAININGS = "robust.trainings"
EXHAUSTIVE_TRAININGS = "robust.exhaustive_trainings"
CONFIDENCE = "robust.confidence"
OWNER = "robust.owner"
OWNER_START = "robust.owner_start"

# -- analyses (the values say "study", as existing runs store them) -----------------------------
ANALYSIS_KIND = "robust.study_kind"
ANALYSIS_KEY = "robust.study_key"

# -- NAS --------------------------------------------------------------------------------------------
NAS_KEY = "robust.nas_key"
TRIAL_NUMBER = "robust.trial_number"
TRIAL_ANSWERS = "robust.trial_answers"
INSTANCE_RUN = "robust.instance_run"
VERDICT = "robust.verdict"

# -- the journal (tracking/writer.py) -------------------------------------------------------------
JOURNAL = "robust.journal"
WRITE_KEY = "robust.write_key"

# -- MLflow's own -----------------------------------------------------------------------------------
PARENT_RUN_ID = "mlflow.parentRunId"


def run_filter(kind: str | None = None, tags: Mapping[str, str] | None = None) -> str:
    """An MLflow filter for the runs of ``kind`` whose ``tags`` have these values (no kind: any run
    robust wrote). Values are ids, hashes and names robust chose: a quote in one is refused."""
    clauses = [f"tags.`{KIND}` = '{kind}'" if kind is not None else f"tags.`{KIND}` != ''"]
    for name, value in (tags or {}).items():
        if "'" in str(value):
            raise ValueError(f"a quote in the value of tag {name}: {value!r}")
        clauses.append(f"tags.`{name}` = '{value}'")
    return " and ".join(clauses)
