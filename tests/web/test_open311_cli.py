"""`whistle apikey add|list|revoke` in-process on a real SQLite file."""

from __future__ import annotations

import asyncio

from models import apiclients
from models.engine import make_engine, session_scope
from tests.startup_kit import clean_env, write_config
from whistle import cli


async def _client(url: str, key: str):
    engine = make_engine(url)
    try:
        async with session_scope(engine) as s:
            return await apiclients.authenticate(s, key)
    finally:
        await engine.dispose()


def test_apikey_add_list_revoke(tmp_path, monkeypatch, capsys):
    url = f"sqlite+aiosqlite:///{tmp_path / 'keys.db'}"
    clean_env(monkeypatch, WHISTLE_CONFIG=str(write_config(tmp_path)), DATABASE_URL=url)

    assert cli.main(["apikey", "add", "12345热线", "--callback", "https://12345.example/cb"]) == 0
    key = capsys.readouterr().out.strip().splitlines()[-1]
    client = asyncio.run(_client(url, key))
    assert client.name == "12345热线" and client.channel == "hotline"
    assert client.key_hash != key and key not in client.key_hash  # only the hash is kept

    assert cli.main(["apikey", "add", "12345热线"]) == 1
    assert "已有名为" in capsys.readouterr().out
    assert cli.main(["apikey", "add", "app", "--callback", "ftp://x"]) == 1
    assert "回调地址" in capsys.readouterr().out

    assert cli.main(["apikey", "list"]) == 0
    assert "12345热线\thotline\t有效\thttps://12345.example/cb" in capsys.readouterr().out
    assert cli.main(["apikey", "revoke", "12345热线"]) == 0
    assert asyncio.run(_client(url, key)) is None
    assert cli.main(["apikey", "revoke", "12345热线"]) == 1
    assert "没有名为" in capsys.readouterr().out
