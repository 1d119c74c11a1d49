"""Free-text answers scored against several accepted answers: small pure functions, hand-checked in the tests.

- `exact_match(answer, accepted)`: the answer's normal form equals one accepted answer's.
- `soft_match(answer, accepted, language)`: every token of one accepted answer is in the answer.

The normal form (`normalize_answer`) is `records.normalize_text` (Unicode NFKC, case-folded, punctuation and
symbols to spaces) with Arabic's optional vowel marks and tatweel dropped and hamza-carrying alefs folded
(`records.ARABIC_FOLD`, the BM25 tokenizer's folding). Tokens (`answer_tokens`):
- words at whitespace, lemmatized by simplemma (a PyPI lemmatizer, dictionaries of ~50 languages, Arabic,
  Spanish and Turkish among them) when it is installed (`pip install -e '.[scoring]'`) and knows the language;
  "Las ciudades" and "ciudad" then match. `lemmatizer()` says which one scored (recorded in metrics.json);
- a run of a script written without spaces (`records.UNSPACED_SCRIPTS`: Chinese, Japanese kana, Thai) is one
  token matched by containment: "北京" is in "首都是北京。", not in "京北";
- a Hangul word matches a word of the answer that starts with it: Korean attaches particles and endings to
  the word ("서울" in "서울입니다"), and no lemmatizer here knows Korean.

Run: `python -m culturemanager.text.answers LANGUAGE "model answer" "accepted 1" ["accepted 2" ...]`.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from functools import cache

import regex

from culturemanager.records import ARABIC_FOLD, UNSPACED_SCRIPTS, normalize_text

_PIECES = regex.compile(rf"[{UNSPACED_SCRIPTS}]+|[^{UNSPACED_SCRIPTS}\s]+")
_UNSPACED = regex.compile(rf"[{UNSPACED_SCRIPTS}]")
_HANGUL = regex.compile(r"\p{Hangul}")


def exact_match(answer: str, accepted: Sequence[str]) -> bool:
    """The answer, normalized, equals one accepted answer, normalized (no lemmas: "ciudades" is not "ciudad")."""
    a = normalize_answer(answer)
    return bool(a) and any(a == normalize_answer(x) for x in accepted)


def soft_match(answer: str, accepted: Sequence[str], language: str | None = None) -> bool:
    """Some accepted answer has every one of its tokens in the answer (see the module docstring); an accepted
    answer with no token (only punctuation) never matches."""
    have = answer_tokens(answer, language)
    joined = "".join(have)  # unspaced runs are matched across the answer's spaces and punctuation
    words = set(have)
    for acc in accepted:
        need = answer_tokens(acc, language)
        if need and all(_token_in(t, words, joined) for t in need):
            return True
    return False


def normalize_answer(text: str) -> str:
    return normalize_text(text.translate(ARABIC_FOLD))


def answer_tokens(text: str, language: str | None = None) -> list[str]:
    """The normalized text's tokens: unspaced-script runs whole, other words lemmatized where the language has a
    lemmatizer."""
    out = []
    for piece in _PIECES.findall(normalize_answer(text)):
        out.append(piece if _UNSPACED.match(piece) else lemma(piece, language))
    return out


def lemma(word: str, language: str | None) -> str:
    lang = (language or "").lower()
    if lang not in lemma_languages():
        return word
    import simplemma

    return normalize_answer(simplemma.lemmatize(word, lang)) or word


@cache
def lemma_languages() -> frozenset[str]:
    """The ISO 639-1 codes the installed simplemma has a dictionary for (empty without simplemma)."""
    try:
        from simplemma.strategies.dictionaries.dictionary_factory import SUPPORTED_LANGUAGES
    except ImportError:
        return frozenset()
    return frozenset(SUPPORTED_LANGUAGES)


def lemmatizer(language: str | None) -> str | None:
    """"simplemma X.Y.Z" when answers in `language` are lemmatized, else None (what metrics.json records)."""
    if (language or "").lower() not in lemma_languages():
        return None
    from importlib.metadata import version

    return f"simplemma {version('simplemma')}"


def _token_in(token: str, words: set[str], joined: str) -> bool:
    if _UNSPACED.match(token):
        return token in joined
    if token in words:
        return True
    return bool(_HANGUL.match(token)) and any(w.startswith(token) for w in words)


def main() -> None:
    language, answer, accepted = sys.argv[1], sys.argv[2], sys.argv[3:]
    print(f"exact_match {exact_match(answer, accepted)}  soft_match {soft_match(answer, accepted, language)}  "
          f"tokens {answer_tokens(answer, language)}  lemmatizer {lemmatizer(language)}")


if __name__ == "__main__":
    main()
