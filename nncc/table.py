"""Plain-text tables for the terminal (right-aligned numbers, a rule under the header)."""
from __future__ import annotations


def format_table(header: list[str], rows: list[list], total_row: bool = False) -> str:
    cells = [[str(c) for c in header]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]

    def numeric(col: int) -> bool:
        return all(r[col].replace(",", "").replace(".", "").replace("-", "").replace("e", "")
                   .replace("+", "").isdigit() or r[col] in ("", "-", "inf", "-inf") for r in cells[1:])

    right = [numeric(i) for i in range(len(header))]

    def line(r):
        return "  ".join(c.rjust(w) if right[i] else c.ljust(w)
                         for i, (c, w) in enumerate(zip(r, widths))).rstrip()
    out = [line(cells[0]), "  ".join("-" * w for w in widths)]
    body = cells[1:]
    for i, r in enumerate(body):
        if total_row and i == len(body) - 1:
            out.append("  ".join("-" * w for w in widths))
        out.append(line(r))
    return "\n".join(out)


def ellipsize(text: str, width: int = 44) -> str:
    """`text` cut to `width` characters around a "..." (converters' node names run to hundreds
    of characters; their head and tail tell them apart)."""
    if len(text) <= width:
        return text
    head = (width - 3) // 2
    return text[:head] + "..." + text[len(text) - (width - 3 - head):]
