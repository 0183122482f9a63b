"""Who may do what to a case: the one place the rule lives.

Actions are the store's verbs: view, dispatch, redispatch, set_priority, set_grid, decide_extension,
merge, not_accept (不予受理), sign, return, progress_note, resolve, request_extension, and for
攻坚哨 mark_hard (share a case out to several departments) and override_parts (a leader lets the
lead resolve without waiting for the parts still open).
"""

from __future__ import annotations

from models.tables import Case, CasePart, Staff

TRIAGE_ACTIONS = frozenset(
    {
        "view",
        "dispatch",
        "redispatch",
        "set_priority",
        "decide_extension",
        "merge",
        "not_accept",
        "set_grid",
        "mark_hard",
        "to_grid",
    }
)
DEPARTMENT_ACTIONS = frozenset(
    {"view", "sign", "return", "progress_note", "resolve", "request_extension"}
)
LEADER_ACTIONS = frozenset({"view", "set_priority", "mark_hard", "override_parts"})
# 吹哨报到: what grid (and street) staff do with the cases their grid handles.
HANDLING_ACTIONS = frozenset({"grid_sign", "grid_resolve", "whistle", "verify"})
GRID_ACTIONS = frozenset({"view", "progress_note"}) | HANDLING_ACTIONS

# Every staff role and what it may do; ROLES is the one list of roles (config, /staff_add).
ROLE_ACTIONS = {
    "triage": TRIAGE_ACTIONS,
    "department": DEPARTMENT_ACTIONS,
    "grid": GRID_ACTIONS,  # 网格员, 片长, 组长, 邻长: by the level of their grid
    "street": GRID_ACTIONS,  # 街镇: a grid code of level street
    "leader": LEADER_ACTIONS,
    "admin": TRIAGE_ACTIONS,
}
ROLES = tuple(ROLE_ACTIONS)
GRID_ROLES = ("grid", "street")  # staff who belong to a grid, and get its cases


def in_grid(grid_code: str | None, staff_grid: str | None) -> bool:
    """True if grid_code is staff_grid or below it.

    Grid codes are hierarchical by prefix (WC-YLD-YX-01-A lies in WC-YLD-YX-01), which
    sync_reference_data checks when it loads the grids.
    """
    if not grid_code or not staff_grid:
        return False
    return grid_code == staff_grid or grid_code.startswith(staff_grid + "-")


def can(staff: Staff | None, action: str, case: Case) -> bool:
    """May this (active) staff member do `action` to `case`?"""
    if staff is None or not staff.active:
        return False
    if action not in ROLE_ACTIONS.get(staff.role, frozenset()):
        return False
    if staff.role == "department":
        return bool(staff.department_code) and case.department_code == staff.department_code
    if staff.role in GRID_ROLES:
        # Acting needs the case to be with their grid (or one below it); seeing it, only
        # that it lies there.
        where = case.handling_grid_code if action in HANDLING_ACTIONS else case.grid_code
        return in_grid(where, staff.grid_code)
    return True


def can_on_part(staff: Staff | None, action: str, part: CasePart) -> bool:
    """May this staff member do `action` to a 攻坚哨 part? A department acts on its own part
    only; the other roles as on any case (grid staff not at all: parts are departments')."""
    if staff is None or not staff.active:
        return False
    if action not in ROLE_ACTIONS.get(staff.role, frozenset()):
        return False
    if staff.role == "department":
        return bool(staff.department_code) and part.department_code == staff.department_code
    return staff.role != "grid"
