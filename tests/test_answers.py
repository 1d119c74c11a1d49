"""Free-text scoring (answers.py), worked out by hand in Latin, Arabic, CJK, Hangul and Thai text."""

import pytest

from culturemanager.text.answers import answer_tokens, exact_match, lemmatizer, normalize_answer, soft_match


def test_normal_form_is_nfkc_casefolded_without_punctuation():
    assert normalize_answer("  ¡La PAELLA, valenciana!  ") == "la paella valenciana"
    assert normalize_answer("ＰＡＥＬＬＡ") == "paella"  # fullwidth letters are NFKC-folded
    # Arabic: the vowel marks (fatha, damma, ...) and tatweel go, أ/إ/آ become ا
    assert normalize_answer("الرِّيَاض") == normalize_answer("الرياض") == "الرياض"
    assert normalize_answer("أحمد") == "احمد"


def test_exact_match_needs_the_whole_normal_form():
    assert exact_match("Madrid.", ["madrid", "Villa de Madrid"])
    assert not exact_match("La capital es Madrid", ["Madrid"])  # soft match's job
    assert not exact_match("", [""])  # an empty answer is never right
    assert exact_match("北京。", ["北京"])


@pytest.mark.skipif(lemmatizer("es") is None, reason="simplemma is not installed")
def test_soft_match_latin_lemmatized():
    # "ciudades" -> ciudad, "las" -> el: the accepted answer's lemmas {el, ciudad, santo} are all there
    assert soft_match("Las ciudades santas", ["la ciudad santa"], "es")
    assert not exact_match("Las ciudades santas", ["la ciudad santa"])
    assert soft_match("Es Madrid, sin duda", ["Madrid"], "es")
    assert not soft_match("Es Barcelona", ["Madrid", "Villa de Madrid"], "es")
    # every token of one accepted answer: "Villa de Madrid" needs villa and de too
    assert not soft_match("Madrid", ["Villa de Madrid"], "es")
    # Turkish: "Ankara'da" is "ankara da" after punctuation, "başkenti" lemmatizes to başkent
    assert soft_match("Başkenti Ankara'da", ["başkent Ankara"], "tr")


def test_soft_match_without_a_lemmatizer_compares_words():
    assert soft_match("the city of Rome", ["Rome"], None)
    assert not soft_match("Romeo", ["Rome"], None)  # words, not substrings, in spaced scripts
    assert not soft_match("las ciudades", ["ciudad"], None)


def test_soft_match_arabic():
    # voweled accepted answer, unvoweled model answer, with a prefix word and punctuation around it
    assert soft_match("العاصمة هي الرياض.", ["الرِّيَاض"], "ar")
    assert not soft_match("العاصمة هي جدة", ["الرياض"], "ar")


def test_soft_match_cjk_by_character_containment():
    assert soft_match("中国的首都是北京。", ["北京", "北京市"])
    assert soft_match("首都は東京です", ["東京"])  # Japanese: Han and kana, no spaces
    assert not soft_match("京北", ["北京"])  # containment of the run, not of its characters
    assert not soft_match("上海", ["北京", "北京市"])
    assert answer_tokens("北京 Beijing") == ["北京", "beijing"]


def test_soft_match_thai_by_containment():
    assert soft_match("เมืองหลวงคือกรุงเทพ", ["กรุงเทพ"])
    assert not soft_match("เชียงใหม่", ["กรุงเทพ"])


def test_soft_match_hangul_words_take_particles():
    # Korean separates words by spaces but attaches particles and endings: 서울 matches 서울입니다 / 서울이
    assert soft_match("수도는 서울입니다", ["서울"], "ko")
    assert soft_match("김치를 먹어요", ["김치"], "ko")
    assert not soft_match("부산입니다", ["서울"], "ko")
    assert not soft_match("입니다 서", ["서울"], "ko")  # the word must start with the whole accepted word


def test_no_accepted_answer_or_only_punctuation_never_matches():
    assert not soft_match("Madrid", [])
    assert not soft_match("Madrid", ["..."])
    assert not soft_match("", ["Madrid"])
