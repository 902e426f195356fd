"""fot_edu: learn the Focused Transformer (Tworkowski et al., NeurIPS 2023) by building small ones.

The modules at the top are the paper's mechanisms, in the order the imports flow (each imports
only from those above it):

* ``config`` (typed configs), ``runtime`` (device, autocast, fast mode);
* ``attention`` (eq. 1 and MT's gate), ``memory`` (kNN store, exact top-k) with ``faiss_search``
  (faiss backends), ``crossbatch`` (§3.2), ``smear`` (smeared keys, an option for small models): the mechanisms,
  on tensors;
* ``layer`` (one layer's attention: ordinary, or a memory layer using them), ``model`` (the
  decoder); ``streaming``: long inputs window by window.

Everything else is in a subpackage named for its job: ``data`` (bytes, corpora, batches, the
dictionary and passkey tasks), ``training`` (the loop, presets, checkpoints, torchrun, the
LongLLaMA recipe), ``evaluation`` (r_d, perplexity, passkey, copying, probes, intervals,
records), ``teaching`` (figures, widgets, the race, exercises) and ``cli`` (``python -m fot_edu
--help``). ``docs/architecture.md`` describes the layout, the flow of data and the contracts.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("fot-edu")  # the installed distribution's, from pyproject.toml
except PackageNotFoundError:  # imported from a checkout that was never installed
    __version__ = "unknown"
