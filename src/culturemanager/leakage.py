"""The one definition of a leak: a text that equals, or shares an n-gram of tokens with, a protected text.

Used by synthesis (a sample leaking an evaluation input of *any* task of the run is dropped; one repeating a
demonstration or copying its material is no sample) and by the benchmark's contamination count, so the two
can never disagree.

Tokens: texts are normalized (`records.normalize_text`: NFKC, case-folded, punctuation to spaces), then split
into words at whitespace, except that Chinese characters, Hiragana and Katakana, written without spaces, are
one token each. Hangul is *not* split per syllable: Korean separates words with spaces, so an 8-syllable
phrase ("도움이 될 것입니다", three words) is three tokens, not an 8-gram.

Run: `python -m culturemanager.leakage "text one" "text two"` prints whether the second leaks the first.
"""

from __future__ import annotations

import sys

import regex

from culturemanager.config import Config
from culturemanager.records import normalize_text

# The scripts written without spaces between words (Chinese, Japanese kana, Thai; U+30FC, the prolonged sound mark,
# is script Common): one token per character here, and character n-grams in the BM25 tokenizer. Hangul is not among
# them for leaks: Korean separates words with spaces.
UNSPACED_SCRIPTS = r"\p{Han}\p{Hiragana}\p{Katakana}\u30fc\p{Thai}"
# Arabic: optional short-vowel marks and tatweel are dropped, hamza-carrying alefs folded to bare alef, so that
# voweled and unvoweled spellings of a word match (the BM25 tokenizer and free-text answer matching).
ARABIC_FOLD = str.maketrans({**{c: None for c in [*range(0x064B, 0x0660), 0x0670, 0x0640]},
                             **{c: "\u0627" for c in (0x0622, 0x0623, 0x0625, 0x0671)}})
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


def evaluation_index(cfg: Config) -> LeakIndex:
    """Every evaluation input of the run, whatever its task: a sample of one task that repeats a test input of
    another is still trained on test data."""
    from culturemanager.stages.spec import evaluation_texts

    return LeakIndex(evaluation_texts(cfg), cfg.synthesis.leakage_ngram)


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
