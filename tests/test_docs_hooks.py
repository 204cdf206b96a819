"""The site's hook (tools/mkdocs_hooks.py) turns plain-text subscripts in prose into HTML and
leaves code alone."""

import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

import mkdocs_hooks  # noqa: E402


def test_prose_subscripts_and_superscripts():
    convert = mkdocs_hooks.convert
    assert convert("x_{k+1} = F(x_k, θ)") == "x<sub>k+1</sub> = F(x<sub>k</sub>, θ)"
    assert convert("J^pb ⊋ J^imp, ρ^{k/2}") == "J<sup>pb</sup> ⊋ J<sup>imp</sup>, ρ<sup>k/2</sup>"
    assert convert("B = ∂_θF and σ_min") == "B = ∂<sub>θ</sub>F and σ<sub>min</sub>"
    assert convert("ẋ_K and L_J") == "ẋ<sub>K</sub> and L<sub>J</sub>"


def test_code_and_identifiers_are_left_alone():
    convert = mkdocs_hooks.convert
    for text in (
        "`x_{k+1}` and `sol.x_k`",
        "max_steps, jax_enable_x64, x_0_1",
        "[a link](docs/x_k.md)",
        "https://example.org/x_{k}",
        "```python\nx_{k+1} = 1\n```",
        "text\n\n    J_{k+1} = A J_k + B\n",
    ):
        assert convert(text) == text, text
