"""What a command printed: the checks every bad-input test makes."""
from __future__ import annotations


def one_error(capsys) -> str:
    """The one line a command printed on stderr (the test fails if there are more)."""
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err
