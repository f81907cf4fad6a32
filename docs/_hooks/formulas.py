"""A griffe extension (mkdocs.yml, mkdocstrings' ``extensions``): docstring formulas rendered by KaTeX.

tfdml's docstrings write formulas in plain Unicode text, readable in ``help()`` and in the code, as an indented
block or a fenced block without a language (``ℓ_ij = (α + y_ij (D_ij − β_i))_+``), or as a paragraph that is one
double-backticked expression. This extension turns each such block into
``<div class="formula" data-tex="…"><pre>…</pre></div>``: ``data-tex`` holds the formula translated to LaTeX by
:func:`to_latex`, which ``docs/assets/formulas.js`` typesets with the vendored KaTeX, and the ``<pre>`` keeps the
Unicode text, shown as it is where KaTeX cannot typeset the translation (and without JavaScript). It also drops
Sphinx roles (``:class:`~tfdml.losses.MarginLoss``` becomes ``MarginLoss`` in code), which Markdown does not know.
"""

import html
import re

import griffe

# Characters that make a block a formula rather than code, a command or a table.
MATH = re.compile(r"[α-ωΑ-Ωℓ∑Σ≠≤≥−·‖∈√∞×⁰-⁹₀-₉⁺⁻ᵀ∝⇔∂]")
NOT_MATH = re.compile(r">>>|^\s*(?:\$ |python |import |from |def |class |return |\w+\s*:\s*\w+\s*#)|\btf\.|\bnp\.", re.M)
ROLE = re.compile(r":(?:py:)?(?:class|func|meth|attr|mod|data|obj|exc|const):`~?(?:[\w.]*\.)?([\w]+)`")

SYMBOLS = {
    "ℓ": r"\ell ", "Σ": r"\sum ", "∑": r"\sum ", "Π": r"\prod ", "∏": r"\prod ", "−": "-", "·": r"\cdot ",
    "×": r"\times ", "≠": r"\neq ", "≤": r"\leq ", "≥": r"\geq ", "∈": r"\in ", "∉": r"\notin ", "‖": r"\| ",
    "√": r"\surd ", "∞": r"\infty ", "→": r"\to ", "≈": r"\approx ", "∝": r"\propto ", "∀": r"\forall ",
    "⊙": r"\odot ", "∘": r"\circ ", "±": r"\pm ", "↦": r"\mapsto ", "⇒": r"\Rightarrow ", "⇔": r"\Leftrightarrow ",
    "∩": r"\cap ", "∪": r"\cup ", "∅": r"\emptyset ", "∂": r"\partial ", "∇": r"\nabla ", "…": r"\ldots ",
    "⌈": r"\lceil ", "⌉": r"\rceil ", "⌊": r"\lfloor ", "⌋": r"\rfloor ", "⟨": r"\langle ", "⟩": r"\rangle ",
    "~": r"\sim ", "≳": r"\gtrsim ", "≲": r"\lesssim ", "′": "'", "ε": r"\varepsilon ", "ϵ": r"\epsilon ",
    "φ": r"\varphi ", "ϕ": r"\phi ", "#": r"\#", "%": r"\%", "&": r"\&", "$": r"\$", "\\": r"\backslash ",
}
GREEK = dict(zip("αβγδζηθικλμνξπρστυχψωΓΔΘΛΞΦΨΩ", (
    "alpha beta gamma delta zeta eta theta iota kappa lambda mu nu xi pi rho sigma tau upsilon chi psi omega "
    "Gamma Delta Theta Lambda Xi Phi Psi Omega").split()))
SYMBOLS.update({letter: f"\\{name} " for letter, name in GREEK.items()})
SUPERSCRIPTS = dict(zip("⁰¹²³⁴⁵⁶⁷⁸⁹⁺⁻⁽⁾ᵀⁿ", "0123456789+-()Tn"))
SUBSCRIPTS = dict(zip("₀₁₂₃₄₅₆₇₈₉", "0123456789"))
ACCENTS = {"\u0302": r"\hat", "\u0303": r"\tilde", "\u0304": r"\bar"}
FUNCTIONS = {"log", "exp", "max", "min", "cos", "sin", "tan", "tanh", "arccos", "sup", "inf", "det", "ln", "argmax", "argmin"}
OPERATORS = {"softmax", "softplus", "logsumexp", "mean", "sign", "sqrt", "diag", "var", "Var", "Cov", "acos", "tr",
             "relu", "clip"}
ENGLISH = {"if", "or", "of", "to", "is", "as", "in", "at", "by", "on", "an", "be", "no", "for", "and", "the", "else",
           "with", "when", "where", "each", "all", "otherwise", "else", "per"}


def to_latex(text):
    """The LaTeX of a Unicode formula: one line of the block a row of a left-aligned array."""
    rows = [_line(line.strip()) for line in text.strip("\n").splitlines() if line.strip()]
    return rows[0] if len(rows) == 1 else r"\begin{array}{l}" + r" \\ ".join(rows) + r"\end{array}"


