"""The keyword analyzer: Unicode words, casefolding, stopwords, Snowball stemming."""

from __future__ import annotations

import threading
import unicodedata

import numpy as np
import pytest

import vecstore
from vecstore.text import Analyzer
from vecstore.text.analyzer import _WORD


def test_english_stems_and_drops_stopwords():
    a = Analyzer("english")
    assert a.terms("The runners were running; a runner runs.") == ["runner", "were", "run", "runner", "run"]
    assert a.terms("the and of") == []
    assert a.terms("Connections CONNECTED connecting") == ["connect"] * 3


def test_case_and_unicode_forms_fold_to_the_same_terms():
    a = Analyzer("english")
    assert a.terms("STRASSE") == a.terms("Straße") == a.terms("strasse")
    assert a.terms("ﬁsh") == a.terms("fish")  # a ligature (NFKC)
    assert a.terms("ＡＢＣ") == a.terms("abc")  # full-width letters
    composed, decomposed = "café", unicodedata.normalize("NFD", "café")
    assert composed != decomposed and a.terms(composed) == a.terms(decomposed)


def test_words_keep_their_combining_marks():
    """Python's \\w leaves marks out: Devanagari vowel signs would cut every word."""
    assert Analyzer("none").terms("हिन्दी भाषा") == ["हिन्दी", "भाषा"]
    assert len(Analyzer("hindi").terms("हिन्दी भाषा")) == 2
    assert Analyzer("none").terms("IL-6 e.g. x_y") == ["il", "6", "e", "g", "x_y"]


def test_ascii_text_takes_the_fast_path_with_the_same_words(rng):
    a = Analyzer("none")
    alphabet = np.array(list("abcXYZ019_ -.,'\"!\t\n"))
    for _ in range(300):
        text = "".join(rng.choice(alphabet, size=int(rng.integers(0, 40))))
        assert a.words(text) == _WORD.findall(unicodedata.normalize("NFKC", text.casefold()))


def test_languages():
    assert Analyzer("german").terms("Die Häuser und das Haus") == ["haus", "haus"]
    assert Analyzer("french").terms("les chevaux") == ["cheval"]
    assert Analyzer("none").terms("The Running") == ["the", "running"]
    assert Analyzer("finnish").stopwords == frozenset()  # stems, no stopword list
    with pytest.raises(vecstore.InvalidArgumentError, match="unknown keyword language 'elvish'.*'english'"):
        Analyzer("elvish")


def test_threads_share_an_analyzer():
    a = Analyzer("english")
    text = "running runners ran " * 200
    want = a.terms(text)
    got: list[list[str]] = []

    def work() -> None:
        for _ in range(50):
            got.append(a.terms(text))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == 200 and all(g == want for g in got)
