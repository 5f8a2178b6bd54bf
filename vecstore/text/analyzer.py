"""Text to terms: Unicode word splitting, casefolding, stopwords and Snowball stemming.

The same :class:`Analyzer` turns stored text and query text into terms, so a query term matches
the stored term whatever the inflection (``"running"`` and ``"runs"`` are both ``"run"``).

- the text is casefolded (``"Straße"`` -> ``"strasse"``: lowercasing that also folds what
  lowercasing leaves apart) and NFKC-normalised (composed accents, ``"ﬁ"`` -> ``"fi"``,
  full-width letters -> ASCII), so a query matches however its characters were encoded;
- words are maximal runs of Unicode letters, digits, combining marks and ``_``, so ``"naïve
  café"`` is two words, ``"हिन्दी"`` one, and ``"IL-6"`` is ``"il"`` and ``"6"``; scripts written
  without spaces (Chinese, Japanese, Thai) come out as whole runs, not words;
- words of the language's stopword list (:mod:`.stopwords`) are dropped; only English and a
  dozen other languages have a list;
- the rest are stemmed with the language's Snowball stemmer (PyStemmer).

>>> Analyzer("english").terms("The runners were running; a runner runs.")
['runner', 'were', 'run', 'runner', 'run']
"""

from __future__ import annotations

import re
import threading
import unicodedata

from ..config import KEYWORD_LANGUAGES
from ..errors import InvalidArgumentError, MissingDependencyError
from ._marks import MARKS
from .stopwords import STOPWORDS

ANALYZER_VERSION = 1
"""Bumped when the terms the analyzer makes from a text change: postings written by another
version are then rebuilt rather than mixed with new ones."""

_STEMS: dict[str, dict[str, str]] = {}  # language -> word -> stem, shared by the process
_STEM_CACHE_WORDS = 500_000  # then words not seen yet are stemmed each time
_WORD = re.compile(f"\\w+(?:[{MARKS}]+\\w*)*")
# ASCII text holds no marks and needs no normalising: its word characters are [A-Za-z0-9_],
# and mapping every other byte to a space then splitting finds the same words as \w+, about
# twice as fast (tests/unit/test_text_analyzer.py checks they agree)
_ASCII_SPACES = bytes(i if chr(i).isascii() and (chr(i).isalnum() or chr(i) == "_") else 32
                      for i in range(256))


class Analyzer:
    """Splits, casefolds, drops stopwords and stems, for one ``language`` (``"none"``: no
    stopwords, no stemming). Thread-safe: each thread gets its own stemmer."""

    def __init__(self, language: str = "english") -> None:
        lang = language.strip().lower() if isinstance(language, str) else language
        if lang not in (*KEYWORD_LANGUAGES, "none"):
            raise InvalidArgumentError(
                f"unknown keyword language {language!r}; expected one of "
                f"{', '.join(repr(x) for x in (*KEYWORD_LANGUAGES, 'none'))}")
        self.language: str = lang
        self.stopwords: frozenset[str] = frozenset(
            unicodedata.normalize("NFKC", w.casefold()) for w in STOPWORDS.get(lang, "").split())
        self._local = threading.local()
        if lang != "none":
            self._stemmer()  # fail now, not on the first write, when PyStemmer is missing

    def __repr__(self) -> str:
        return f"Analyzer({self.language!r})"

    @property
    def fingerprint(self) -> str:
        """Identifies the terms this analyzer makes: stored with postings, checked on read."""
        return self.fingerprint_for(self.language)

    @staticmethod
    def fingerprint_for(language: str) -> str:
        return f"vecstore-analyzer/{ANALYZER_VERSION}/{language}"

    def _stemmer(self) -> object:
        stemmer = getattr(self._local, "stemmer", None)
        if stemmer is None:
            try:
                import Stemmer
            except ImportError as exc:  # a core dependency; only a broken install lacks it
                raise MissingDependencyError(
                    "keyword search stems with PyStemmer, which is not installed; "
                    "pip install PyStemmer (or use language=\"none\")") from exc
            stemmer = Stemmer.Stemmer(self.language)
            self._local.stemmer = stemmer
        return stemmer

    @staticmethod
    def split(text: str) -> list[str]:
        """The words of ``text``, casefolded and normalised (stopwords kept, not stemmed)."""
        if text.isascii():
            return text.encode("ascii").lower().translate(_ASCII_SPACES).decode("ascii").split()
        return _WORD.findall(unicodedata.normalize("NFKC", text.casefold()))

    def words(self, text: str) -> list[str]:
        """The words of ``text`` casefolded and normalised, stopwords dropped, not stemmed."""
        words = self.split(text)
        if self.stopwords:
            stop = self.stopwords
            words = [w for w in words if w not in stop]
        return words

    def stem(self, words: list[str]) -> list[str]:
        """Each word's stem (the words themselves for language ``"none"``). Stems are kept
        per language and process: most words of a batch were stemmed before."""
        if self.language == "none" or not words:
            return words
        cache = _STEMS.setdefault(self.language, {})  # only ever grows: safe to read unlocked
        new = [w for w in words if w not in cache]
        if not new:
            return [cache[w] for w in words]
        local = dict(zip(new, self._stemmer().stemWords(new), strict=True))  # type: ignore[attr-defined]
        if len(cache) < _STEM_CACHE_WORDS:
            cache.update(local)
        return [local[w] if w in local else cache[w] for w in words]

    def terms(self, text: str) -> list[str]:
        """The terms of ``text``, in order (with repeats)."""
        return self.stem(self.words(text))
