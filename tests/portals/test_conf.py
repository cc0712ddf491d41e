"""The app's settings: declared once (portals/conf.py), documented, read only through app_settings."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import environ
import pytest

from portals.conf import AppSettings, app_settings, setting_name, settings_doc, settings_table

ROOT = Path(__file__).resolve().parents[2]
CODE = ("bitrix_app", "portals", "events", "examples", "sandbox", "bench")


def test_the_configuration_page_is_the_declaration():
    text = (ROOT / "docs" / "configuration.md").read_text()
    assert settings_table() in text  # regenerate with `python -m portals.conf`
    documented = re.findall(r"^\| `(BITRIX24_[A-Z0-9_]+)` \|", text, re.MULTILINE)
    assert documented == [name for name, _, _ in settings_doc()]


def test_env_example_names_exactly_the_declared_settings():
    text = (ROOT / ".env.example").read_text()
    mentioned = set(re.findall(r"^#? ?(BITRIX24_[A-Z0-9_]+)=", text, re.MULTILINE)) - {"BITRIX24_SANDBOX"}
    assert mentioned == {name for name, _, _ in settings_doc()}


def _raw_reads(path: Path, *, root: Path = ROOT) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    return [
        f"{path.relative_to(root)}:{node.lineno} settings.{node.attr}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and node.attr.startswith("BITRIX24_")
        and isinstance(node.value, ast.Name)
        and node.value.id == "settings"
    ]


def test_no_code_reads_a_bitrix24_setting_except_through_app_settings():
    reads = [
        read for folder in CODE for path in sorted((ROOT / folder).rglob("*.py")) for read in _raw_reads(path)
    ]
    assert reads == []


def test_the_scan_sees_a_raw_read(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("from django.conf import settings\nX = settings.BITRIX24_APP_URL\n")
    assert _raw_reads(sample, root=tmp_path) == ["sample.py:2 settings.BITRIX24_APP_URL"]


def test_values_are_typed_from_the_environment(monkeypatch):
    monkeypatch.setenv("BITRIX24_EVENT_SHARDS", "3")
    monkeypatch.setenv("BITRIX24_ALLOW_HTTP", "1")
    monkeypatch.setenv("BITRIX24_OAUTH_SERVERS", "https://a.example/,https://b.example/")
    monkeypatch.setenv("BITRIX24_EVENT_RETRY_BASE_SECONDS", "0.5")
    loaded = AppSettings.from_env(environ.Env())
    assert loaded.event_shards == 3
    assert loaded.allow_http is True
    assert loaded.oauth_servers == ("https://a.example/", "https://b.example/")
    assert loaded.event_retry_base_seconds == 0.5
    assert loaded.as_django_settings()["BITRIX24_EVENT_SHARDS"] == 3


@pytest.mark.parametrize(
    ("name", "value", "reason"),
    [
        ("BITRIX24_DEFAULT_PLAN", "gold", "must be one of standard, enterprise"),
        ("BITRIX24_EVENT_MAX_BYTES", "-1", "BITRIX24_EVENT_MAX_BYTES must not be negative"),
        ("BITRIX24_EVENT_SHARDS", "many", "invalid literal"),
    ],
)
def test_a_bad_value_stops_the_start(monkeypatch, name, value, reason):
    monkeypatch.setenv(name, value)
    with pytest.raises(ValueError, match=reason):
        AppSettings.from_env(environ.Env())


def test_app_settings_follow_django_settings_changes(settings):
    before = app_settings.event_max_bytes
    settings.BITRIX24_EVENT_MAX_BYTES = before + 1
    assert app_settings.event_max_bytes == before + 1
    settings.BITRIX24_OAUTH_SERVERS = ["https://only.example/"]
    assert app_settings.oauth_servers == ("https://only.example/",)


def test_every_setting_has_a_prefixed_name_and_a_meaning():
    for name, _, meaning in settings_doc():
        assert name.startswith("BITRIX24_") and name == name.upper()
        assert meaning.endswith(".")
    assert setting_name("event_max_bytes") == "BITRIX24_EVENT_MAX_BYTES"
