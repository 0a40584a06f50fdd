"""Every case of the misuse catalogue (tests/misuse.py) raises the exception it names, with the words that name
the problem and the fix; docs/errors.md shows what fulmen prints for each."""

from __future__ import annotations

import warnings

import pytest

from tests import misuse


def test_there_are_at_least_sixty():
    assert len(misuse.CASES) >= 60


@pytest.mark.parametrize("case", misuse.CASES, ids=[f"{c.area}: {c.what}" for c in misuse.CASES])
def test_misuse(case, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(case.error) as caught:
            case.run()
    text = str(caught.value)
    for words in case.words:
        assert words in text, f"{words!r} not in: {text}"


def test_the_table_in_docs_errors_is_current():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = misuse.table()
    assert expected in misuse.DOC.read_text(), "run: python tests/misuse.py"
