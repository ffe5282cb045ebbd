"""Text from recordings and file names, made safe to print on a terminal.

A recording's header, a python-can error or a file name can hold terminal escape sequences
(``ESC [ 2 J`` clears the screen; others retitle windows or forge output lines). Every message of
the data layer that quotes file content or a file name passes it through :func:`printable`, which
writes such characters the way ``repr`` does (``\\x1b``), and leaves ordinary text as it is.
"""

from __future__ import annotations

import os
import re

# C0 controls (tab and newline included: a quoted value must stay on one line), DEL, C1 controls,
# lone surrogates (undecodable bytes of a file name) and the bidirectional overrides that can
# make a name read backwards.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def _escape(match: re.Match) -> str:
    char = match.group()
    code = ord(char)
    if 0xDC80 <= code <= 0xDCFF:  # a byte that was not UTF-8 (os.fsdecode's surrogateescape)
        return f"\\x{code - 0xDC00:02x}"
    return repr(char)[1:-1] if code < 0x100 else f"\\u{code:04x}"


def printable(text: str | bytes | os.PathLike) -> str:
    """``text`` with control characters written as escapes: ``"a\\x1b[2Jb"`` → ``a\\x1b[2Jb``.

    Bytes are decoded as UTF-8, undecodable bytes shown as ``\\xNN``; paths are shown by name.
    """
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="surrogateescape")
    elif not isinstance(text, str):
        text = os.fspath(text)
        if isinstance(text, bytes):
            text = text.decode("utf-8", errors="surrogateescape")
    return _UNSAFE.sub(_escape, text)
