"""The run layer every inference family drives its compiled loops with.

One idea per module:

- :mod:`.loop`: a compiled, chunked ``lax.scan`` (step ``t`` draws with
  ``jax.random.fold_in(key, t)``; steps past the end of the run leave the carry unchanged) and
  the host loop over chunks that overlaps one chunk's run with the previous one's copy to the
  host and turns Ctrl-C between chunks into a partial result;
- :mod:`.progress`: the one progress display (terminal line or notebook bar), host-side;
- :mod:`.cache`: the compiled-program cache, keyed on everything read at trace time
  (:func:`.cache.trace_key`);
- :mod:`.sink`: host buffers or ``.npy`` files the chunks' outputs stream into;
- :mod:`.compile`: XLA compile options and compiling in a background thread;
- :mod:`.chunking`: how many steps a chunk has when the user gives no ``chunk_size``;

Importing it does nothing but define these.
"""
