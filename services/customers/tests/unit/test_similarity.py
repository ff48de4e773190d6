"""Name similarity for the duplicate check."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crm_customers.domain.names import normalise_name
from crm_customers.domain.similarity import name_similarity, rank_candidates

THRESHOLD = 85.0


def test_identical_names_score_100() -> None:
    assert name_similarity("华为", "华为") == 100.0
    assert name_similarity("acme", "acme") == 100.0


def test_short_name_inside_a_fuller_one_scores_high() -> None:
    assert name_similarity("华为", "华为技术") >= 90.0
    assert name_similarity("腾讯科技", "腾讯科技深圳") >= 90.0
    assert name_similarity("阿里巴巴", "阿里巴巴中国") >= 90.0


def test_generic_word_inside_a_long_name_does_not() -> None:
    score = name_similarity("科技", "北京字节跳动科技")
    assert score < THRESHOLD
    assert score < 100.0


def test_containment_never_reaches_100() -> None:
    assert name_similarity("华为", "华为技术") < 100.0


def test_reordered_latin_words_score_high() -> None:
    assert name_similarity("bank of china", "china bank of") >= THRESHOLD


def test_typo_scores_high() -> None:
    assert name_similarity("北京字节跳动科技", "北京字节跳冻科技") >= THRESHOLD
    assert name_similarity("alibaba", "alibabba") >= THRESHOLD


def test_unrelated_names_score_low() -> None:
    assert name_similarity("华为", "中兴") < 50.0
    assert name_similarity("acme", "globex") < 50.0


def test_single_character_containment_is_ignored() -> None:
    assert name_similarity("华", "华为技术") < THRESHOLD


def test_empty_names_match_nothing() -> None:
    assert name_similarity("", "") == 0.0
    assert name_similarity("", "华为") == 0.0


def test_works_on_normalised_names_end_to_end() -> None:
    a = normalise_name("华为技术有限公司")
    b = normalise_name("华为技术 (有限公司)")
    assert name_similarity(a, b) == 100.0
    assert name_similarity(normalise_name("华为"), a) >= THRESHOLD


_NAMES = st.text(
    alphabet=st.sampled_from([*"abcdexyz ", "华", "为", "技", "术", "科", "北", "京"]),
    max_size=12,
)


@given(_NAMES, _NAMES)
def test_similarity_is_symmetric_and_bounded(a: str, b: str) -> None:
    score = name_similarity(a, b)
    assert 0.0 <= score <= 100.0
    assert score == pytest.approx(name_similarity(b, a))


@given(_NAMES.filter(bool))
def test_a_name_is_most_similar_to_itself(a: str) -> None:
    assert name_similarity(a, a) == 100.0


CANDIDATES = [
    ("c1", "华为技术"),
    ("c2", "中兴通讯"),
    ("c3", "华为"),
    ("c4", "华为终端"),
    ("c5", "北京字节跳动科技"),
]


def test_rank_candidates_best_first_above_threshold() -> None:
    ranked = rank_candidates("华为", CANDIDATES)
    assert [cid for cid, _ in ranked] == ["c3", "c1", "c4"]
    assert ranked[0] == ("c3", 100.0)
    assert all(score >= THRESHOLD for _, score in ranked)


def test_rank_candidates_respects_limit_and_threshold() -> None:
    assert [cid for cid, _ in rank_candidates("华为", CANDIDATES, limit=1)] == ["c3"]
    assert rank_candidates("华为", CANDIDATES, threshold=100.0) == [("c3", 100.0)]
    assert rank_candidates("华为", CANDIDATES, limit=0) == []
    assert rank_candidates("科技", CANDIDATES) == []


def test_rank_candidates_keeps_input_order_for_ties() -> None:
    ranked = rank_candidates("华为", [("old", "华为技术"), ("new", "华为终端")])
    assert [cid for cid, _ in ranked] == ["old", "new"]


def test_rank_candidates_reports_each_id_once_at_its_best() -> None:
    ranked = rank_candidates("华为", [("a", "华为技术"), ("b", "华为终端"), ("a", "华为")])
    assert [cid for cid, _ in ranked] == ["a", "b"]
    assert ranked[0] == ("a", 100.0)


def test_rank_candidates_accepts_any_iterable() -> None:
    ranked = rank_candidates("华为", (pair for pair in CANDIDATES))
    assert ranked[0][0] == "c3"
    assert rank_candidates("华为", []) == []


def test_rank_candidates_scores_match_name_similarity() -> None:
    for cid, score in rank_candidates("华为", CANDIDATES, threshold=0.0):
        name = dict(CANDIDATES)[cid]
        assert score == pytest.approx(name_similarity("华为", name))
