"""Text preparation and the two feature views: jieba words and character n-grams.

Training and prediction both go through these functions, so a model always sees text cut
the same way. jieba is initialised lazily, once per process.
"""

from __future__ import annotations

import functools
import logging
import re
import threading
import unicodedata
from dataclasses import dataclass
from math import log as ln
from pathlib import Path

import numpy as np

# Longer messages are cut: the first few thousand characters say what a message is about,
# and a 100 KB paste must not cost a second of CPU.
MAX_CHARS = 3000
# Tokens longer than this are URLs, ids or digit runs: no topical signal, large vocabularies.
MAX_TOKEN_CHARS = 12

DEFAULT_USERDICT = Path(__file__).with_name("userdict.txt")

_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_KEPT_CHARS = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaffa-z0-9]+")
_OTHER_CHARS = re.compile(r"[^\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaffa-z0-9]+")
_SPACES = re.compile(r"\s+")
# What jieba cuts as a block (its re_han_default, lower case only after prepare()); any
# other kept character is a token of its own.
_JIEBA_BLOCK = re.compile(r"[\u4e00-\u9fd5a-z0-9]+")
_HAN_RUN = re.compile(r"[\u4e00-\u9fd5a-z0-9]+|\S")
_LATIN = frozenset("abcdefghijklmnopqrstuvwxyz0123456789")

_lock = threading.Lock()
_tokenizer = None
_added_words: set[str] = set()


@dataclass(frozen=True, slots=True)
class Analyzed:
    """One message cut into jieba words and reduced to the characters n-grams are built on."""

    words: tuple[str, ...]
    chars: str


def prepare(text: str) -> str:
    """NFKC (full-width → half-width), lower case, single spaces, at most MAX_CHARS."""
    text = unicodedata.normalize("NFKC", text or "")
    return _SPACES.sub(" ", text).strip().lower()[:MAX_CHARS]


def has_chinese(text: str) -> bool:
    return _HAN.search(text) is not None


def read_userdict(path: Path) -> list[str]:
    """The words of a jieba user dictionary (one `word [freq] [tag]` a line, # comments)."""
    words = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            words.append(line.split()[0])
    return words


def _get_tokenizer():
    """The process's jieba tokenizer, built on first use (about half a second with the cache)."""
    global _tokenizer
    if _tokenizer is None:
        with _lock:
            if _tokenizer is None:
                import jieba

                jieba.setLogLevel(logging.WARNING)
                tokenizer = jieba.Tokenizer()
                tokenizer.initialize()
                _tokenizer = tokenizer
    return _tokenizer


def add_words(words: list[str] | tuple[str, ...]) -> None:
    """Teach the tokenizer governance words so they stay whole (物业费, 维修基金, …)."""
    missing = [w for w in words if w not in _added_words]
    if not missing:
        return
    tokenizer = _get_tokenizer()
    with _lock:
        for word in missing:
            tokenizer.add_word(word)
            _added_words.add(word)
    analyze_prepared.cache_clear()  # cut with the old dictionary


def load_userdict(path: Path | None = None) -> list[str]:
    """Read a user dictionary (the shipped one by default) into the tokenizer; its words."""
    words = read_userdict(path or DEFAULT_USERDICT)
    add_words(words)
    return words


def words_of(prepared: str) -> tuple[str, ...]:
    """jieba words of prepared text (as jieba's cut with HMM=False), without punctuation,
    spaces and over-long tokens."""
    tokenizer = _get_tokenizer()
    freq, logtotal = tokenizer.FREQ, ln(tokenizer.total)
    words: list[str] = []
    # Punctuation and symbols become spaces: no word is formed across them.
    for match in _HAN_RUN.finditer(_OTHER_CHARS.sub(" ", prepared)):
        run = match.group()
        if len(run) == 1 and not _JIEBA_BLOCK.match(run):
            words.append(run)  # a rare character jieba passes through on its own
        else:
            words.extend(_cut_block(run, freq, logtotal))
    return tuple(w for w in words if len(w) <= MAX_TOKEN_CHARS)


