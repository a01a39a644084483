"""The structure of the language's core: public stack queries, the message type, the import graph."""

import jax
import jax.numpy as jnp

import ppl
from ppl import dist


def test_active_handlers_and_inside_combinator_see_where_a_site_is_made():
    seen = []

    @ppl.model
    def m():
        seen.append(("top", ppl.core.inside_combinator(), len(ppl.core.active_handlers(ppl.handlers.seed))))
        ppl.sample("a", dist.Normal(0.0, 1.0))

        def step(c, _):
            seen.append(("scan", ppl.core.inside_combinator(), None))
            return c + ppl.sample("x", dist.Normal(c, 1.0)), None

        ppl.scan(step, 0.0, length=3, name="ts")
        ppl.cond(True, lambda: seen.append(("cond-eager", ppl.core.inside_combinator(), None)), lambda: None)

    assert ppl.core.active_handlers() == () and not ppl.core.inside_combinator()
    m.simulate(jax.random.key(0))
    assert seen[0] == ("top", False, 1)
    assert ("scan", True, None) in seen
    # a concrete branch index runs the taken branch in place: not a combinator body
    assert ("cond-eager", False, None) in seen
    # the snapshot is a tuple: changing it leaves the stack alone
    with ppl.seed(key=jax.random.key(0)):
        hs = ppl.core.active_handlers()
        assert isinstance(hs, tuple) and len(hs) == 1
    assert ppl.core.active_handlers() == ()


def test_inside_combinator_under_a_traced_branch():
    flags = []

    @ppl.model
    def m():
        k = ppl.sample("k", dist.Bernoulli(0.5))

        def yes():
            flags.append(ppl.core.inside_combinator())
            return ppl.sample("y", dist.Normal(0.0, 1.0))

        return ppl.cond(k > 0, yes, lambda: jnp.zeros(()))

    jax.jit(lambda key: m.simulate(key).retval)(jax.random.key(0))
    assert flags and all(flags)


def test_message_fields_are_declared_and_a_typo_raises():
    import pytest

    from ppl.errors import ArgumentError
    from ppl.message import FIELDS, Message, new_message

    msg = new_message("sample", "x", fn=dist.Normal(0.0, 1.0))
    assert isinstance(msg, Message) and set(msg) == set(FIELDS)
    assert msg["value"] is None and msg["cond_indep_stack"] == [] and msg["infer"] == {}
    # defaults are per message, never shared
    msg["cond_indep_stack"].append(1)
    assert new_message("sample", "y")["cond_indep_stack"] == []
    with pytest.raises(ArgumentError, match="valeu.*did you mean 'value'"):
        msg["valeu"] = 1.0
    with pytest.raises(ArgumentError, match="valeu"):
        new_message("sample", "x", valeu=1.0)
    with pytest.raises(ArgumentError):
        msg.update(constrainted=True)
    for name, f in FIELDS.items():
        assert f.meaning and f.writers and f.readers, name


def test_a_handler_writing_an_undeclared_field_fails_loudly():
    import pytest

    from ppl.errors import ArgumentError

    class Typo(ppl.core.Messenger):
        def process_message(self, msg):
            msg["vaule"] = 0.0

    @ppl.model
    def m():
        return ppl.sample("x", dist.Normal(0.0, 1.0))

    with pytest.raises(ArgumentError, match="vaule"):
        with Typo():
            m.simulate(jax.random.key(0))


def _ppl_modules():
    import pkgutil

    return ["ppl"] + [f"ppl.{m.name}" for m in pkgutil.iter_modules(ppl.__path__)]


