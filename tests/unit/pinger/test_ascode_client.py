"""The apply/export client: where its token comes from, and how API refusals read."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pingtower.pinger.ascode.client import MonitorsApi, _api_error, find_token


def test_the_token_option_wins_then_the_environment_then_the_admin_token_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "admin-token").write_text("from-file\n")
    monkeypatch.setenv("PINGTOWER_TOKEN", "from-env")
    assert find_token("given", tmp_path) == "given"
    assert find_token(None, tmp_path) == "from-env"
    monkeypatch.delenv("PINGTOWER_TOKEN")
    assert find_token(None, tmp_path) == "from-file"
    monkeypatch.setenv("PINGTOWER_DATA_DIR", str(tmp_path))
    assert find_token(None, None) == "from-file"


def test_without_any_token_there_is_none_and_no_file_is_created(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PINGTOWER_TOKEN", raising=False)
    assert find_token(None, tmp_path) is None
    assert list(tmp_path.iterdir()) == []


def test_a_validation_problem_reads_as_one_line_per_field() -> None:
    problem = {
        "title": "Validation failed",
        "detail": "interval_seconds: must be at least 10",
        "errors": [{"field": "interval_seconds", "message": "must be at least 10"}],
    }
    error = _api_error(422, json.dumps(problem).encode())
    assert error.lines() == ["interval_seconds: must be at least 10"]


def test_a_problem_without_fields_reads_as_status_and_detail() -> None:
    error = _api_error(401, b'{"title": "Unauthorized", "detail": "bad token"}')
    assert error.lines() == ["401 Unauthorized: bad token"]
    assert _api_error(502, b"<html>bad gateway</html>").lines() == [
        "502 Error: <html>bad gateway</html>"
    ]


def test_only_http_urls_are_accepted() -> None:
    with pytest.raises(ValueError, match="http"):
        MonitorsApi("file:///etc/passwd", None)