def _cut_block(block: str, freq: dict, logtotal: float) -> list[str]:
    """jieba's Tokenizer.__cut_DAG_NO_HMM, inlined: the most probable path through the
    dictionary's word graph, runs of single latin letters/digits joined. Same output (a test
    compares it with jieba on real text), twice as fast — jieba is most of a suggestion's time.
    """
    n = len(block)
    score = [0.0] * (n + 1)
    end = [0] * (n + 1)
    get = freq.get
    for start in range(n - 1, -1, -1):  # right to left, as jieba's calc()
        best, best_end = None, start
        stop = start + 1
        f = get(block[start])
        while f is not None:  # every dictionary prefix block[start:stop]
            if f:
                s = ln(f) - logtotal + score[stop]
                if best is None or s >= best:  # ties go to the longer word, as in jieba
                    best, best_end = s, stop - 1
            if stop == n:
                break
            stop += 1
            f = get(block[start:stop])
        if best is None:
            best = ln(get(block[start]) or 1) - logtotal + score[start + 1]
        score[start], end[start] = best, best_end
    words, latin, x = [], "", 0
    while x < n:
        y = end[x] + 1
        if y == x + 1 and block[x] in _LATIN:
            latin += block[x]
        else:
            if latin:
                words.append(latin)
                latin = ""
            words.append(block[x:y])
        x = y
    if latin:
        words.append(latin)
    return words


def chars_of(prepared: str) -> str:
    """Only Chinese characters, latin letters and digits: what character n-grams are cut from."""
    return "".join(_KEPT_CHARS.findall(prepared))


def analyze(text: str) -> Analyzed:
    """Prepare a raw message and cut it into both feature views."""
    return analyze_prepared(prepare(text))


# A report is cut for its suggestion and again for the duplicate finder (the question, the
# triage hint, the index) within seconds: the latest messages' cuts are kept. jieba is most of
# either's time.
ANALYZED_KEPT = 256


@functools.lru_cache(maxsize=ANALYZED_KEPT)
def analyze_prepared(prepared: str) -> Analyzed:
    """analyze() of text already prepared (prepare())."""
    return Analyzed(words=words_of(prepared), chars=chars_of(prepared))


def char_ngrams(chars: str, low: int, high: int) -> list[str]:
    """All character n-grams of length low..high."""
    return [chars[i : i + n] for n in range(low, high + 1) for i in range(len(chars) - n + 1)]


# Character n-grams as integers: each character's code point + 1 in 21 bits, so lengths 1..3
# fall in disjoint ranges of an int64 and a whole message is looked up with one searchsorted.
_BITS = 21
MAX_NGRAM = 3


def ngram_key(gram: str) -> int:
    """The int64 key of one character n-gram (len 1..MAX_NGRAM)."""
    key = 0
    for ch in gram:
        key = (key << _BITS) | (ord(ch) + 1)
    return key


def ngram_keys(chars: str, low: int, high: int) -> np.ndarray:
    """Keys of all character n-grams of length low..high (same as ngram_key of char_ngrams)."""
    codes = np.frombuffer(chars.encode("utf-32-le"), dtype=np.uint32).astype(np.int64) + 1
    parts = []
    for n in range(low, min(high, len(codes)) + 1):
        key = codes[: len(codes) - n + 1].copy()
        for offset in range(1, n):
            key = (key << _BITS) | codes[offset : len(codes) - n + 1 + offset]
        parts.append(key)
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


def analyze_many(texts: list[str], n_jobs: int = 1, progress=None) -> list[Analyzed]:
    """analyze() over many texts, in n_jobs processes when it is worth it (jieba is pure Python)."""
    # Forked workers inherit the loaded dictionary. Forking is only safe in a process without
    # other threads (the bot has some): there, and for small jobs, stay in this process.
    if n_jobs <= 1 or len(texts) < 2000 or threading.active_count() > 1:
        out = []
        for i, text in enumerate(texts):
            out.append(analyze(text))
            if progress and (i + 1) % 1000 == 0:
                progress(i + 1, len(texts))
        return out
    import multiprocessing

    _get_tokenizer()
    out = []
    with multiprocessing.get_context("fork").Pool(n_jobs) as pool:
        for item in pool.imap(analyze, texts, chunksize=100):
            out.append(item)
            if progress and len(out) % 1000 == 0:
                progress(len(out), len(texts))
    return out