def test_every_ppl_module_imports_alone_in_a_fresh_process():
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    procs = {
        mod: subprocess.Popen(
            [sys.executable, "-c", f"import {mod}"], cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for mod in _ppl_modules()
    }
    for mod, p in procs.items():
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, f"import {mod} alone failed:\n{err[-2000:]}"


def test_the_import_graph_of_ppl_has_no_cycle():
    """Every import between ppl's modules, at module level or inside a function, points one way."""
    import ast
    from pathlib import Path

    pkg = Path(ppl.__file__).parent
    mods = set(_ppl_modules())
    graph: dict[str, set[str]] = {}
    for mod in mods:
        path = pkg / "__init__.py" if mod == "ppl" else pkg / (mod.split(".", 1)[1] + ".py")
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                if node.level:  # from . import x / from .x import y
                    target = f"ppl.{node.module}" if node.module else ""
                    names = [f"{target or 'ppl'}.{a.name}" for a in node.names]
                else:
                    target = node.module or ""
                    names = [f"{target}.{a.name}" for a in node.names]
                deps.update(n for n in [target, *names] if n in mods)
            elif isinstance(node, ast.Import):
                deps.update(a.name for a in node.names if a.name in mods)
        deps.discard(mod)
        graph[mod] = deps
    # the package's __init__ imports its modules; none of them may import the package back
    assert all("ppl" not in d for m, d in graph.items() if m != "ppl")
    state: dict[str, int] = {}

    def visit(m, path):
        state[m] = 1
        for d in sorted(graph[m]):
            if state.get(d) == 1:
                raise AssertionError("import cycle: " + " -> ".join(path + [m, d]))
            if d not in state:
                visit(d, path + [m])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [])
    # the layering the refactor set up: messengers know no models, handlers wrap them
    assert "ppl.model" not in graph["ppl.messengers"] and "ppl.handlers" not in graph["ppl.model"]
    assert "ppl.message" in graph["ppl.core"]


def test_check_key_lives_with_randomness_and_handlers_reexport_it():
    import pytest

    from ppl.errors import ModelError
    from ppl.randomness import check_key

    assert ppl.handlers.check_key is check_key
    k = jax.random.key(3)
    assert check_key(k, "f") is k
    with pytest.raises(ModelError, match="f: a random key is required"):
        check_key(None, "f")
    with pytest.raises(ModelError, match="expected a JAX random key"):
        check_key(3, "f")


def test_handled_wraps_a_model_in_a_fresh_handler_per_run():
    from ppl.model import handled

    made = []

    class Count(ppl.core.Messenger):
        def __init__(self, tag):
            super().__init__()
            made.append(tag)

    @ppl.model
    def m():
        return ppl.sample("x", dist.Normal(0.0, 1.0))

    w = handled(m, Count, "t")
    assert isinstance(w, ppl.Model) and w.name == "m" and made == ["t"]  # built once to check
    w.simulate(jax.random.key(0))
    w.simulate(jax.random.key(1))
    assert made == ["t", "t", "t"]
    # the public handlers wrap through it, with the same result as before
    c = ppl.condition(m, {"x": 0.25})
    assert c._wrapper[0] is ppl.condition
    assert float(c.simulate(jax.random.key(0))["x"]) == 0.25


def test_a_messenger_counts_as_its_public_handler():
    from ppl import messengers

    seeds = []

    @ppl.model
    def m():
        seeds.extend(ppl.core.active_handlers(ppl.seed))
        return ppl.sample("x", dist.Normal(0.0, 1.0))

    m.simulate(jax.random.key(0))  # runs under a ppl.messengers.seed
    assert len(seeds) == 1 and isinstance(seeds[0], messengers.seed)
    assert isinstance(messengers.replay(None, {}), ppl.substitute)
    assert not isinstance(messengers.scope(None, "a"), ppl.seed)
    assert ppl.trace is messengers.trace


def test_provide_puts_values_with_the_flags_of_their_meaning():
    from ppl.messengers import MEANINGS, Provide
    from ppl.message import new_message

    for meaning, flags in {
        "observed": {"is_observed": True, "supplied": True},
        "latent": {"supplied": True},
        "constrained": {"supplied": True, "constrained": True},
        "kept": {"supplied": True, "in_support": True},
        "intervened": {"intervened": True, "is_observed": False, "supplied": True},
        "transformed": {"in_support": True, "supplied": False},
    }.items():
        msg = new_message("sample", "x", fn=dist.Normal(0.0, 1.0), is_observed=meaning == "intervened")
        Provide.put(msg, 1.5, meaning, fresh=False)
        assert msg["value"] == 1.5 and msg["fresh"] is False
        assert {k: msg[k] for k in flags} == flags, meaning
    assert set(MEANINGS) == {"observed", "latent", "constrained", "kept", "intervened", "transformed"}
    # a param substituted as latent is not "supplied" (nothing to check against a distribution)
    msg = new_message("param", "w", kwargs={"init": 0.0, "constraint": None})
    Provide.put(msg, 2.0, "latent")
    assert msg["supplied"] is False
    # a deterministic site set by do is intervened but neither observed nor supplied
    msg = new_message("deterministic", "d", value=0.0)
    Provide.put(msg, 2.0, "intervened")
    assert msg["intervened"] and not msg["supplied"] and not msg["is_observed"]
