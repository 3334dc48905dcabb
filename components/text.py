"""Labels are data: helpers to put identity names, file names and messages into Markdown
(and plotly's HTML-ish text) so they show literally.

Streamlit has no escape helper. Its Markdown (CommonMark + GFM + its own ``:color[...]``,
``:emoji:`` and ``$math$`` extensions) honours a backslash before any ASCII punctuation, so
escaping every punctuation character turns a label into plain text: no link, image,
emphasis, colour directive, autolink or HTML survives."""

from __future__ import annotations

import html
import re
import string

_PUNCT = frozenset(string.punctuation)
# A server path in a message: absolute (/x/y), home-relative (~/x) or ./ ../ relative, or
# any word containing two slashes (data/models/.deepface/weights). Ends at whitespace or quotes.
_PATH = re.compile(r"""(?<![\w])(?:~|\.{1,2})?/[^\s'"`]+|[^\s'"`/]+(?:/[^\s'"`/]*){2,}""")
HIDDEN_PATH = "(a folder on the server)"


def md_escape(text: object) -> str:
    """``text`` for Markdown: every ASCII punctuation backslash-escaped, line breaks as
    spaces (a label never holds one; a message's would start a new block)."""
    s = str(text).replace("\r", " ").replace("\n", " ")
    return "".join("\\" + ch if ch in _PUNCT else ch for ch in s)


def html_text(text: object) -> str:
    """``text`` for plotly's legend, hover and titles, which render a subset of HTML."""
    # Only <, > and &: plotly decodes those entities back, not &quot; (a quote is harmless once no tag can open).
    return html.escape(str(text), quote=False)


def without_paths(message: str, *known: object) -> str:
    """``message`` with server paths replaced by a neutral phrase: for visitors, who need not
    learn where the server keeps its files. ``known``: paths to remove wherever they occur
    (the data folder, relative as configured and resolved)."""
    for p in sorted((str(k) for k in known if k and "/" in str(k).strip("/")), key=len, reverse=True):
        message = re.sub(re.escape(p) + r"[^\s'\"`]*", HIDDEN_PATH, message)
    return _PATH.sub(HIDDEN_PATH, message)


def md_unescape(text: str) -> str:
    """The inverse of :func:`md_escape` (for reading a page's Markdown back, e.g. in tests)."""
    return re.sub(r"\\([!-/:-@\[-`{-~])", r"\1", text)


# What the Match page writes for a face's best match: (escaped identity, colour, verdict).
BEST_MATCH = re.compile(r"\*\*Best match:\*\* ((?:\\.|[^\\\n])*?) :(\w+)\[\*\*([a-z ]+)\*\*\]")
