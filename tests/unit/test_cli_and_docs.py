"""The command line documents itself, refuses bad settings clearly, and the published AsyncAPI
document is the one the contracts generate."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pingtower.cli import cli
from pingtower.common.asyncapi import document
from pingtower.common.events import CONTRACTS

REPO = Path(__file__).resolve().parents[2]
runner = CliRunner()


def test_help_lists_every_command() -> None:
    result = runner.invoke(cli, ["--help"])
    assert result.exit_code == 0
    for command in ("up", "serve", "migrate", "apply", "export", "settings", "asyncapi", "version"):
        assert command in result.output


def test_settings_command_documents_every_setting() -> None:
    result = runner.invoke(cli, ["settings"])
    assert result.exit_code == 0
    assert "PINGTOWER_BROKER_URL" in result.output
    assert "PINGTOWER_DATA_DIR" in result.output


def test_a_bad_setting_stops_with_the_variable_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PINGTOWER_PORT", "not-a-port")
    result = runner.invoke(cli, ["up"])
    assert result.exit_code == 2
    assert "PINGTOWER_PORT" in result.output


def test_serve_refuses_the_distributed_mode_without_a_broker(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("PINGTOWER_BROKER_URL", raising=False)
    result = runner.invoke(cli, ["serve", "evaluator"])
    assert result.exit_code == 2
    assert "PINGTOWER_BROKER_URL" in result.output


def test_serve_refuses_an_unknown_role(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PINGTOWER_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672/")
    result = runner.invoke(cli, ["serve", "janitor"])
    assert result.exit_code == 2
    assert "unknown role" in result.output


def test_published_asyncapi_document_matches_the_contracts() -> None:
    published = json.loads((REPO / "docs" / "asyncapi.json").read_text())
    assert published == json.loads(json.dumps(document())), (
        "docs/asyncapi.json is stale: run `pingtower asyncapi > docs/asyncapi.json`"
    )
    for event_type, _version in CONTRACTS:
        assert event_type in published["channels"]
