"""The message: the one record a site is while it travels through the handler stack.

A primitive (``sample``, ``param``, ``factor``, ``deterministic``, a plate's ``subsample``)
builds a :class:`Message` with :func:`new_message` and sends it through the stack
(``ppl.core.apply_stack``); loop and branch combinators build one per stacked site and hand it to
the recorders (``ppl.core.emit``).  Handlers read and write its fields; the recorders copy it.
The fields below are the whole protocol between the modules: every field is declared here with
its meaning, the module that writes it and the ones that read it.  Writing an undeclared field
raises :class:`ppl.errors.ArgumentError` (a typo'd key fails loudly instead of being ignored).

Which fields a *user* handler may touch is said in ``docs/design/language.md``: read any; write
``value``, ``fn``, ``scale``, ``mask``, ``stop``, ``name`` (through ``scope`` only), and set
``in_support`` only for values it knows are in the support.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from .errors import ArgumentError, nearest

__all__ = ["Message", "FIELDS", "new_message"]


class Field(NamedTuple):
    """The declaration of one message field."""

    default: Any
    meaning: str
    writers: str
    readers: str


#: field -> declaration; the default is copied into every new message (mutable ones per message)
FIELDS: dict[str, Field] = {
    "type": Field(None, "'sample', 'param', 'factor', 'deterministic' or 'subsample'",
                  "core (primitives), combinators (emit)", "every handler"),
    "name": Field(None, "the site's full address", "core; handlers.scope prefixes it",
                  "every handler, recorders"),
    "fn": Field(None, "a sample site's distribution (plates expand it)",
                "core.sample, core.plate, inference.causal (mechanisms)",
                "handlers.seed, transforms, model, inference"),
    "value": Field(None, "the site's value; None until a handler or the default gives one",
                   "core, handlers, model, transforms, inference, semantics", "everyone"),
    "kwargs": Field(None, "a param's {'init', 'constraint'} or a subsample's {'size', 'subsample_size'}",
                    "core.param, core.plate", "core (defaults), handlers.seed/substitute, inference.vi"),
    "is_observed": Field(False, "the value is an observation (scored in the likelihood)",
                         "core.sample (obs=), handlers.condition/do", "model, trace, inference, semantics"),
    "intervened": Field(False, "the value was set by ppl.do: not scored",
                        "handlers.do", "core, handlers, model, transforms, inference.causal"),
    "supplied": Field(False, "the value was given from outside (obs, condition, substitute, ...): checked",
                      "core, handlers, model", "core (shape and support check)"),
    "in_support": Field(False, "the value is known to be in the support: the support check is skipped",
                        "model (update), transforms, inference.vi", "core"),
    "constrained": Field(False, "the value is a constraint of generate/update: scored in the weight",
                         "model (generate, update)", "model, combinators"),
    "scale": Field(None, "a factor on the log density (None: 1)",
                   "core.plate (subsampling), handlers.scale, inference.smc (tempering)",
                   "core.site_log_prob, transforms"),
    "mask": Field(None, "a boolean mask on the log density (None: all)",
                  "handlers.mask", "core.site_log_prob, core (support check)"),
    "cond_indep_stack": Field([], "the plates (CondIndepFrame) the site is in, outermost first",
                              "core.plate", "core (shape check), trace, semantics"),
    "infer": Field({}, "the user's per-site inference hints (sample(..., infer={...}))",
                   "core.sample", "inference.vi"),
    "stop": Field(False, "no handler outside this one processes the message",
                  "inference.causal", "core.apply_stack"),
    "_floor": Field(None, "stack index of the innermost blocking handler (set by apply_stack)",
                    "core.apply_stack", "core.apply_stack"),
    "log_prob": Field(None, "a precomputed (per-step) log density: set on sites emitted by combinators",
                      "combinators, handlers.trace (records)", "core.site_log_prob, model"),
    "log_jac": Field(None, "log |det J| of the unconstrained view's transform at this site",
                     "transforms", "transforms, combinators"),
    "active": Field(None, "whether the site exists in this execution (branch combinators)",
                    "combinators", "model (Trace.active), inference"),
    "fresh": Field(None, "whether the value was drawn now (not kept from an old trace)",
                   "handlers.seed, model (update)", "model (update weight), combinators"),
    "u": Field(None, "the site's unconstrained value (unconstrained view)", "transforms",
               "transforms, combinators"),
}

_MUTABLE = {"cond_indep_stack": list, "infer": dict}


class Message(dict):
    """One site on its way through the handler stack: a dict whose keys are exactly :data:`FIELDS`.

    Reading works as for a dict (``msg["value"]``, ``msg.get("fresh")``); writing a field that
    is not declared in :data:`FIELDS` raises :class:`ppl.errors.ArgumentError`.  Records that
    recorders keep (``dict(msg)``) are plain dicts.
    """

    __slots__ = ()

    def __setitem__(self, key: str, value: Any) -> None:
        if key not in FIELDS:
            _unknown(key)
        dict.__setitem__(self, key, value)

    def update(self, *args: Any, **kwargs: Any) -> None:  # type: ignore[override]
        for k, v in dict(*args, **kwargs).items():
            self[k] = v

    def setdefault(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        if key not in FIELDS:
            _unknown(key)
        return dict.setdefault(self, key, default)


def _unknown(key: Any) -> None:
    raise ArgumentError(
        f"message field {key!r} is not declared in ppl.message.FIELDS{nearest(str(key), FIELDS)}; "
        "a handler may only read and write the declared fields."
    )


def new_message(type_: str, name: str, **fields: Any) -> Message:
    """A fresh :class:`Message` for a site of kind `type_` at address `name`, with `fields` set.

    Every field not given takes its declared default; an undeclared field name raises
    :class:`ppl.errors.ArgumentError`.

    Example:
        >>> msg = ppl.message.new_message("sample", "x", fn=dist.Normal(0.0, 1.0))
        >>> msg["value"], msg["is_observed"]
        (None, False)
    """
    msg = Message()
    for k, f in FIELDS.items():
        dict.__setitem__(msg, k, _MUTABLE[k]() if k in _MUTABLE else f.default)
    dict.__setitem__(msg, "type", type_)
    dict.__setitem__(msg, "name", name)
    msg.update(fields)
    return msg
