"""The learning loop's words (#16): /model in chat and `whistle model` (counts and scores,
never a message)."""

MODEL_STATUS_NAMES = {
    "champion": "✅ 在用",
    "challenger": "🆕 待评",
    "retired": "⏸ 已退役",
    "refused": "🚫 未通过",
}
MODEL_HEADER = "🤖 智能分拨模型\n当前在用：{version}\n最近 {shown} 个版本（共 {total} 个）："
MODEL_ENTRY = (
    "{status} {version}（{created}）\n"
    "  训练样本 {examples} 条：语料 {corpus}，人工改派 {corrections}，人工确认 {confirmed}\n"
    "  留出评测 宏F1：最近决定 {recent}，参照集 {reference}\n"
    "  建议采纳率 {acceptance}"
)
MODEL_SCORE = "{f1:.3f}（{n} 条）"
MODEL_NO_SCORE = "—"
MODEL_ACCEPTANCE = "{rate:.0%}（{accepted}/{reviewed}）"
MODEL_REFUSAL = "  未通过原因：{reasons}"
MODEL_NONE = (
    "模型库中还没有由学习闭环训练的模型（当前在用：{version}）。人工改派满 {after} 条后会自动训练。"
)
MODEL_USAGE = (
    "用法：/model 查看模型；/model promote 版本号 启用某个版本；"
    "/model rollback 回滚到上一个在用模型"
)
MODEL_PROMOTED = "已启用模型 {version}，机器人已改用该模型（无需重启）。"
MODEL_ROLLED_BACK = "已回滚到模型 {version}，机器人已改用该模型（无需重启）。"
MODEL_CHANGE_FAILED = "操作未完成：{reason}"
