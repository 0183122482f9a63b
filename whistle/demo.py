"""`whistle demo`'s cast: config.toml's staff, two demo residents and the bot's groups, seeded
into the local Bot API emulator (emulator/, which knows nothing of Whistle), and the lines
that open the terminal chat."""

from __future__ import annotations

from bot.texts import demo as t
from emulator import Role, TelegramEmulator
from whistle.config import Settings

# Demo residents (not staff): ids far from the staff ids in config.toml.
DEMO_RESIDENTS: dict[int, str] = {10001: "居民王阿姨", 10002: "企业赵经理"}
DEMO_ENTERPRISE_USERS = frozenset({10002})  # plays an enterprise (registers with /enterprise)
DEMO_CREDIT_CODE = "91430112MA4Q8K2M74"  # a made-up 统一社会信用代码 that passes GB 32100's check


def add_people_from_settings(
    emu: TelegramEmulator,
    settings: Settings,
    residents: dict[int, str] | None = None,
) -> tuple[dict[int, str], dict[int, str]]:
    """Add config staff, demo residents and the triage/leader/department groups.

    Returns (identities, group_titles) ready for emulator.run_terminal_chat.
    """
    residents = residents if residents is not None else DEMO_RESIDENTS
    identities: dict[int, str] = {}
    for user_id, name in residents.items():
        emu.add_user(user_id, name)
        identities[user_id] = name
    for staff in settings.staff:
        emu.add_user(staff.telegram_id, staff.name)
        identities[staff.telegram_id] = staff.name
    groups: dict[int, tuple[str, list[int]]] = {}
    by_role = {
        role: [s.telegram_id for s in settings.staff if s.role == role]
        for role in ("triage", "leader", "admin")
    }
    triage_id = settings.telegram.triage_chat_id
    leader_id = settings.telegram.leader_chat_id
    if triage_id:
        groups[int(triage_id)] = ("分拨中心", by_role["triage"] + by_role["admin"])
    if leader_id:
        groups[int(leader_id)] = ("督办室", by_role["leader"] + by_role["admin"])
    for dept in settings.departments:
        if dept.chat_id:
            members = [
                s.telegram_id
                for s in settings.staff
                if s.role == "department" and s.department == dept.code
            ]
            groups[int(dept.chat_id)] = (f"{dept.name}工作群", members)
    for chat_id, (title, members) in groups.items():
        emu.add_group(chat_id, title, members)
    return identities, {chat_id: title for chat_id, (title, _) in groups.items()}


def demo_roles(settings: Settings, residents: dict[int, str] | None = None) -> dict[int, Role]:
    """The role of every identity add_people_from_settings adds, for the terminal's :who;
    ordered as bot/texts/demo.py's ROLE_TITLES, so :who lists residents first, admins last."""
    residents = residents if residents is not None else DEMO_RESIDENTS
    roles = {
        uid: role_of("enterprise" if uid in DEMO_ENTERPRISE_USERS else "resident")
        for uid in residents
    }
    places = {("department", d.code): d.name for d in settings.departments}
    places.update({("grid", g.code): g.name for g in settings.grids})
    for staff in settings.staff:
        kind = "department" if staff.role == "department" else "grid"
        where = staff.department if kind == "department" else staff.grid
        place = places.get((kind, where), where or "") if where else ""
        roles[staff.telegram_id] = role_of(staff.role, place)
    order = list(t.ROLE_TITLES)
    return dict(
        sorted(
            roles.items(),
            key=lambda item: order.index(item[1].role) if item[1].role in order else len(order),
        )
    )


def role_of(role: str, place: str = "") -> Role:
    """A role as the terminal shows it: its title, and for an enterprise what to do first."""
    hint = t.WHO_ENTERPRISE_HINT.format(code=DEMO_CREDIT_CODE) if role == "enterprise" else ""
    return Role(role, t.ROLE_TITLES.get(role, ""), place, hint)


def departments_without_staff(settings: Settings) -> list[str]:
    """Names of departments no [[staff]] entry works for: their cases have nobody to act."""
    staffed = {s.department for s in settings.staff if s.role == "department"}
    return [d.name for d in settings.departments if d.code not in staffed]


def demo_intro(settings: Settings, identities: dict[int, str], roles: dict[int, Role]) -> list[str]:
    """The demo's first lines: who to switch to for each step of a case, and any department
    nobody can play."""

    def first(role: str) -> str:
        return next(
            (identities[uid] for uid, r in roles.items() if r.role == role and uid in identities),
            "?",
        )

    intro = [
        t.WALKTHROUGH.format(
            resident=first("resident"), triage=first("triage"), officer=first("department")
        ),
        t.ENTERPRISE_TRY.format(enterprise=first("enterprise"), code=DEMO_CREDIT_CODE),
    ]
    if unstaffed := departments_without_staff(settings):
        intro.append(t.NO_DEPARTMENT_STAFF.format(names="、".join(unstaffed)))
    return intro
