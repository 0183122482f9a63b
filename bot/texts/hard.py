"""Texts of 攻坚哨: hard cases shared out to a lead and co-departments (bot/hard.py)."""

from __future__ import annotations

# ---------------------------------------------------------------- marking a case 攻坚
BTN_HARD = "🧩 攻坚哨"
BTN_HARD_NEXT = "➡️ 下一步：填写会议决定"
HARD_CO_CHOSEN = "✅ {name}"
PICK_HARD_LEAD = "请选择牵头部门"
PICK_HARD_CO = "请选择协同部门（可多选），选好后点“下一步”"
ASK_HARD_DECISION = (
    "请输入专题会议的决定：各部门分工、费用由谁承担、完成时限（直接回复本消息；/cancel 取消）"
)
HARD_MARKED_OK = "✅ {ref} 已列为攻坚哨：{lead}牵头，{co}协同。"
DONE_HARD = "已列为攻坚哨"
GONGJIAN_USAGE = "用法：/gongjian 案件编号，例如 /gongjian WC-20261124-0001"
GONGJIAN_PROMPT = "🧩 将 {ref} 列为攻坚哨\n📝 {snippet}\n\n请选择牵头部门："
OVERRIDE_USAGE = (
    "用法：/override 案件编号 理由\n"
    "例如 /override WC-20261124-0001 经专题会议研究，剩余工作由牵头部门统一完成"
)
OVERRIDE_OK = "✅ {ref}：不再等待{departments}（理由：{reason}），牵头部门可以办结全案。"

# ---------------------------------------------------------------- what the groups see
POST_HARD = "🧩 攻坚哨 · 牵头：{lead} · 协同：{co}"
POST_HARD_DECISION = "📋 会议决定：{decision}"
POST_HARD_PARTS = "协同进展：{parts}"
PART_STATE = "{department} {status}"
POST_PART_HEAD = "🧩 攻坚哨 {ref}：请贵部门协同办理（牵头：{lead}）"
POST_PART_STATUS = "本部门任务：{status}"
POST_PART_RESULT = "本部门办理结果：{result}"
BTN_PART_SIGN = "✍️ 签收本部门任务"
BTN_PART_RESOLVE = "✅ 本部门任务办结"
ASK_PART_RESULT = "请输入本部门任务的办理结果（直接回复本消息；/cancel 取消）"
PART_RESOLVED_OK = "✅ {ref} 本部门任务已办结，已告知牵头部门。"
DONE_PART_SIGNED = "已签收本部门任务"
DONE_PART_RESOLVED = "本部门任务已办结"
NOTICE_HARD_LEAD = (
    "🧩 {ref} 已列为攻坚哨，由贵部门牵头，{co}协同。\n"
    "📋 会议决定：{decision}\n"
    "各协同部门办结后，方可办结全案。"
)
NOTICE_PART_LEAD = "🧩 攻坚哨 {ref}：{department}{what}。\n{left}"
PART_WHAT = {"part_signed": "已签收本部门任务", "part_resolved": "已办结本部门任务"}
PARTS_LEFT = "尚待协同部门：{departments}"
PARTS_ALL_DONE = "各协同部门均已办结，可以办结全案。"
NOTICE_OVERRIDE_LEAD = (
    "🧩 攻坚哨 {ref}：领导决定不再等待{departments}（理由：{reason}），请牵头部门办结全案。"
)
NOTICE_OVERRIDE_PART = "🧩 攻坚哨 {ref}：领导决定本部门任务不再办理（理由：{reason}）。"

# ---------------------------------------------------------------- what the reporter sees
NOTICE_MARKED_HARD = (
    "🧩 {subject}（{ref}）已列为“攻坚哨”，由{department}牵头、{co}协同办理。"
    "发送 /case {ref} 可查看各部门进展。"
)
CASE_HARD = "🧩 攻坚哨：{lead}牵头"
CASE_PART = "　· {department}（协同）：{status}"
