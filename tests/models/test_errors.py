"""Coded errors and names kept in one place: every code raised in models/ and bot/ has words in bot/texts/errors.py that
take exactly the parameters it is raised with, and models/ raises no words of its own."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from bot.texts.errors import ERROR_TEXTS, FIELD_NAMES, error_text
from models.lifecycle import ALREADY_DONE_ACTIONS, AlreadyDone, CaseError, target_status
from models.tables import CLOSED, RESOLVED, SIGNED
from models.validation import InvalidInput, clean_text

ROOT = Path(__file__).resolve().parents[2]
ERRORS = {
    "CaseError",
    "CaseNotFound",
    "IllegalTransition",
    "AlreadyDone",
    "NotPermitted",
    "StaleVersion",
    "InvalidInput",
}
HAN = re.compile(r"[\u4e00-\u9fff]")


def _sources(*folders: str):
    for folder in folders:
        for path in sorted((ROOT / folder).rglob("*.py")):
            if "texts" not in path.parts:
                yield path, ast.parse(path.read_text(encoding="utf-8"))


def raised_codes() -> dict[str, set[frozenset[str]]]:
    """code → the sets of parameter names it is raised with, over models/ and bot/."""
    found: dict[str, set[frozenset[str]]] = {}
    for _, tree in _sources("models", "bot"):
        for node in ast.walk(tree):
            if not (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id in ERRORS
                and node.args
            ):
                continue
            first = node.args[0]  # a code, or `code if … else other_code`
            for choice in (first.body, first.orelse) if isinstance(first, ast.IfExp) else (first,):
                if isinstance(choice, ast.Constant):
                    found.setdefault(choice.value, set()).add(
                        frozenset(k.arg for k in node.keywords)
                    )
    return found


def test_every_raised_code_has_words_taking_its_parameters():
    raised = raised_codes()
    for action in ALREADY_DONE_ACTIONS:  # raised as f"already_{action}" by target_status()
        raised.setdefault(f"already_{action}", set()).add(frozenset())
    assert len(raised) > 40
    missing = sorted(set(raised) - set(ERROR_TEXTS))
    assert not missing, missing
    for code, param_sets in raised.items():
        for params in param_sets:
            exc = CaseError(code, **dict.fromkeys(params, "x"))
            worded = error_text(exc)
            assert HAN.search(worded) and "{" not in worded, (code, worded)
    assert not sorted(set(ERROR_TEXTS) - set(raised)), "words for a code nobody raises"


def test_every_text_field_has_a_name():
    fields = set()
    for _, tree in _sources("models"):
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                fields |= {
                    k.value.value
                    for k in node.keywords
                    if k.arg == "field" and isinstance(k.value, ast.Constant)
                }
    assert fields and fields <= set(FIELD_NAMES), sorted(fields - set(FIELD_NAMES))


def test_models_raise_codes_not_words():
    """No Chinese in what models/ raises (config and migration errors for the operator aside)."""
    worded = []
    for path, tree in _sources("models"):
        for node in ast.walk(tree):
            if isinstance(node, ast.Raise) and node.exc is not None:
                call = node.exc
                name = getattr(getattr(call, "func", None), "id", "")
                if name in {"ConfigError", "ValueError", "MigrationError"}:
                    continue  # read by the operator from `whistle check`, with config.toml
                if HAN.search(ast.unparse(call)):
                    worded.append(f"{path.name}:{node.lineno}")
    assert not worded, worded


@pytest.mark.parametrize(
    "status, code, words",
    [
        (SIGNED, "already_sign", "已被签收"),
        (CLOSED, "illegal_in_status", "案件当前为“已结案”"),
    ],
)
def test_a_refused_move_is_worded_with_its_status(status, code, words):
    with pytest.raises(CaseError) as caught:
        target_status("sign", status)
    assert caught.value.code == code and words in error_text(caught.value)
    assert isinstance(caught.value, AlreadyDone) == (code == "already_sign")


def test_field_and_status_parameters_are_shown_by_name():
    with pytest.raises(InvalidInput) as caught:
        clean_text(" ", field="return_reason", min_len=2, max_len=10)
    assert error_text(caught.value) == "退回理由不能少于2个字"
    merged = CaseError("merge_target_closed", ref="WC-1", status=RESOLVED)
    assert error_text(merged) == "WC-1 当前为“已办结”，只能合并到尚未办结的案件"


def test_roles_and_channels_are_named_from_one_list():
    from bot import texts
    from models.lifecycle import KIND_NAMES, KIND_SHORT_NAMES
    from models.permissions import ROLE_ACTIONS, ROLES
    from models.tables import ENTERPRISE, RESIDENT

    assert (
        ROLES
        == ("triage", "department", "grid", "street", "leader", "admin")
        == tuple(ROLE_ACTIONS)
    )
    assert tuple(texts.ROLE_NAMES) == ROLES
    assert texts.KIND_NAMES is KIND_NAMES
    assert set(KIND_NAMES) == set(KIND_SHORT_NAMES) == {RESIDENT, ENTERPRISE}
    # the short name is the start of the full one (居民 / 居民随手拍), never another word
    assert all(KIND_NAMES[k].startswith(KIND_SHORT_NAMES[k]) for k in KIND_NAMES)


def test_every_bot_module_that_words_an_error_can_reach_the_helper():
    import importlib

    for path in sorted((ROOT / "bot").glob("*.py")):
        source = path.read_text(encoding="utf-8")
        if "texts.error_text(" in source:
            module = importlib.import_module(f"bot.{path.stem}")
            assert hasattr(module.texts, "error_text"), path.name
