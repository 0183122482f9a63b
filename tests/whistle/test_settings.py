"""Typed settings (whistle/config.py): one frozen dataclass per config.toml section, checked
when config.toml is read; `whistle check` lists every problem, a start stops on the first
look with one line per problem and exit code 2."""

from __future__ import annotations

import dataclasses

import pytest

from tests.startup_kit import REPO, clean_env, without_section, write_config
from tests.test_bot_kit import model_path  # noqa: F401  (the session's trained model)
from tests.whistle.test_startup import assert_stopped_cleanly, created_files, whistle
from whistle.config import (
    SECTIONS,
    ClassifierSettings,
    ConfigError,
    ConversationSettings,
    DeliverySettings,
    FollowupSettings,
    load_settings,
    read_settings,
    unknown_settings,
)

SHIPPED = (REPO / "config.toml").read_text(encoding="utf-8")


def config_with(tmp_path, *replacements: tuple[str, str], extra: str = ""):
    """The shipped config.toml with `old → new` replacements (each must match) and `extra`
    appended, written into tmp_path."""
    text = SHIPPED
    for old, new in replacements:
        assert old in text, old
        text = text.replace(old, new, 1)
    return write_config(tmp_path, text=text + extra)


def test_the_shipped_config_is_clean_and_typed():
    settings, problems = read_settings(REPO / "config.toml", env={})
    assert problems == []
    assert unknown_settings(settings.config_path) == []
    assert settings.conversation.idle_timeout_minutes == 30.0
    assert isinstance(settings.conversation.idle_timeout_minutes, float)  # TOML's 30, typed
    assert settings.telegram.triage_chat_id == -1000000000001
    assert settings.district.bbox == (112.55, 28.15, 113.05, 28.60)
    assert settings.delivery.backoff_seconds == (5.0, 15.0, 60.0, 300.0, 900.0, 3600.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.followup.poll_seconds = 1  # type: ignore[misc]


def test_a_missing_optional_section_takes_the_defaults(tmp_path):
    text = SHIPPED
    for section in ("[conversation]", "[followup]", "[delivery]", "[classifier]"):
        text = without_section(text, section)
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    settings = load_settings(path, env={})
    assert settings.conversation == ConversationSettings()
    assert settings.followup == FollowupSettings()
    assert settings.delivery == DeliverySettings()
    assert settings.classifier == ClassifierSettings()
    # The defaults are what config.toml ships, so leaving a section out changes nothing.
    shipped = load_settings(REPO / "config.toml", env={})
    assert settings.conversation == shipped.conversation
    assert settings.followup == shipped.followup
    assert settings.delivery == shipped.delivery
    assert settings.classifier.confidence_threshold == shipped.classifier.confidence_threshold
    assert settings.model_path == tmp_path / "var" / "model.npz"  # next to config.toml


def test_an_unknown_key_is_named_with_the_likely_one(tmp_path):
    path = config_with(tmp_path, ("poll_seconds = 5", "poll_secnds = 5"))
    assert unknown_settings(path) == [
        f"{path}: [followup] 未知的键 poll_secnds 将被忽略，是不是 poll_seconds？"
    ]
    settings = load_settings(path, env={})  # a warning: the rest still works
    assert settings.followup.poll_seconds == FollowupSettings.poll_seconds


def test_an_unknown_key_is_reported_by_check_and_at_start(
    tmp_path, monkeypatch, capsys, model_path
):
    path = config_with(tmp_path, ("idle_timeout_minutes = 30", "idle_timeout_minute = 30"))
    write_config(tmp_path, model=model_path, text=path.read_text(encoding="utf-8"))
    clean_env(monkeypatch, WHISTLE_CONFIG=str(path))
    code, out, _ = whistle(capsys, "check")
    assert (
        "[conversation] 未知的键 idle_timeout_minute 将被忽略，是不是 idle_timeout_minutes？" in out
    )
    assert code == 0, out
    code, _, err = whistle(capsys, "migrate")
    assert "idle_timeout_minute 将被忽略" in err
    assert code == 0, err


@pytest.mark.parametrize(
    ("old", "new", "line"),
    [
        (
            "idle_timeout_minutes = 30",
            'idle_timeout_minutes = "half an hour"',
            "[conversation] idle_timeout_minutes 应为数字（number），而不是 'half an hour'",
        ),
        (
            "max_photos = 5",
            "max_photos = 2.5",
            "[conversation] max_photos 应为整数（integer），而不是 2.5",
        ),
        (
            "cookie_secure = false",
            'cookie_secure = "no"',
            "[dashboard] cookie_secure 应为布尔值 true 或 false（boolean），而不是 'no'",
        ),
        (
            "backoff_seconds = [5, 15, 60, 300, 900, 3600]",
            'backoff_seconds = "5,15"',
            "[delivery] backoff_seconds 应为数字的列表（list），而不是 '5,15'",
        ),
        (
            "bbox = [112.55, 28.15, 113.05, 28.60]",
            "bbox = [112.55, 28.15]",
            "[district] bbox 应为4 个数字的列表（list of 4），而不是 [112.55, 28.15]",
        ),
        (
            "triage_chat_id = -1000000000001",
            "triage_chat_id = true",
            "[telegram] triage_chat_id 应为整数（integer），而不是 True",
        ),
    ],
)
def test_a_wrong_type_is_named(tmp_path, old, new, line):
    path = config_with(tmp_path, (old, new))
    with pytest.raises(ConfigError) as error:
        load_settings(path, env={})
    assert [p for p in error.value.problems if line in p], error.value.problems


@pytest.mark.parametrize(
    ("old", "new", "line"),
    [
        (
            "confidence_threshold = 0.55",
            "confidence_threshold = 1.5",
            "[classifier] confidence_threshold 应在 0 到 1 之间（must be within 0–1），而不是 1.5",
        ),
        (
            "idle_timeout_minutes = 30",
            "idle_timeout_minutes = 0",
            "[conversation] idle_timeout_minutes 应大于 0（must be > 0），而不是 0.0",
        ),
        (
            "port = 8080",
            "port = 70000",
            "[dashboard] port 应在 1 到 65535 之间（must be within 1–65535），而不是 70000",
        ),
        (
            "max_attempts = 8",
            "max_attempts = -1",
            "[delivery] max_attempts 应不小于 1（must be ≥ 1），而不是 -1",
        ),
        (
            'http_client = "aiohttp"',
            'http_client = "requests"',
            "[telegram] http_client 只能是 aiohttp 或 httpx（one of: aiohttp, httpx），而不是 'requests'",
        ),
        (
            'digest_time = "08:30"',
            'digest_time = "8点半"',
            "[followup] digest_time 应写成 HH:MM（time of day），例如 08:30，而不是 '8点半'",
        ),
        (
            '"2026-04-06",',
            '"2026-04-31",',
            "[calendar] holidays 中的 '2026-04-31' 应写成 YYYY-MM-DD（ISO date）",
        ),
        (
            "auto_dispatch_threshold = 0.85",
            "auto_dispatch_threshold = 0.5",
            "[classifier] confidence_threshold 应小于 auto_dispatch_threshold",
        ),
        (
            'workday_end = "18:00"',
            'workday_end = "08:00"',
            (
                "[calendar] workday_start 应小于 workday_end（workday_start < workday_end），"
                "而不是 '09:00' 与 '08:00'"
            ),
        ),
    ],
)
def test_an_out_of_range_value_is_named(tmp_path, old, new, line):
    path = config_with(tmp_path, (old, new))
    with pytest.raises(ConfigError) as error:
        load_settings(path, env={})
    assert [p for p in error.value.problems if line in p], error.value.problems


def test_check_lists_every_wrong_value_at_once(tmp_path, monkeypatch, capsys):
    path = config_with(
        tmp_path,
        ("poll_seconds = 5", 'poll_seconds = "5s"'),
        ("max_text_chars = 2000", "max_text_chars = 0"),
        ("webhook_port = 8443", "webhook_port = 0"),
    )
    clean_env(monkeypatch, WHISTLE_CONFIG=str(path))
    code, out, _ = whistle(capsys, "check")
    assert code == 2, out
    errors = [line for line in out.splitlines() if line.startswith("✗")]
    for setting in (
        "[followup] poll_seconds",
        "[conversation] max_text_chars",
        "[telegram] webhook_port",
    ):
        assert sum(setting in line for line in errors) == 1, (setting, out)


def test_a_start_with_a_wrong_value_stops_with_one_line_each(tmp_path, monkeypatch, capsys):
    path = config_with(
        tmp_path,
        ("yellow_ratio = 0.75", "yellow_ratio = 75"),
        ("session_days = 7", 'session_days = "a week"'),
    )
    clean_env(monkeypatch, WHISTLE_CONFIG=str(path))
    code, _, err = whistle(capsys, "run")
    assert_stopped_cleanly(
        code,
        err,
        "[followup] yellow_ratio 应大于 0 且不大于 1（must be > 0 and ≤ 1），而不是 75.0",
        "[dashboard] session_days 应为整数（integer），而不是 'a week'",
    )
    assert created_files(tmp_path) == []  # nothing started, nothing written


def test_every_section_has_a_default_for_each_optional_setting():
    """A section left out of config.toml must be buildable from its defaults alone."""
    for name, kind in SECTIONS.items():
        instance = kind()
        for f in dataclasses.fields(kind):
            assert not isinstance(getattr(instance, f.name), list | dict), (name, f.name)
