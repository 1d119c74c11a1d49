"""The one definition of a leak: a text that equals, or shares an n-gram of tokens with, a protected text.

Used by synthesis (a sample leaking an evaluation input of *any* task of the run is dropped; one repeating a
demonstration or copying its material is no sample) and by the benchmark's contamination count, so the two
can never disagree.

Tokens: texts are normalized (`records.normalize_text`: NFKC, case-folded, punctuation to spaces), then split
into words at whitespace, except that Chinese characters, Hiragana and Katakana, written without spaces, are
one token each. Hangul is *not* split per syllable: Korean separates words with spaces, so an 8-syllable
phrase ("도움이 될 것입니다", three words) is three tokens, not an 8-gram.

Run: `python -m culturemanager.text.leakage "text one" "text two"` prints whether the second leaks the first.
"""

from __future__ import annotations

import sys

import regex

from culturemanager.records import UNSPACED_SCRIPTS, normalize_text

_UNSPACED_SPLIT = regex.compile(rf"[{UNSPACED_SCRIPTS}]|[^{UNSPACED_SCRIPTS}]+")


class LeakIndex:
    """Normalized protected texts and all their n-grams: an equal text, or one shared n-gram, is a leak.
    `ngram_only` texts count for shared n-grams but not for equality (a sample may not copy a stretch of its
    material, but the material itself is no input)."""

    def __init__(self, texts: list[str], n: int, ngram_only: list[str] | None = None):
        self.n = n
        self.exact = {normalize_text(t) for t in texts}
        self.grams = {g for t in texts + (ngram_only or []) for g in ngrams(leak_tokens(t), n)}

    def leaks(self, text: str) -> bool:
        return normalize_text(text) in self.exact or any(g in self.grams for g in ngrams(leak_tokens(text), self.n))


def leak_tokens(text: str) -> list[str]:
    """Words at whitespace; each character of an unspaced script (Chinese, Japanese kana) is a word of its own."""
    return [t for word in normalize_text(text).split() for t in _UNSPACED_SPLIT.findall(word)]


def ngrams(tokens: list[str], n: int) -> set[tuple[str, ...]]:
    return {tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)}


def main() -> None:
    protected, text = sys.argv[1], sys.argv[2]
    n = int(sys.argv[3]) if len(sys.argv) > 3 else 8
    print(f"tokens: {leak_tokens(text)}\nleaks: {LeakIndex([protected], n).leaks(text)}")


if __name__ == "__main__":
    main()
