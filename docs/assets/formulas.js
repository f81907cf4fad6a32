// Typesets the docstring formulas (docs/_hooks/formulas.py) and the guides' arithmatex math with the vendored
// KaTeX. A formula KaTeX cannot typeset keeps its Unicode text (the <pre> inside it).
function typesetFormulas() {
  document.querySelectorAll("div.formula[data-tex]").forEach(function (block) {
    var target = document.createElement("div");
    try {
      katex.render(block.getAttribute("data-tex"), target, {displayMode: true, throwOnError: true, strict: false});
    } catch (error) {
      block.classList.add("formula-text");
      return;
    }
    block.replaceChildren(target);
    block.classList.add("formula-typeset");
  });
  if (typeof renderMathInElement === "function") {
    document.querySelectorAll(".arithmatex").forEach(function (element) {
      renderMathInElement(element, {
        delimiters: [{left: "\\(", right: "\\)", display: false}, {left: "\\[", right: "\\]", display: true}],
        throwOnError: false,
      });
    });
  }
}
if (typeof document$ !== "undefined") {
  document$.subscribe(typesetFormulas);  // Material's instant navigation
} else {
  document.addEventListener("DOMContentLoaded", typesetFormulas);
}