def _line(line, subscript=False):
    out, i, groups = [], 0, []  # groups: for each open "{", whether it groups (True) or is a literal brace
    while i < len(line):
        char = line[i]
        if char in " \t":
            j = i
            while j < len(line) and line[j] in " \t":
                j += 1
            out.append(r"\quad " if j - i >= 2 else " ")
            i = j
            continue
        if char in "_^":
            out.append(char)
            i += 1
            if i < len(line) and line[i] == "{":
                groups.append(True)
                out.append("{")
                i += 1
            elif i < len(line) and line[i] == "(":
                depth, j = 0, i
                while j < len(line):
                    depth += {"(": 1, ")": -1}.get(line[j], 0)
                    if depth == 0:
                        break
                    j += 1
                out.append("{" + _line(line[i:j + 1], subscript=True) + "}")
                i = j + 1
            else:
                match = re.match(r"[-+]?[A-Za-z0-9α-ωΑ-Ωℓ'*.±]+", line[i:])
                token = match.group(0).rstrip(".") if match else line[i:i + 1]
                out.append("{" + _line(token, subscript=True) + "}")
                i += len(token)
            continue
        if char == "{":
            groups.append(False)
            out.append(r"\{")
        elif char == "}":
            out.append("}" if groups and groups.pop() else r"\}")
        elif char in SUPERSCRIPTS or char in SUBSCRIPTS:
            table, mark = (SUPERSCRIPTS, "^") if char in SUPERSCRIPTS else (SUBSCRIPTS, "_")
            j = i
            while j < len(line) and line[j] in table:
                j += 1
            out.append(mark + "{" + "".join(table[c] for c in line[i:j]).replace("T", r"\top ") + "}")
            i = j
            continue
        elif char.isalpha() and char not in SYMBOLS:
            j = i
            while j < len(line) and (line[j].isalpha() and line[j] not in SYMBOLS or line[j] in ACCENTS):
                j += 1
            word = line[i:j]
            if len(word) > 1 and word[1] in ACCENTS:
                out.append(f"{ACCENTS[word[1]]}{{{word[0]}}}")
                j = i + 2
            elif word in FUNCTIONS:
                out.append(f"\\{word} ")
            elif word in OPERATORS:
                out.append(f"\\operatorname{{{word}}} ")
            elif len(word) >= 3 or word in ENGLISH and not subscript:
                # Prose: a run of words (and the spaces, commas between them) as one \text.
                k = j
                while True:
                    match = re.match(r"[ ,;]*([A-Za-z]+(?:[-–][A-Za-z]+)*)", line[k:])
                    if not match or not (len(match.group(1)) >= 3 or match.group(1) in ENGLISH) \
                            or match.group(1) in FUNCTIONS | OPERATORS or re.match(r"\s{2}", line[k:]):
                        break
                    k += match.end()
                out.append(r"\text{" + line[i:k] + "}" if subscript else r"\ \text{" + line[i:k] + r"}\ ")
                j = k
            else:
                out.append(" ".join(word) if len(word) > 1 else word)
            i = j
            continue
        elif char in ACCENTS and out:
            out.append(f"{ACCENTS[char]}{{{out.pop().strip()}}}")
        else:
            out.append(SYMBOLS.get(char, char))
        i += 1
    out.extend("}" if grouping else r"\}" for grouping in reversed(groups))
    return "".join(out).strip()


def formula_html(text):
    return (f'<div class="formula" data-tex="{html.escape(to_latex(text), quote=True)}">'
            f"<pre>{html.escape(text.strip(chr(10)))}</pre></div>")


def _is_formula(block):
    return bool(MATH.search(block)) and not NOT_MATH.search(block)


FENCED = re.compile(r"^```[ \t]*\n(.*?)\n```[ \t]*$", re.M | re.S)
INDENTED = re.compile(r"(?:(?<=\n\n)|(?<=:\n))((?:    +\S.*(?:\n|$))+)")
INLINE_PARAGRAPH = re.compile(r"(?:(?<=\n\n)|^)``([^`\n][^`]*)``[.,]?(?=\n\n|\n?$)")
SECTION = re.compile(r"^(?:Args|Arguments|Parameters|Returns|Raises|Yields|Attributes|Example|Examples|Note|Notes):\s*$")


DOCTEST = re.compile(r"^>>> .*(?:\n(?!\n).*)*", re.M)


def rewrite(docstring):
    """The docstring with its formulas as formula blocks, its Sphinx roles as code and its unindented doctests
    (an ``Example:`` paragraph followed by ``>>>`` lines, which the Google style does not take as a section) as
    Python blocks, whose ``x["key"][0]`` Markdown would otherwise read as a cross-reference."""
    text = ROLE.sub(r"`\1`", docstring)
    text = re.sub(r"(?<=\S)::$", ":", text, flags=re.M)  # reStructuredText's literal-block marker
    text = DOCTEST.sub(lambda m: f"```python\n{m.group(0)}\n```", text)
    text = FENCED.sub(lambda m: "\n" + formula_html(m.group(1)) + "\n" if _is_formula(m.group(1)) else m.group(0), text)
    text = INLINE_PARAGRAPH.sub(
        lambda m: formula_html(m.group(1)) if _is_formula(m.group(1)) and "=" in m.group(1) else m.group(0), text)

    def indented(match):
        before = text[:match.start()].rstrip("\n").rsplit("\n", 1)[-1]
        block = match.group(1)
        if SECTION.match(before) or not _is_formula(block):
            return match.group(0)
        lines = block.rstrip("\n").splitlines()
        indent = min(len(line) - len(line.lstrip()) for line in lines)
        body = "\n".join(line[indent:] for line in lines)
        return "\n" + formula_html(body) + "\n\n"

    return INDENTED.sub(indented, text)


class Formulas(griffe.Extension):
    """Rewrites every docstring as it is loaded (see the module docstring)."""

    def on_instance(self, *, obj, **kwargs):
        if obj.docstring is not None:
            obj.docstring.value = rewrite(obj.docstring.value)
