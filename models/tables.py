"""SQLModel tables of the routing store. All datetimes are naive UTC.

Datetime columns are annotated NaiveDatetime: SQLModel maps a plain `datetime` to a type that
refuses naive values, while Whistle stores naive UTC everywhere (DateTime without time zone).

Only functions in `models/` read or write these; the bot, the follow-up engine and the
dashboard call those functions and contain no SQL of their own.
"""

from __future__ import annotations

from pydantic import NaiveDatetime
from sqlalchemy import JSON, BigInteger, Column, ForeignKey, Index, Integer, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

# Case statuses (the lifecycle lives in models/lifecycle.py).
SUBMITTED = "submitted"
TRIAGE = "triage"
DISPATCHED = "dispatched"
SIGNED = "signed"
RESOLVED = "resolved"
CLOSED = "closed"
MERGED = "merged"
NOT_ACCEPTED = "not_accepted"  # 不予受理: refused by triage with a reason
# 吹哨报到 in the grid (models/lifecycle.py): the grid's (or the street's) staff have the case
# (交网格办理 / 雷锋哨), have signed it, or verify a department's work on site (核查).
GRID_ASSIGNED = "grid"
GRID_SIGNED = "grid_signed"
VERIFYING = "verifying"
OPEN_STATUSES = (SUBMITTED, TRIAGE, DISPATCHED, SIGNED, GRID_ASSIGNED, GRID_SIGNED, VERIFYING)

RESIDENT, ENTERPRISE = "resident", "enterprise"
# Intake channels: the bot, the 12345 hotline (热线哨) and other systems through Open311, and
# a 雷锋哨 blown by grid staff from the field (/whistle).
TELEGRAM, HOTLINE, API, GRID_REPORT = "telegram", "hotline", "api", "grid_report"
CHANNELS = (TELEGRAM, HOTLINE, API, GRID_REPORT)
NORMAL, URGENT = "normal", "urgent"

# Satisfaction (回访) answers; UNRATED = closed without an answer (未评价).
SATISFIED, BASIC, UNSATISFIED, UNRATED = "satisfied", "basic", "unsatisfied", "unrated"


def _big(**kw) -> Column:
    return Column(BigInteger, **kw)


class Enterprise(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=200)
    credit_code: str = Field(max_length=18, unique=True)  # 统一社会信用代码, GB 32100-2015
    industry: str | None = Field(default=None, max_length=100)
    park: str | None = Field(default=None, max_length=100)
    news_subscribed: bool = True  # 惠企政策推送
    created_at: NaiveDatetime


class ApiClient(SQLModel, table=True):
    """An Open311 client (a 12345 platform, a city app): its key is kept only as a hash."""

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=100, unique=True)
    key_hash: str = Field(max_length=64, unique=True)  # sha256 hex of the API key
    channel: str = Field(default=HOTLINE, max_length=20)  # what its cases count as
    callback_url: str | None = Field(default=None, max_length=500)
    active: bool = True
    created_at: NaiveDatetime
    revoked_at: NaiveDatetime | None = None


