"""MkDocs hook: plain-text math subscripts and superscripts become HTML on the site.

The pages are written to read well as plain Markdown (in an editor, on GitHub): x_{k+1},
J^{pb}, x_k. On the site those become x<sub>k+1</sub>, J<sup>pb</sup>, x<sub>k</sub>. Code is
left alone: fenced and indented blocks, inline `code`, link targets and HTML tags.

Rules (outside code):

* ``_{…}`` / ``^{…}`` (balanced braces, no nesting) → ``<sub>…</sub>`` / ``<sup>…</sup>``;
* ``v_c`` where v is one (possibly accented) letter not preceded by a letter, digit or ``_``
  and c is one letter or digit not followed by one (x_k, A_k, ẋ_K, L_J; not max_steps,
  jax_enable_x64 or x_0_1);
* ``V^ab`` with one to four letters ab (J^pb, J^OS) → ``V<sup>ab</sup>``;
* ``∂_θ`` → ``∂<sub>θ</sub>``, and a Greek letter with a short word as subscript (σ_min).
"""

from __future__ import annotations

import re

# a single math letter: Latin, Greek, script capitals, dotted/barred letters (precomposed or
# with combining marks)
_LETTER = r"[A-Za-z\u0370-\u03ff\u1e00-\u1eff\U0001d49c-\U0001d4cf][\u0300-\u036f]*"
_BRACES = re.compile(r"([_^])\{([^{}\n]+)\}")
_SINGLE = re.compile(rf"(?<![\w\\])({_LETTER})_([A-Za-z0-9\u0370-\u03ff])(?![\w])")
_LABEL = re.compile(rf"(?<![\w\\])({_LETTER})\^([A-Za-z]{{1,4}})(?![\w])")  # J^pb, J^OS
_PARTIAL = re.compile(r"∂_([A-Za-z\u0370-\u03ff])")  # ∂_θF
_GREEK_WORD = re.compile(r"(?<![\w\\])([\u0370-\u03ff])_([a-z]{2,4})(?![\w])")  # σ_min
# pieces of a line that are not prose: inline code, HTML tags, link targets, autolinks
_PROTECTED = re.compile(r"(`+)[^`]*?\1|<[^>\n]+>|\]\([^)\n]*\)|https?://\S+")


def _prose(text: str) -> str:
    text = _BRACES.sub(lambda m: f"<{'sub' if m[1] == '_' else 'sup'}>{m[2]}</"
                       f"{'sub' if m[1] == '_' else 'sup'}>", text)  # fmt: skip
    text = _LABEL.sub(r"\1<sup>\2</sup>", text)
    text = _PARTIAL.sub(r"∂<sub>\1</sub>", text)
    text = _GREEK_WORD.sub(r"\1<sub>\2</sub>", text)
    return _SINGLE.sub(r"\1<sub>\2</sub>", text)


def convert_line(line: str) -> str:
    """One line of prose (a paragraph line, a table row, a heading)."""
    out, last = [], 0
    for match in _PROTECTED.finditer(line):
        out.append(_prose(line[last : match.start()]))
        out.append(match.group(0))
        last = match.end()
    out.append(_prose(line[last:]))
    return "".join(out)


def convert(markdown: str) -> str:
    """The page with its prose converted; fenced and indented code blocks unchanged."""
    lines = markdown.split("\n")
    fence = None
    previous_blank = True
    for i, line in enumerate(lines):
        stripped = line.lstrip()
        if fence is None and stripped.startswith(("```", "~~~")):
            fence = stripped[:3]
        elif fence is not None:
            if stripped.startswith(fence):
                fence = None
        elif line.startswith(("    ", "\t")) and previous_blank:
            pass  # an indented code block (it continues while lines stay indented)
        elif stripped.startswith(">") and stripped[1:].startswith("     "):
            pass  # an indented code block inside a quote
        else:
            lines[i] = convert_line(line)
        if fence is None and not (line.startswith(("    ", "\t")) and previous_blank):
            previous_blank = line.strip() == ""
    return "\n".join(lines)


def on_page_markdown(markdown: str, **kwargs) -> str:
    return convert(markdown)
