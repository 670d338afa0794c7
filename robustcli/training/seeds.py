"""Seeds of an instance, derived from (study seed, instance index) and nothing else by default.

Instance j of every candidate then trains on the same sample from the same initial seed (common
random numbers), a resumed study draws exactly what an uninterrupted one would, and a logged
instance can be retrained from its two seeds alone.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

__all__ = ["VARY", "InstanceSeeds", "derive_seeds", "study_seeds"]

# 31 bits: every library we hand seeds to (torch, numpy, xgboost) accepts them
_MASK = (1 << 31) - 1

#: which randomness differs between the instances of a study: both seeds (the paper's, default),
#: only the initialisation (one training sample for all), only the training sample (one initialisation)
VARY = ("both", "init", "data")


@dataclass(frozen=True)
class InstanceSeeds:
    init_seed: int
    data_seed: int


def _hash(key: str) -> int:
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big") & _MASK


def derive_seeds(study_seed: int, instance_index: int, candidate_id: str | None = None) -> InstanceSeeds:
    """``init_seed`` (weights, batch order, any other training randomness) and ``data_seed``
    (which training sample is drawn). ``candidate_id`` mixes the candidate in: then candidates no
    longer share draws (a setting, off by default)."""
    if instance_index < 0:
        raise ValueError(f"instance index must be >= 0, got {instance_index}")
    key = f"robust/{study_seed}/{instance_index}"
    if candidate_id is not None:
        key += f"/{candidate_id}"
    return InstanceSeeds(init_seed=_hash(key + "/init"), data_seed=_hash(key + "/data"))


def study_seeds(study_seed: int, instance_index: int, candidate_id: str | None = None, vary: str = "both") -> InstanceSeeds:
    """The seeds of instance ``instance_index`` of a study: :func:`derive_seeds`, with the seed that
    ``vary`` holds still taken from instance 0 (``vary="init"``: every instance trains on instance
    0's sample; ``vary="data"``: every instance starts from instance 0's initialisation). Sets
    with ``init`` and ``data`` (the variance analysis) split the spread over instances into its two sources."""
    if vary not in VARY:
        raise ValueError(f"vary must be one of {', '.join(VARY)}, got {vary!r}")
    seeds = derive_seeds(study_seed, instance_index, candidate_id)
    if vary == "both":
        return seeds
    first = derive_seeds(study_seed, 0, candidate_id)
    if vary == "init":
        return InstanceSeeds(init_seed=seeds.init_seed, data_seed=first.data_seed)
    return InstanceSeeds(init_seed=first.init_seed, data_seed=seeds.data_seed)
