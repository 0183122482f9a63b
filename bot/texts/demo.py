"""Texts of `whistle demo` that are about Whistle (whistle/demo.py): the walkthrough, the
role titles of :who and the enterprise hint; the terminal's own texts are in emulator/texts.py.
"""

from __future__ import annotations

TITLE = "吹哨报到 "  # the terminal's banner starts with it
WALKTHROUGH = (
    "试一试：/report 反映问题 → :as {triage} 确认派单 → :as {officer} 签收、办结 "
    "→ :as {resident} 评价。"
)
ENTERPRISE_TRY = (
    "企业：:as {enterprise} → /enterprise 登记（演示用统一社会信用代码 {code}）→ 描述企业诉求。"
)
NO_DEPARTMENT_STAFF = "注意：这些部门在 config.toml 中没有办事员，派给它们的案件无人签收：{names}"
WHO_ENTERPRISE_HINT = "（先发送 /enterprise 登记，演示用信用代码 {code}）"
ROLE_TITLES = {
    "resident": "居民",
    "enterprise": "企业",
    "triage": "分拨员（分拨中心）",
    "department": "部门办事员（各部门工作群）",
    "grid": "网格员",
    "street": "街镇工作人员",
    "leader": "督办领导（督办室）",
    "admin": "系统管理员",
}
