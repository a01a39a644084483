"""NumPyro's posterior on every model of the corpus (``tests/corpus/``): the reference that
``tests/test_numpyro_corpus.py`` compares ours with.

Each corpus module is NumPyro code in which the NumPyro import lines were replaced by the ppl
ones, each marked ``# PORT: was `<original line>```.  This script reads the module's source, puts
the original lines back (so NumPyro runs exactly the model text that ppl runs), executes it and
samples it with NumPyro's own NUTS: 4 chains of 1000 warmup + 2000 draws.  For every scalar of
every latent and deterministic site it stores the mean, sd, ESS (``numpyro.diagnostics``) and
the MCSE sd/sqrt(ESS) in ``tests/corpus/reference/<case>.json``.  Never computed with ppl.

Run from the repository root (NumPyro is installed in the project's environment):

    /work/main/.venv/bin/python benchmarks/numpyro_reference.py [case ...]
"""

from __future__ import annotations

import importlib.util
import json
import re
import sys
import time
import types
from pathlib import Path

import jax
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "tests" / "corpus"
OUT = CORPUS / "reference"
PORT = re.compile(r"^(?P<indent>\s*)(?P<ported>.*?)\s*# PORT: was `(?P<original>[^`]*)`\s*$")
SETTINGS = dict(num_warmup=1000, num_samples=2000, num_chains=4, seed=0)


def numpyro_source(path: Path) -> str:
    """The module's source with every ``# PORT:`` line put back to its NumPyro original."""
    out = []
    for line in path.read_text().splitlines():
        m = PORT.match(line)
        out.append(m["indent"] + m["original"] if m else line)
    return "\n".join(out) + "\n"


def load_numpyro_module(name: str) -> types.ModuleType:
    """tests/corpus/<name>.py as NumPyro code (its PORT lines undone)."""
    path = CORPUS / f"{name}.py"
    mod = types.ModuleType(f"corpus_numpyro_{name}")
    mod.__file__ = str(path)
    exec(compile(numpyro_source(path), str(path), "exec"), mod.__dict__)
    return mod


def corpus_modules() -> tuple[str, ...]:
    spec = importlib.util.spec_from_file_location("corpus_index", CORPUS / "__init__.py")
    idx = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(idx)
    return idx.MODULES


def summarise(samples: dict) -> dict:
    """name[flat index] -> mean, sd, ess, mcse over (chains, draws) arrays."""
    from numpyro.diagnostics import effective_sample_size

    out = {}
    for site, v in samples.items():
        v = np.asarray(v, dtype=np.float64)
        flat = v.reshape(v.shape[0], v.shape[1], -1)
        for i in range(flat.shape[-1]):
            x = flat[..., i]
            ess = float(effective_sample_size(x))
            sd = float(np.std(x))
            key = site if v.ndim == 2 else f"{site}[{i}]"
            out[key] = {"mean": float(np.mean(x)), "sd": sd, "ess": ess, "mcse": sd / np.sqrt(max(ess, 1.0))}
    return out


def run_case(case: str, model, data) -> dict:
    import numpyro
    from numpyro.infer import MCMC, NUTS

    args, kwargs = data()
    mcmc = MCMC(NUTS(model), num_warmup=SETTINGS["num_warmup"], num_samples=SETTINGS["num_samples"],
                num_chains=SETTINGS["num_chains"], chain_method="vectorized", progress_bar=False)
    t0 = time.perf_counter()
    mcmc.run(jax.random.PRNGKey(SETTINGS["seed"]), *args, **kwargs)
    secs = time.perf_counter() - t0
    samples = mcmc.get_samples(group_by_chain=True)
    div = int(np.sum(np.asarray(mcmc.get_extra_fields()["diverging"])))
    return {
        "case": case,
        "numpyro_version": numpyro.__version__,
        "jax_version": jax.__version__,
        "settings": SETTINGS,
        "seconds": round(secs, 2),
        "divergences": div,
        "params": summarise({k: v for k, v in samples.items()}),
    }


def main(argv: list[str]) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for name in corpus_modules():
        mod = load_numpyro_module(name)
        for case, (model, data) in mod.CASES.items():
            if argv and case not in argv:
                continue
            res = run_case(case, model, data)
            (OUT / f"{case}.json").write_text(json.dumps(res, indent=1, sort_keys=True) + "\n")
            print(f"{case}: {len(res['params'])} scalars, {res['divergences']} divergences, {res['seconds']} s")


if __name__ == "__main__":
    main(sys.argv[1:])
