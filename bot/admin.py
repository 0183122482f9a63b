"""Admin commands: /reload_model, /model and /staff_add ID ROLE [DEPT|GRID] [NAME]. Only role
"admin"."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable

from telegram import Update

from bot import texts
from bot.context import Context
from bot.duties import learning
from classifier.registry import RegistryError
from models import people
from models.lifecycle import CaseError
from models.permissions import ROLES

log = logging.getLogger(__name__)
Command = Callable[[Update, Context], Awaitable[None]]


def admin_only(command: Command) -> Command:
    """Refuse politely unless the sender is an active admin (config.toml or the store)."""

    @functools.wraps(command)
    async def wrapper(update: Update, context: Context) -> None:
        async with context.services.session() as session:
            staff = await people.get_staff(session, update.effective_user.id)
        if staff is None or staff.role != "admin":
            await update.effective_message.reply_text(texts.ADMIN_ONLY)
            return
        await command(update, context)

    return wrapper


def model_version(suggester) -> str:
    return str(getattr(suggester, "model_version", "") or "—")


async def reload_model(context: Context) -> bool:
    """Load a newer model file if there is one (off the event loop: loading takes a moment)."""
    suggester = context.services.suggester
    changed = bool(await asyncio.to_thread(suggester.reload_if_changed))
    if changed:
        log.info("classifier model reloaded: %s", model_version(suggester))
    return changed


async def reload_model_job(context: Context) -> None:
    """Repeating job (classifier.reload_check_seconds): pick up a retrained model."""
    try:
        await reload_model(context)
    except Exception:
        log.exception("could not reload the classifier model; keeping the current one")


@admin_only
async def reload_model_command(update: Update, context: Context) -> None:
    """/reload_model."""
    changed = await reload_model(context)
    version = model_version(context.services.suggester)
    template = texts.MODEL_RELOADED if changed else texts.MODEL_UNCHANGED
    await update.effective_message.reply_text(template.format(version=version))


def _parse_staff_add(args: list[str], grids: set[str]) -> tuple[int, str, str | None, str] | None:
    """(telegram id, role, department or grid code, name) from /staff_add's words, or None."""
    if len(args) < 2 or not args[0].isdigit() or args[1].lower() not in ROLES:
        return None
    role = args[1].lower()
    needs_place = role in ("department", "grid")
    if needs_place and len(args) < 3:
        return None
    where = args[2] if needs_place else None
    if role == "grid" and where not in grids:
        return None
    name = " ".join(args[3 if needs_place else 2 :])[:100]
    return int(args[0]), role, where, name


@admin_only
async def staff_add(update: Update, context: Context) -> None:
    """/staff_add ID ROLE [DEPT|GRID] [NAME]: add or change a staff member."""
    services = context.services
    grids = {g.code for g in services.settings.grids} | {g.code for g in services.gridmap.records()}
    parsed = _parse_staff_add(context.args or [], grids)
    if parsed is None:
        await update.effective_message.reply_text(texts.STAFF_ADD_USAGE)
        return
    telegram_id, role, where, name = parsed
    try:
        async with context.services.session() as session:
            existing = await people.get_staff(session, telegram_id)
            await people.upsert_staff(
                session,
                telegram_id,
                name=name or (existing.name if existing else ""),
                role=role,
                department_code=where if role == "department" else None,
                grid_code=where if role == "grid" else None,
            )
    except CaseError as exc:
        await update.effective_message.reply_text(texts.error_text(exc))
        return
    await update.effective_message.reply_text(
        texts.STAFF_ADDED.format(
            telegram_id=telegram_id,
            name=f" {name}" if name else "",
            role=texts.ROLE_NAMES[role],
            where=f"，{where}" if where else "",
        )
    )


@admin_only
async def model_command(update: Update, context: Context) -> None:
    """/model [promote VERSION | rollback]: the models the learning loop kept, or change the
    one in service (the bot switches at once)."""
    services, args = context.services, context.args or []
    reply = update.effective_message.reply_text
    if not args:
        await reply(
            await learning.model_overview(
                services.settings, services.session, model_version(services.suggester)
            )
        )
        return
    verb = args[0].lower()
    if (verb, len(args)) not in (("promote", 2), ("rollback", 1)):
        await reply(texts.MODEL_USAGE)
        return
    try:
        if verb == "promote":
            version = await learning.promote_version(
                services.settings, services.session, args[1], services.clock()
            )
        else:
            version = await learning.rollback(services.settings, services.session, services.clock())
    except RegistryError as exc:
        await reply(texts.MODEL_CHANGE_FAILED.format(reason=exc))
        return
    await learning.put_in_service(services)
    template = texts.MODEL_PROMOTED if verb == "promote" else texts.MODEL_ROLLED_BACK
    await reply(template.format(version=version))
