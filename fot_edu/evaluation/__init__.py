"""Evaluation: every measurement the README, notebooks and figures report, one implementation each.

* ``stats``: sample sizes and 95% intervals (Wilson, bootstrap over documents).
* ``sets``: the fixed evaluation sets (which held-out documents, which seed).
* ``memory_fill``: a memory assembled from chosen windows, and reading a window with it.
* ``distraction``: r_d (§3.3) and dictionary accuracy with distractors in memory.
* ``perplexity``: perplexity with distractor documents in memory (rise, rise ratio), and against
  memory size (§4.1, §5.1).
* ``passkey``: passkey retrieval far beyond the training length (Fig. 1).
* ``copying``: copying inside the window (the skill a memory layer extends).
* ``probes``: what a memory layer stored, found and attended to (the figures' numbers);
  ``knn_recall``: how often each kNN backend finds the exact top-k, and how fast.
* ``records``: how every measured figure is kept (``write_record``, ``results/``).

Every reading comes in two kinds: **dense** (``k=None``: every memory key, the exact reading and
the default of every function here) and **top-k** (each query attends to its ``k`` nearest memory
keys, the paper's kNN lookup). Where the project reports a top-k reading it uses :data:`TOP_K`.
"""

TOP_K = 32  # the k of every top-k reading the project reports (passkey, perplexity, the CLI's examples)
