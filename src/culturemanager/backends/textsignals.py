"""What a text's characters say about where it comes from, without reading its meaning: the language (py3langid's
probability for every language it knows) and the writing systems its letters belong to.

The embedding router (backends/embedrouter.py) reads both: a culture's language (`[[cultures]] language`) is strong
evidence for the culture, and letters in a script that none of a run's examples use (a Bengali text in a run of
Arabic, Chinese, Spanish and Turkish) are strong evidence for "Others".

- `LanguageId().probs(texts)`: [len(texts), len(codes)] probabilities over ISO 639-1 codes (py3langid's labels
  without one are folded into their macrolanguage: Egyptian Arabic into "ar", Cantonese into "zh"); "zxx" (no
  linguistic content) is dropped, so a base64 blob spreads its mass instead of claiming a language.
- `script_counts(text)`: letters per script (the first word of each letter's Unicode name: LATIN, ARABIC,
  BENGALI, CJK, HANGUL, ...).

Run: `python -m culturemanager.backends.textsignals "some text"` prints its likeliest languages and its scripts.
"""

from __future__ import annotations

import sys
import threading
import unicodedata
from collections import Counter

import numpy as np

# py3langid labels without an ISO 639-1 code, mapped to their macrolanguage where there is one.
TO_ISO639_1 = {"arz": "ar", "ary": "ar", "yue": "zh", "wuu": "zh", "gug": "gn", "uzs": "uz", "sdh": "ku",
               "kik": "ki", "fuv": "ff"}
NO_LANGUAGE = "zxx"


class LanguageId:
    """py3langid's full distribution over languages, by ISO 639-1 code (loaded on first use, ~0.3 s)."""

    _lock = threading.Lock()

    def __init__(self) -> None:
        self._identifier = None
        self.codes: list[str] = []
        self._fold: np.ndarray | None = None  # [labels, codes] 0/1: which code each py3langid label counts for

    def probs(self, texts: list[str], max_chars: int = 1000) -> np.ndarray:
        ident = self._load()
        out = np.zeros((len(texts), len(self.codes)), dtype=np.float32)
        labels = self._labels
        for i, text in enumerate(texts):
            raw = np.zeros(len(labels), dtype=np.float32)
            for label, p in ident.rank(text[:max_chars]):
                raw[labels[label]] = p
            out[i] = raw @ self._fold
        return out

    def _load(self):
        with self._lock:
            if self._identifier is None:
                from py3langid.langid import MODEL_FILE, LanguageIdentifier

                ident = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
                labels = ident.labels  # distinct (script aliases such as srl -> sr share one)
                self.codes = sorted({TO_ISO639_1.get(x, x) for x in labels if x != NO_LANGUAGE})
                fold = np.zeros((len(labels), len(self.codes)), dtype=np.float32)
                for i, x in enumerate(labels):
                    if x != NO_LANGUAGE:
                        fold[i, self.codes.index(TO_ISO639_1.get(x, x))] = 1.0
                self._labels = {x: i for i, x in enumerate(labels)}
                self._fold = fold
                self._identifier = ident
        return self._identifier


def script_counts(text: str, max_chars: int = 1000) -> Counter:
    """Letters per script in the text's first `max_chars` characters (digits, punctuation and emoji count for
    none)."""
    counts: Counter = Counter()
    for ch in text[:max_chars]:
        if ch.isalpha():
            name = unicodedata.name(ch, "")
            if name:
                counts[name.split(" ", 1)[0]] += 1
    return counts


def common_scripts(counts: list[Counter], min_share: float = 0.001) -> set[str]:
    """The scripts that make up at least `min_share` of all letters of these texts (a stray letter does not make a
    script "seen")."""
    total: Counter = Counter()
    for c in counts:
        total.update(c)
    n = sum(total.values())
    return {s for s, k in total.items() if n and k / n >= min_share}


def unseen_share(counts: list[Counter], known: set[str]) -> np.ndarray:
    """Per text, the share of its letters in scripts outside `known` (0 for a text without letters)."""
    out = np.zeros(len(counts), dtype=np.float32)
    for i, c in enumerate(counts):
        n = sum(c.values())
        if n:
            out[i] = sum(k for s, k in c.items() if s not in known) / n
    return out


def main() -> None:
    text = " ".join(sys.argv[1:])
    lid = LanguageId()
    p = lid.probs([text])[0]
    top = np.argsort(-p)[:5]
    print("languages:", ", ".join(f"{lid.codes[i]} {p[i]:.3f}" for i in top))
    print("scripts:", dict(script_counts(text)))


if __name__ == "__main__":
    main()