class Reporter(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    telegram_id: int = Field(sa_column=_big(unique=True, nullable=False))
    kind: str = Field(default=RESIDENT, max_length=20)
    display_name: str = Field(default="", max_length=200)
    phone: str | None = Field(default=None, max_length=20)  # kept only with consent
    phone_consent: bool = False
    reachable: bool = True  # False once Telegram says the user blocked the bot
    enterprise_id: int | None = Field(default=None, foreign_key="enterprise.id")
    created_at: NaiveDatetime
    # 我住在…: the grid of the 小区/村 the reporter named once (/home), and the name they gave;
    # a report that names no place and has no location falls back to it (models/locating.py).
    home_grid_code: str | None = Field(default=None, foreign_key="grid.code")
    home_place: str | None = Field(default=None, max_length=100)


class Department(SQLModel, table=True):
    code: str = Field(primary_key=True, max_length=40)  # the classifier's label
    name: str = Field(max_length=100)
    description: str = Field(default="", max_length=500)
    chat_id: int | None = Field(default=None, sa_column=_big(nullable=True))
    sign_limit_normal: str = Field(default="1wd", max_length=10)
    sign_limit_urgent: str = Field(default="2h", max_length=10)
    resolve_limit_normal: str = Field(default="5wd", max_length=10)
    resolve_limit_urgent: str = Field(default="1d", max_length=10)
    active: bool = True


class Grid(SQLModel, table=True):
    """网格: district → street/town → community/village → grid → micro-grid."""

    # "In this grid" walks down the parent links (models/permissions.py subtree_codes).
    __table_args__ = (Index("ix_grid_parent", "parent_code"),)

    code: str = Field(primary_key=True, max_length=60)
    name: str = Field(max_length=100)
    level: str = Field(max_length=20)
    parent_code: str | None = Field(default=None, foreign_key="grid.code")
    staff_telegram_id: int | None = Field(default=None, sa_column=_big(nullable=True))


class Staff(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    telegram_id: int = Field(sa_column=_big(unique=True, nullable=False))
    name: str = Field(default="", max_length=100)
    role: str = Field(max_length=20)  # triage | department | grid | leader | admin
    department_code: str | None = Field(default=None, foreign_key="department.code")
    grid_code: str | None = Field(default=None, foreign_key="grid.code")
    active: bool = True


class Case(SQLModel, table=True):
    __table_args__ = (
        # The due scan walks open cases by status and running deadline; carrying the light's
        # start and the alert bookkeeping in the index lets it skip rows without reading them.
        Index(
            "ix_case_status_sign_by",
            "status",
            "sign_by",
            "dispatched_at",
            "yellow_notified_at",
            "red_notified_at",
            "escalated_at",
        ),
        Index(
            "ix_case_status_resolve_by",
            "status",
            "resolve_by",
            "dispatched_at",
            "yellow_notified_at",
            "red_notified_at",
            "escalated_at",
        ),
        Index("ix_case_department_status", "department_code", "status"),
        # Open cases by grid with what their light needs, and what the map's red points show
        # (the grid dashboard, a grid's /overdue): SQLite reads this index alone instead of
        # scanning the whole table, which its planner otherwise prefers because it cannot see
        # that open statuses are rare (bench/grid_dashboard_bench.py: 204 → 27 ms).
        Index(
            "ix_case_status_grid",
            "status",
            "grid_code",
            "sign_by",
            "resolve_by",
            "verify_by",
            "dispatched_at",
            "resolved_at",
            "latitude",
            "longitude",
            "department_code",
            "ref",
        ),
        Index("ix_case_reporter_created", "reporter_id", "created_at"),
        Index("ix_case_created", "created_at"),
        Index("ix_case_resolved", "resolved_at"),
        # The follow-up engine's survey (回访) scans: resolved cases by survey_sent_at.
        Index("ix_case_status_survey", "status", "survey_sent_at", "survey_reminded_at"),
        # Open311: a client's own id for its work order makes its POST idempotent.
        UniqueConstraint("api_client_id", "external_id", name="uq_case_client_external"),
    )

    id: int | None = Field(default=None, primary_key=True)
    ref: str = Field(max_length=32, unique=True)  # public reference, WC-20261124-0007
    # The intake's idempotency key: a redelivered update or a double-tapped 确认提交 finds the
    # case it already made instead of making a second one (NULLs never collide).
    idempotency_key: str | None = Field(default=None, max_length=200, unique=True)
    kind: str = Field(default=RESIDENT, max_length=20)
    reporter_id: int = Field(foreign_key="reporter.id")
    enterprise_id: int | None = Field(default=None, foreign_key="enterprise.id")
    text: str = Field(sa_column=Column(Text, nullable=False))
    photos: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    latitude: float | None = None
    longitude: float | None = None
    address: str | None = Field(default=None, max_length=300)
    out_of_area: bool = False  # location outside the district's bounding box
    grid_code: str | None = Field(default=None, foreign_key="grid.code")
    located_by: str | None = Field(default=None, max_length=10)  # gps | place | home | staff
    # The reporter's location lies outside every grid's boundary: flagged for triage, which
    # places it by hand (修改网格); such a case is never dispatched automatically.
    out_of_grid: bool = False
    # 吹哨报到: the grid whose staff have the case now (grid, community or street level: the
    # deepest one with staff), whether it started in a grid (小事不出网格), the whistle up to
    # a department or the street (who, when, from which grid level), and where it was
    # resolved (grid | street | department) for 小事不出网格率 / 大事不出街镇率.
    handling_grid_code: str | None = Field(default=None, foreign_key="grid.code")
    started_in_grid: bool = False
    whistled_at: NaiveDatetime | None = None
    whistled_by: int | None = Field(default=None, sa_column=_big(nullable=True))
    whistle_level: str | None = Field(default=None, max_length=20)
    resolved_level: str | None = Field(default=None, max_length=20)

    suggested_department: str | None = Field(default=None, max_length=40)
    suggested_confidence: float | None = None
    suggestions: list = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    model_version: str | None = Field(default=None, max_length=64)
    department_code: str | None = Field(default=None, foreign_key="department.code")

    status: str = Field(default=SUBMITTED, max_length=20)
    priority: str = Field(default=NORMAL, max_length=10)
    created_at: NaiveDatetime
    dispatched_at: NaiveDatetime | None = None
    signed_at: NaiveDatetime | None = None
    resolved_at: NaiveDatetime | None = None
    closed_at: NaiveDatetime | None = None
    sign_by: NaiveDatetime | None = None
    resolve_by: NaiveDatetime | None = None
    verify_by: NaiveDatetime | None = None  # 核查: the grid's staff check a department's work

    resolution: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    resolution_photo: str | None = Field(default=None, max_length=200)
    satisfaction: str | None = Field(default=None, max_length=20)
    satisfaction_comment: str | None = Field(default=None, max_length=1000)
    reopen_count: int = 0
    merged_into_id: int | None = Field(default=None, foreign_key="case.id")
    # 攻坚哨: a hard case handled jointly; department_code is the lead (牵头) department, whose
    # share is the case itself; each co-department's share is a CasePart. The decision of the
    # 专题会议 (who does what, who pays, the deadline) is kept as written.
    is_hard: bool = False
    hard_decision: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    hard_at: NaiveDatetime | None = None

    # Follow-up bookkeeping: when each push for the current deadline went out, so the
    # engine sends each reminder once per deadline (reset when a deadline moves).
    yellow_notified_at: NaiveDatetime | None = None
    red_notified_at: NaiveDatetime | None = None
    escalated_at: NaiveDatetime | None = None
    survey_sent_at: NaiveDatetime | None = None
    survey_reminded_at: NaiveDatetime | None = None

    # Where the case came from (CHANNELS: the bot, 热线哨 = hotline, other systems, or a grid's
    # own 雷锋哨) and, for API cases, the client and its own id;
    # `caller` is the API caller's contact (personal data: never in public answers).
    channel: str = Field(default=TELEGRAM, max_length=20)
    api_client_id: int | None = Field(
        default=None,
        sa_column=Column(
            Integer, ForeignKey("apiclient.id", name="fk_case_api_client"), nullable=True
        ),
    )
    external_id: str | None = Field(default=None, max_length=100)
    caller: dict | None = Field(default=None, sa_column=Column(JSON, nullable=True))

    # Optimistic concurrency: every change bumps it, so two staff acting at once can't both win.
    version: int = 0


class CasePart(SQLModel, table=True):
    """攻坚哨: one co-department's share (协同部门) of a hard case, with its own lifecycle
    (models.lifecycle.PART_TRANSITIONS), deadlines and lights; the columns a running deadline
    and the alerts read have the case's names, so the same rules serve both."""

    __table_args__ = (
        UniqueConstraint("case_id", "department_code", name="uq_casepart_case_department"),
        Index("ix_casepart_status", "status"),
    )

    id: int | None = Field(default=None, primary_key=True)
    case_id: int = Field(foreign_key="case.id", index=True)
    department_code: str = Field(foreign_key="department.code", max_length=40)
    status: str = Field(
        default=DISPATCHED, max_length=20
    )  # dispatched | signed | resolved | waived
    dispatched_at: NaiveDatetime
    sign_by: NaiveDatetime
    resolve_by: NaiveDatetime
    signed_at: NaiveDatetime | None = None
    resolved_at: NaiveDatetime | None = None
    # The department's result (办结), or the leader's reason when the part was waived.
    result: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    yellow_notified_at: NaiveDatetime | None = None
    red_notified_at: NaiveDatetime | None = None
    escalated_at: NaiveDatetime | None = None
    version: int = 0


class CaseEvent(SQLModel, table=True):
    """Append-only audit trail of a case."""

    __table_args__ = (Index("ix_caseevent_case_at", "case_id", "at"),)

    id: int | None = Field(default=None, primary_key=True)
    case_id: int = Field(foreign_key="case.id")
    at: NaiveDatetime
    actor_kind: str = Field(max_length=20)  # reporter | staff | system
    actor_id: int | None = Field(default=None, sa_column=_big(nullable=True))
    action: str = Field(max_length=30)
    from_status: str | None = Field(default=None, max_length=20)
    to_status: str | None = Field(default=None, max_length=20)
    details: dict = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


class LabelCorrection(SQLModel, table=True):
    """A staff choice that differs from the classifier's suggestion: training data."""

    id: int | None = Field(default=None, primary_key=True)
    case_id: int = Field(foreign_key="case.id", index=True)
    text: str = Field(sa_column=Column(Text, nullable=False))
    suggested_label: str | None = Field(default=None, max_length=40)
    corrected_label: str = Field(max_length=40)
    staff_telegram_id: int | None = Field(default=None, sa_column=_big(nullable=True))
    model_version: str | None = Field(default=None, max_length=64)
    at: NaiveDatetime


class ExtensionRequest(SQLModel, table=True):
    """申请延期: department asks, triage approves or rejects."""

    id: int | None = Field(default=None, primary_key=True)
    case_id: int = Field(foreign_key="case.id", index=True)
    requested_by: int = Field(sa_column=_big(nullable=False))
    reason: str = Field(max_length=500)
    new_resolve_by: NaiveDatetime
    status: str = Field(default="pending", max_length=20)  # pending | approved | rejected
    decided_by: int | None = Field(default=None, sa_column=_big(nullable=True))
    decided_at: NaiveDatetime | None = None
    created_at: NaiveDatetime


class Outbox(SQLModel, table=True):
    """Every push goes through here: durable, idempotent (unique key), retried with back-off."""

    __table_args__ = (Index("ix_outbox_status_due", "status", "due_at"),)

    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(max_length=200, unique=True)  # idempotency key
    chat_id: int = Field(sa_column=_big(nullable=False))
    kind: str = Field(max_length=40)  # progress | reminder | alarm | escalation | survey | ...
    text: str = Field(sa_column=Column(Text, nullable=False))
    reply_markup: dict | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    photo: str | None = Field(default=None, max_length=200)
    case_id: int | None = Field(default=None, foreign_key="case.id")
    status: str = Field(default="pending", max_length=20)  # pending | sent | failed | dropped
    due_at: NaiveDatetime
    attempts: int = 0
    last_error: str | None = Field(default=None, max_length=500)
    lease_owner: str | None = Field(default=None, max_length=64)
    lease_until: NaiveDatetime | None = None
    sent_at: NaiveDatetime | None = None
    sent_message_id: int | None = Field(default=None, sa_column=_big(nullable=True))
    created_at: NaiveDatetime


class Policy(SQLModel, table=True):
    """惠企政策 posted by staff for matching enterprises."""

    id: int | None = Field(default=None, primary_key=True)
    title: str = Field(max_length=200)
    summary: str = Field(sa_column=Column(Text, nullable=False))
    link: str | None = Field(default=None, max_length=500)
    tags: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    posted_by: int = Field(sa_column=_big(nullable=False))
    posted_at: NaiveDatetime


class BotState(SQLModel, table=True):
    """Conversation state and drafts, so a conversation survives a restart."""

    key: str = Field(primary_key=True, max_length=200)
    value: dict = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    updated_at: NaiveDatetime


class ProcessedUpdate(SQLModel, table=True):
    """Telegram update ids already handled: a second delivery of one is ignored."""

    update_id: int = Field(sa_column=_big(primary_key=True, autoincrement=False))
    at: NaiveDatetime = Field(index=True)


class CaseCounter(SQLModel, table=True):
    """Per-day sequence behind the human-readable case reference."""

    __table_args__ = (UniqueConstraint("day"),)

    id: int | None = Field(default=None, primary_key=True)
    day: str = Field(max_length=8)  # YYYYMMDD in district time
    last: int = 0


# Model registry statuses (the learning loop, #16): the one serving, one trained and not (yet)
# judged, one that served before, one the gate refused.
CHAMPION, CHALLENGER, RETIRED, REFUSED = "champion", "challenger", "retired", "refused"
MODEL_STATUSES = (CHAMPION, CHALLENGER, RETIRED, REFUSED)


class ModelVersion(SQLModel, table=True):
    """A classifier model the learning loop kept (its file lives under [learning] models_dir):
    data counts and held-out metrics, never a message."""

    id: int | None = Field(default=None, primary_key=True)
    version: str = Field(max_length=80, unique=True)
    file: str = Field(max_length=300)
    status: str = Field(default=CHALLENGER, max_length=20)
    counts: dict = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    metrics: dict = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    gate: dict = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    # The newest LabelCorrection id its training saw: later ones are "new corrections".
    corrections_seen: int = 0
    created_at: NaiveDatetime
    promoted_at: NaiveDatetime | None = None


class CaseFollower(SQLModel, table=True):
    """A reporter who said a case is the problem they wanted to report (关注该案件): they get its
    progress notices and 回访 like its reporter; the case counts them as its reporters."""

    __table_args__ = (
        UniqueConstraint("case_id", "reporter_id", name="uq_casefollower_case_reporter"),
    )

    id: int | None = Field(default=None, primary_key=True)
    case_id: int = Field(foreign_key="case.id", index=True)
    reporter_id: int = Field(foreign_key="reporter.id")
    at: NaiveDatetime
    # Set when a merge (合并) made them follow: the merged case they reported or followed, so
    # the dashboard counts that report once (as the merged case), not again as a follower.
    merged_from_id: int | None = Field(default=None, foreign_key="case.id")
    # Their own 回访 answer (the reporter's decides the case's course; a follower's is heard).
    satisfaction: str | None = Field(default=None, max_length=20)
    rated_at: NaiveDatetime | None = None
