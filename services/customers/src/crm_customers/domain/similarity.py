"""How alike two normalised customer names are, for the duplicate check (查重).

Inputs are keys from ``names.normalise_name``; no processing happens here.

Choice of scorer. Chinese names have no spaces, so token-based scorers see a
single token and degrade to plain ``ratio``; Latin names need word order to
matter less ("bank of china" / "china bank of"). Neither alone recognises the
most common duplicate, a short name inside a fuller one ("华为" / "华为技术"),
for which ``ratio`` gives only 67. ``partial_ratio`` and ``token_set_ratio``
do, but they give 100 to *any* substring, so "科技" ("technology") would match
every "...科技" company. Hence the score is the maximum of

* ``fuzz.ratio`` and ``fuzz.token_sort_ratio`` (whole-string comparisons), and
* ``fuzz.partial_ratio`` and ``fuzz.token_set_ratio`` scaled by a length guard:
  ``min(0.95, 0.5 + shorter/longer)``. Containment is strong evidence when the
  shorter name covers a good part of the longer one and weak when it covers
  little: "华为" in "华为技术" (2/4) scores 95, "科技" in "北京字节跳动科技" (2/8)
  scores 75, under the default threshold of 85. The cap keeps 100 for equal
  strings only.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from rapidfuzz import fuzz, process

__all__ = ["name_similarity", "rank_candidates"]

_MAX_CONTAINMENT_WEIGHT: Final = 0.95
_CONTAINMENT_BASE: Final = 0.5
# A single character contained in a name says nothing about identity.
_MIN_CONTAINED_LENGTH: Final = 2


def _containment_weight(a: str, b: str) -> float:
    shorter, longer = sorted((len(a), len(b)))
    if shorter < _MIN_CONTAINED_LENGTH:
        return 0.0
    return min(_MAX_CONTAINMENT_WEIGHT, _CONTAINMENT_BASE + shorter / longer)


def name_similarity(a_normalised: str, b_normalised: str) -> float:
    """Return a similarity in 0..100 between two normalised names; symmetric."""
    if not a_normalised or not b_normalised:
        # rapidfuzz scores two empty strings 100; for us "no name" matches nothing.
        return 0.0
    if a_normalised == b_normalised:
        return 100.0
    whole = max(
        fuzz.ratio(a_normalised, b_normalised),
        fuzz.token_sort_ratio(a_normalised, b_normalised),
    )
    weight = _containment_weight(a_normalised, b_normalised)
    if weight == 0.0:
        return whole
    contained = max(
        fuzz.partial_ratio(a_normalised, b_normalised),
        fuzz.token_set_ratio(a_normalised, b_normalised),
    )
    return max(whole, contained * weight)


def _scorer(a: str, b: str, *, score_cutoff: float | None = None, **_: object) -> float:
    # process.extract passes score_cutoff (and may pass other keywords); the
    # cut-off is applied by extract itself, so it is not needed here.
    return name_similarity(a, b)


def rank_candidates(
    name_normalised: str,
    candidates: Iterable[tuple[str, str]],
    threshold: float = 85.0,
    limit: int = 10,
) -> list[tuple[str, float]]:
    """Return ``(id, score)`` for candidates scoring at least ``threshold``, best first.

    ``candidates`` are ``(id, normalised_name)`` pairs. Ties keep the order the
    candidates came in, so callers that pass oldest first get "first entered
    owns" for free. An id that appears twice is reported at its best score.
    """
    if limit <= 0:
        return []
    ids: list[str] = []
    names: list[str] = []
    for candidate_id, candidate_name in candidates:
        ids.append(candidate_id)
        names.append(candidate_name)
    # Ask for every match over the threshold, then de-duplicate ids, so one id
    # listed under several names cannot crowd others out of the limit.
    matches = process.extract(
        name_normalised,
        names,
        scorer=_scorer,
        score_cutoff=threshold,
        limit=None,
    )
    ranked: list[tuple[str, float]] = []
    seen: set[str] = set()
    for _name, score, index in matches:
        candidate_id = ids[index]
        if candidate_id in seen:
            continue
        seen.add(candidate_id)
        ranked.append((candidate_id, score))
        if len(ranked) == limit:
            break
    return ranked
