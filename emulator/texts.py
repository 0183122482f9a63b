"""Every text of the terminal chat (emulator/terminal.py), Simplified Chinese.

What is about Whistle itself (its roles, the walkthrough) lives in bot/texts/demo.py.
"""

from __future__ import annotations

HELP = """可用命令：
  直接输入文字          以当前身份发送（发到提示符 → 后面的聊天，默认私聊）
  行末加 \\             下一行接着写，整段作为一条多行消息发送（粘贴多行也是一条）
  /命令                 发送机器人命令，例如 /start
  数字 N                点击刚显示的消息上的第 N 个按钮（没有按钮时作为文字发送）
  :press N              点击最近一条带按钮的消息上的第 N 个按钮
  :photo [说明]         发送一张示例照片（可附说明文字）
  :loc 纬度 经度         发送位置，例如 :loc 28.37 112.82
  :as 编号或姓名         切换身份，例如 :as 9001 或 :as 水务局
  :who                  按角色列出所有身份和他们所在的群
  :to 群名或群ID         之后的文字发到该群；单独输入 :to 回到私聊
  :wait [N]             等待机器人的下一条（或 N 条）新消息
  :wait 文字            等待机器人发来含有这段文字的消息（适合脚本）
  :help                 显示本帮助
  :quit                 退出演示（也可以按 Ctrl-D）

点击群里的按钮、或机器人在群里向您提问后，文字自动发到那个群，直到您用 :to 换到别处。"""

BANNER = "{title}演示终端。输入 :help 查看命令，:who 查看身份，:quit 退出。"
FAREWELL = "再见！"

# ---------------------------------------------------------------- who, where
NOW_AS = "现在的身份：{name}（{uid}）"
NOW_AS_START = "现在的身份：{name}（{uid}），直接输入文字即可发送。"
NOW_AS_TO_GROUP = "，文字 → 发送到 {chat}"
NO_SUCH_IDENTITY = "没有这个身份：{who}。输入 :who 查看所有身份。"
AMBIGUOUS_IDENTITY = "“{who}”对应多个身份：{names}。请输入编号或更完整的姓名。"
WHO_TITLE = "可用身份（:as 编号或姓名 切换）："
WHO_LINE = "    {uid}  {name}{place}，{where}{mark}"
WHO_PLACE = "（{place}）"
WHO_GROUPS = "所在群：{groups}"
WHO_GROUP = "{title}（{chat_id}）"
WHO_PRIVATE_ONLY = "仅私聊"
WHO_CURRENT = " ← 当前"
ROLE_OTHER = "其他"
PRIVATE_CHAT = "私聊"

TO_PRIVATE = "之后的文字将发到私聊。"
TO_GROUP = "之后的文字将发到“{chat}”。"
NOT_IN_GROUP = "{name}不在群 {group} 中。输入 :who 查看所在群。"
TARGET_MOVED = "（之后输入的文字 → 发送到 {chat}；输入 :to 可改回私聊）"
TARGET_BACK = "（之后输入的文字 → 发送到私聊）"
ANSWER_HERE = "    ↳ 请直接输入回复 → 发送到 {chat}"

# ---------------------------------------------------------------- buttons
NO_BUTTONS = "当前没有可以点击的按钮。"
BUTTON_RANGE = "请输入 1 到 {count} 之间的按钮编号。"
DIGITS_AS_TEXT = "（刚显示的消息只有 {count} 个按钮，“{text}”作为文字发送）"
DIGITS_NO_BUTTONS = (
    "（刚显示的消息没有按钮，“{text}”作为文字发送；要点更早消息上的按钮请用 :press {text}）"
)
LINK_BUTTON = "“{text}”是链接按钮：{url}"
NO_LINK = "（无链接）"
PRESSED = "（已点击“{text}”）"
SENT_LOCATION = "（已发送演示位置 {lat}, {lon}）"
SENT_CONTACT = "（已发送演示电话 {phone}）"
SENT_KEYBOARD_TEXT = "（已发送“{text}”）"

# ---------------------------------------------------------------- other commands
SENT_PHOTO = "（已发送一张示例照片）"
LOC_USAGE = "用法：:loc 纬度 经度，例如 :loc 28.37 112.82"
LOC_RANGE = "纬度应在 -90 到 90 之间，经度应在 -180 到 180 之间。"
WAIT_TIMEOUT = "（等待 {seconds:g} 秒，机器人没有新的回复）"
UNKNOWN_COMMAND = "未知命令 :{command}，输入 :help 查看帮助。"
UNREADABLE_INPUT = "（这一行含有无法识别的字符，已忽略，请重新输入）"

# ---------------------------------------------------------------- bot messages
UNREAD = "—— {count} 条未读消息 ——"
DELETED = "{label} 撤回了一条消息"
EDITED = "（已修改）"
ALERT = "⚠ 弹窗"
TOAST = "💬 提示"
KEYBOARD = "键盘："
PHOTO = "[图片] "
DOCUMENT = "[文件 {name}] "
VENUE = "[地点] {title}（{address}）"
LOCATION = "[位置] {lat:.5f}, {lon:.5f}"
