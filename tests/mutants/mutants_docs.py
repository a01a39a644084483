"""Planted bugs in docs/hooks.py: the executed docs pages (issue 21)."""

from catalogue import Mutant

DOCS = "tests/test_docs.py"

MUTANTS = [
    Mutant(
        id="docs/first-figure-dropped",
        file="docs/hooks.py",
        find="        for num in plt.get_fignums():\n",
        replace="        for num in plt.get_fignums()[1:]:\n",
        tests=(f"{DOCS}::test_strict_build_fails_on_a_failing_block",),
        description="A block's first pyplot figure is closed without being shown (a page with one figure shows none).",
        area="other",
    ),
    Mutant(
        id="docs/no-session-per-page",
        file="docs/hooks.py",
        find='opts = f\' exec="on" session="{session}" source="above" html="1"{m.group("opts")}\'',
        replace='opts = f\' exec="on" source="above" html="1"{m.group("opts")}\'',
        tests=(f"{DOCS}::test_hook_gives_plain_python_blocks_exec_options",),
        description="Blocks run without the page's session: each in a fresh namespace, so a page's later blocks lose its names.",
        area="other",
    ),
]
