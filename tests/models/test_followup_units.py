"""Small pure pieces of the follow-up side: /policy parsing and matching, /stats periods,
durations in words, and that the follow-up texts do not clash with the intake texts."""

from __future__ import annotations

from datetime import datetime

import pytest

import bot.texts.followup as followup_texts
import bot.texts.intake as intake_texts
from bot.services import Services
from bot.staff_commands import parse_policy, stats_period
from models.deadlines import Rules
from models.policy import parse_tags, policy_matches
from models.validation import InvalidInput


def test_policy_message_parsing():
    body = (
        "软件企业研发补贴\n按研发投入的10%给予补贴。\n申报截止12月31日。\n"
        "链接：https://www.example.gov.cn/p/1\n标签：软件，物流、 高新区"
    )
    assert parse_policy(body) == {
        "title": "软件企业研发补贴",
        "summary": "按研发投入的10%给予补贴。\n申报截止12月31日。",
        "link": "https://www.example.gov.cn/p/1",
        "tags": "软件，物流、 高新区",
    }
    assert parse_policy("只有标题") is None
    assert parse_policy("") is None
    assert parse_policy("标题\nLink: http://a.cn\n正文")["link"] == "http://a.cn"


def test_tags_and_matching():
    assert parse_tags("软件，物流、 #高新区 软件") == ["软件", "物流", "高新区"]
    assert parse_tags(None) == []
    with pytest.raises(InvalidInput):
        parse_tags("很" * 31)
    with pytest.raises(InvalidInput):
        parse_tags(",".join(str(i) for i in range(11)))
    assert policy_matches([], None, None)  # no tags: for everyone
    assert policy_matches(["软件"], "软件和信息技术服务业", None)
    assert policy_matches(["经开区"], "制造业", "望城经开区")
    assert not policy_matches(["物流"], "制造业", "望城经开区")
    assert not policy_matches(["物流"], None, None)


@pytest.mark.parametrize(
    ("arg", "name", "start", "end"),
    [
        ("today", "今日", datetime(2026, 11, 30, 16, 0), datetime(2026, 12, 1, 16, 0)),
        ("", "本月", datetime(2026, 11, 30, 16, 0), datetime(2026, 12, 31, 16, 0)),
        ("week", "本周", datetime(2026, 11, 29, 16, 0), datetime(2026, 12, 6, 16, 0)),
        ("2026-02", "2026年2月", datetime(2026, 1, 31, 16, 0), datetime(2026, 2, 28, 16, 0)),
        ("2026年2月", "2026年2月", datetime(2026, 1, 31, 16, 0), datetime(2026, 2, 28, 16, 0)),
        ("上个月", "2026年11月", datetime(2026, 10, 31, 16, 0), datetime(2026, 11, 30, 16, 0)),
        ("last-month", "2026年11月", datetime(2026, 10, 31, 16, 0), datetime(2026, 11, 30, 16, 0)),
        ("上周", "上周", datetime(2026, 11, 22, 16, 0), datetime(2026, 11, 29, 16, 0)),
        ("本月", "本月", datetime(2026, 11, 30, 16, 0), datetime(2026, 12, 31, 16, 0)),
        ("今年", "2026年", datetime(2025, 12, 31, 16, 0), datetime(2026, 12, 31, 16, 0)),
        ("2026-11-01~2026-11-15", "", datetime(2026, 10, 31, 16, 0), datetime(2026, 11, 15, 16, 0)),
        (
            "2026-11-01 至 2026-11-01",
            "",
            datetime(2026, 10, 31, 16, 0),
            datetime(2026, 11, 1, 16, 0),
        ),
    ],
)
def test_stats_periods_in_district_time(settings, arg, name, start, end):
    services = Services(
        settings=settings, engine=None, rules=Rules.from_settings(settings), suggester=None
    )
    now = datetime(2026, 12, 1, 1, 0)  # Tue Dec 1, 09:00 in Wangcheng
    assert stats_period(arg, now, services) == (name, start, end)


@pytest.mark.parametrize(
    "arg",
    [
        "yesterday",
        "2026-13",
        "1999-01",
        "2026/11",
        "明年",
        "2026-11-15~2026-11-01",
        "2026-02-30",
        "2026-11-01~",
    ],
)
def test_stats_period_rejects_other_words(settings, arg):
    services = Services(
        settings=settings, engine=None, rules=Rules.from_settings(settings), suggester=None
    )
    assert stats_period(arg, datetime(2026, 12, 1), services) is None


def test_durations_and_rates_in_words():
    span, percent = followup_texts.span, followup_texts.percent
    assert span(30) == "1分钟" and span(40 * 60) == "40分钟"
    assert span(2 * 3600 + 10 * 60) == "2小时10分钟" and span(5 * 3600 + 59) == "5小时"
    assert span(26 * 3600) == "1天2小时" and span(3 * 86400) == "3天"
    assert span(-5) == "1分钟"
    assert percent(None) == "—" and percent(0.8345) == "83.5%" and percent(1) == "100.0%"


def test_followup_texts_do_not_shadow_intake_texts():
    """bot/texts re-exports both modules with *: a shared name would silently win."""
    public = {n for n in vars(followup_texts) if not n.startswith("_") and n != "annotations"}
    assert public.isdisjoint(n for n in vars(intake_texts) if n != "annotations")
