"""`whistle apikey add|list|revoke`: the console side of models/apiclients.py."""

from __future__ import annotations

from datetime import UTC, datetime

from bot.texts.errors import error_text
from models import apiclients
from models.engine import make_engine, session_scope
from models.validation import InvalidInput


async def run_apikey(args, settings) -> int:
    """Run one apikey action; 0 on success, 1 on a refused input (said in one line)."""
    now = datetime.now(UTC).replace(tzinfo=None)
    engine = make_engine(settings.database_url)
    try:
        async with session_scope(engine) as session:
            if args.action == "add":
                client, key = await apiclients.add_client(
                    session, args.name, now, callback_url=args.callback, channel=args.channel
                )
                print(
                    f"已创建客户端“{client.name}”（渠道 {client.channel}）。密钥只显示这一次，请妥善保存："
                )
                print(key)
            elif args.action == "list":
                for c in await apiclients.list_clients(session):
                    state = "有效" if c.active else f"已吊销 {c.revoked_at:%Y-%m-%d %H:%M}"
                    print(
                        f"{c.name}\t{c.channel}\t{state}\t{c.callback_url or '-'}\t"
                        f"{c.created_at:%Y-%m-%d %H:%M}"
                    )
            elif not await apiclients.revoke(session, args.name, now):
                print(f"没有名为“{args.name}”的有效客户端")
                return 1
            else:
                print(f"已吊销客户端“{args.name}”的密钥")
    except InvalidInput as exc:
        print(error_text(exc))
        return 1
    finally:
        await engine.dispose()
    return 0
