"""fot_edu: learn the Focused Transformer (Tworkowski et al., NeurIPS 2023) by building small ones.

Modules, in the order the imports flow (each imports only from those above it):

* ``config``, ``runtime``, ``tokenizer``: typed configs and presets; device and fast mode; bytes.
* ``attention`` (eq. 1 and MT's gate), ``memory`` (kNN store, exact top-k) with ``faiss_search``
  (faiss backends), ``crossbatch`` (§3.2): the paper's mechanisms, on tensors.
* ``model``: the decoder whose memory layers use them; ``streaming``: long inputs window by window;
  ``longllama``: a vanilla model's layers made memory layers (the LongLLaMA recipe).
* ``dictionary``, ``passkey``, ``corpora``, ``corpus_build``, ``datasets``: the two tasks, the
  corpora and how they are built, batches and streams.
* ``stats``: sample sizes and 95% intervals for every reported figure.
* ``checkpoint``, ``train``, ``eval_sets``, ``reading``, ``evaluate``, ``long_context``: atomic
  checkpoints, the training loop, the fixed evaluation sets, memories assembled from chosen
  windows, r_d and metrics with distractors, perplexity against memory size and passkey;
  ``distributed``: what changes with several processes (torchrun).
* ``pretrained``: the shipped checkpoints, or a short training run when one is missing;
  ``race``: ``d = 1`` and FoT fine-tuned side by side, then evaluated.
* ``probes``: measurements behind the figures; ``viz`` draws them, ``widgets`` makes them
  interactive, ``report`` writes the HTML report and the terminal tour.
* ``exercises`` (a package: one exercise per mechanism, with checkers) and ``assignments``
  (checking machinery, student versions of notebooks).
* ``serve`` starts JupyterLab and the Voilà apps; ``__main__`` parses the command line
  (``python -m fot_edu --help``) and ``commands`` carries it out.
"""
