"""A candidate's label: one function for every output (issue 22)."""

from __future__ import annotations

from robustcli.task import Candidate, SearchSpace, candidate_label, describe_params

PARAMS = {"optimizer": "adam", "lr": 0.01, "batch_size": 32, "hidden": 16}


class _Described:
    def describe_candidate(self, candidate: Candidate) -> str:
        return f"mlp{candidate.params['hidden']}"


class _Broken:
    def describe_candidate(self, candidate: Candidate) -> str:
        raise KeyError("arch")


def test_a_label_is_the_name_else_the_tasks_description_beside_the_id() -> None:
    named = Candidate.from_params(PARAMS, name="small")
    plain = Candidate.from_params(PARAMS)
    cid = plain.id
    assert candidate_label(_Described(), named) == f"small ({cid})"
    assert candidate_label(_Described(), plain) == f"mlp16 ({cid})"
    assert candidate_label(_Described(), named, with_id=False) == "small"
    assert candidate_label(_Described(), named, with_id=False, use_name=False) == "mlp16"
    # no task at hand, or a plugin's description that fails: the parameters (the hook's default)
    assert candidate_label(None, plain) == f"adam-lr1e-2-bs32-hidden=16 ({cid})" == f"{describe_params(PARAMS)} ({cid})"
    assert candidate_label(_Broken(), plain, with_id=False) == "adam-lr1e-2-bs32-hidden=16"
    # the id-level label, for messages where no task is at hand
    assert (named.label, plain.label) == (f"small ({cid})", cid)


def test_a_nameless_copy_of_a_named_candidate_takes_its_name() -> None:
    small = {"optimizer": "adam", "hidden": 16}
    space = SearchSpace.from_grid({"hidden": [8, 16]}, fixed={"optimizer": "adam"}, named={"small": small})
    copy = next(c for c in space if c.params["hidden"] == 16)
    other = next(c for c in space if c.params["hidden"] == 8)
    assert copy.name is None and space.name_of(copy) == "small"
    assert space.name_of(other) is None
