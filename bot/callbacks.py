"""The one place that builds and parses inline-button callback data.

Format: ``"<verb>:<case_id>:<version>[:<arg>]"`` — at most 64 bytes (Telegram's limit). The
version is the case's version when the button was made, so a button from an old message can
be recognised and refused. Buttons that are not about a case use case_id 0 and put a draft or
offer nonce in the version field.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_BYTES = 64

# Every verb, one line each: who sees the button, what it does, what <arg> holds.
CONFIRM = "ok"  # triage: dispatch to the suggested department, or (confirmed) to <arg>
PICK = "pick"  # triage: show the department list
BACK = "back"  # triage: back to the post's own buttons
TO = "to"  # triage: department <arg> picked from the list: ask to confirm it
URGENT = "urg"  # triage: mark urgent
NOT_ACCEPT = "na"  # triage: 不予受理, show the reasons
NOT_ACCEPT_AS = "nar"  # triage: 不予受理 for reason <arg> (models.lifecycle.NOT_ACCEPTED_REASONS)
NOT_ACCEPT_OTHER = "nao"  # triage: 不予受理 for a reason typed in (asks for it)
DUPLICATE = "dup"  # triage: 重复反映, asks for the earlier case's reference and merges
MERGE = "mg"  # triage: 合并 into the likely duplicate case <arg> (its id; bot/duplicates.py)
APPROVE_EXT = "exa"  # triage: approve extension request <arg>
REJECT_EXT = "exr"  # triage: reject extension request <arg>
SIGN = "sign"  # department: 签收
RETURN = "ret"  # department: 退回 (asks for a reason)
RESOLVE = "res"  # department: 办结 (asks for the result)
EXTEND = "ext"  # department: 申请延期 (asks for reason and date)
RATE = "rate"  # reporter, 回访: rating <arg> satisfied|basic|unsatisfied (bot/survey.py)
RATE_FOLLOWER = "frate"  # follower (关注该案件), 回访: rating <arg>, heard but not deciding
RATE_NOW = "ratenow"  # reporter, 回访: 直接提交 a 不满意 without a comment, <arg> unsatisfied
GRID = "grid"  # triage: 修改网格, show the grids below <arg> (the streets without one)
SET_GRID = "gset"  # triage: place the case in grid <arg>
# 攻坚哨 (triage and leaders): departments are named by their index in config.toml's order and
# the chosen co-departments by a bit mask of those indexes, so a choice fits in <arg>.
HARD = "hj"  # 🧩 攻坚哨: show the departments to choose the lead from
HARD_LEAD = "hjl"  # lead <arg = index> chosen: show the co-departments
HARD_CO = "hjc"  # <arg = "lead-mask">: the co-department choice so far (a button toggles one)
HARD_TEXT = "hjt"  # <arg = "lead-mask">: 下一步, asks for the 专题会议 decision
# A 攻坚哨 part: the case's id, the PART's version, <arg = the part's id>.
PART_SIGN = "psg"  # co-department: 签收 its part
PART_RESOLVE = "prs"  # co-department: 办结 its part (asks for the result)
TO_GRID = "tg"  # triage: 交网格办理 (the deepest grid with staff)
GRID_SIGN = "gsign"  # grid/street staff: 签收
GRID_RESOLVE = "gres"  # grid/street staff: 办结 (asks for the result, then a photo)
WHISTLE = "wh"  # grid/street staff: 吹哨, show where to
WHISTLE_TO = "whto"  # grid/street staff: 吹哨 to <arg> "street" or a department (asks why)
GRID_BACK = "gback"  # grid/street staff: back to the post's own buttons
VERIFY_OK = "vok"  # grid staff: 核查通过
VERIFY_FAIL = "vno"  # grid staff: 核查不通过 (asks why)
# Buttons that are not about a stored case: case_id 0, a nonce or an id in the version field.
DRAFT = "dr"  # reporter: draft summary, <arg> submit|edit|cancel|text|photo|location|back
OFFER = "of"  # reporter: start a report with a free message (nonce), <arg> yes|no
NEW_DEMAND = "nd"  # enterprise: start a new demand
HOME = "home"  # reporter: tell the bot their 小区/村 (offered after a report without a grid)
NEWS = "news"  # enterprise: under policy <version = policy id>, <arg> off: unsubscribe

TRIAGE_VERBS = frozenset(
    {
        CONFIRM,
        PICK,
        BACK,
        TO,
        URGENT,
        NOT_ACCEPT,
        NOT_ACCEPT_AS,
        NOT_ACCEPT_OTHER,
        DUPLICATE,
        MERGE,
        APPROVE_EXT,
        REJECT_EXT,
        GRID,
        SET_GRID,
        TO_GRID,
        HARD,
        HARD_LEAD,
        HARD_CO,
        HARD_TEXT,
    }
)
HARD_VERBS = frozenset({HARD, HARD_LEAD, HARD_CO, HARD_TEXT})
PART_VERBS = frozenset({PART_SIGN, PART_RESOLVE})
DEPARTMENT_VERBS = frozenset({SIGN, RETURN, RESOLVE, EXTEND}) | PART_VERBS
REPORTER_VERBS = frozenset({RATE, RATE_NOW, RATE_FOLLOWER, DRAFT, OFFER, NEW_DEMAND, NEWS, HOME})
GRID_VERBS = frozenset(
    {GRID_SIGN, GRID_RESOLVE, WHISTLE, WHISTLE_TO, GRID_BACK, VERIFY_OK, VERIFY_FAIL}
)
VERBS = TRIAGE_VERBS | DEPARTMENT_VERBS | REPORTER_VERBS | GRID_VERBS
# parse() still reads a well-formed verb that is not in the table (a button from an older
# version of the bot): the catch-all answers it as expired; make() refuses one.

_PART = re.compile(r"^[a-z]{1,8}$")
_NUMBER = re.compile(r"^\d{1,12}$")
_ARG = re.compile(r"^[A-Za-z0-9_\-]{1,32}$")


@dataclass(frozen=True)
class Callback:
    verb: str
    case_id: int
    version: int
    arg: str | None = None


def make(verb: str, case_id: int, version: int, arg: str | None = None) -> str:
    """Callback data for a button; raises ValueError if it would be malformed or too long."""
    if verb not in VERBS:
        raise ValueError(f"unknown callback verb {verb!r} (bot/callbacks.py lists them)")
    data = f"{verb}:{int(case_id)}:{int(version)}" + (f":{arg}" if arg is not None else "")
    if arg is not None and not _ARG.match(arg):
        raise ValueError(f"bad callback argument {arg!r}")
    if len(data.encode()) > MAX_BYTES:
        raise ValueError(f"callback data longer than {MAX_BYTES} bytes: {data!r}")
    return data


def parse(data: str | None) -> Callback | None:
    """The parsed callback, or None for anything malformed, unknown or oversized."""
    if not data or len(data.encode()) > MAX_BYTES:
        return None
    parts = data.split(":")
    if len(parts) not in (3, 4):
        return None
    verb, case_id, version = parts[:3]
    arg = parts[3] if len(parts) == 4 else None
    if not _PART.match(verb):
        return None
    if not _NUMBER.match(case_id) or not _NUMBER.match(version):
        return None
    if arg is not None and not _ARG.match(arg):
        return None
    return Callback(verb, int(case_id), int(version), arg)


def pattern(*verbs: str) -> str:
    """A CallbackQueryHandler pattern matching these verbs (validation happens in parse)."""
    return "^(" + "|".join(re.escape(v) for v in verbs) + "):"
