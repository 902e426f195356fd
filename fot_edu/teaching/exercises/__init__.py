"""Exercises: write FoT's pieces yourself, then let a checker compare them with the library's.

In the style of self-paced course kits (Kaggle Learn's ``learntools``): each exercise is an
object named after the function you write, and a notebook cell reads

.. code-block:: python

    from fot_edu.teaching import exercises as ex
    def knn_search(queries, keys, k):
        ...                        # your code
    ex.knn_search.check(knn_search)   # True or False, with a sentence on what is wrong
    ex.knn_search.assert_correct(knn_search)   # the same verdict; raises AssertionError if wrong
    ex.knn_search.hint()              # a nudge
    ex.knn_search.solution()          # the reference solution, to read after trying

``check`` runs your function on random and edge-case inputs (fixed seeds) against the
library's own implementation, never raises (a notebook keeps running), and names the usual
mistakes in words: it also computes the known-wrong variants (a separate softmax for memory, a
missing causal mask, top-k of the smallest scores, no wrap-around, ...) and says which one your
output matches. ``assert_correct`` is the notebooks' graded test cell (nbgrader): it fails with
the message ``check`` prints. ``names()`` lists the exercises, each set in one notebook;
``fot_edu.teaching.handouts.strip_solutions`` turns notebooks with ``### BEGIN SOLUTION``
blocks into the student versions.

The exercises live in four modules, one per group of notebooks: ``attention`` (what a memory
layer computes), ``memory`` (the kNN memory), ``crossbatch`` (training with negatives, §3.2-3.3)
and ``metrics`` (what the long-context, passkey and LongLLaMA evaluations report). The table, like
``names()``, is in the order the notebooks meet them.

==========================  ==========================================  =========================
exercise                    what you write                              checked against
==========================  ==========================================  =========================
``memory_attention``        eq. 1: one softmax over [local | memory]    ``attention.memory_attention``
``mt_attention``            the Memorizing Transformer's gated pair     ``attention.mt_attention``
``memory_logits``           tau_h <q_hat, k_hat> of a memory layer      ``layer.Attention`` (F.normalize, tau)
``knn_search``              top-k memory keys by inner product          ``torch.topk`` (tie-aware)
``fifo_slots``              ring-buffer slots of a memory write         ``memory.fifo_slots``
``crossbatch_rows``         the d contexts each row sees (§3.2)         ``crossbatch.neighbour_rows``
``distraction_ratio``       r_d from attention weights (§3.3)           ``crossbatch.own_context_share``
``crossbatch_keys``         the memory keys each row sees (§3.2)        ``crossbatch.crossbatch_memory``
``perplexity``              exp of the mean loss over kept targets      ``F.cross_entropy`` (ignore_index)
``parse_length``            "4096" or "32x" as a number of tokens       ``passkey.parse_length``
``score_passkey``           is the first number the passkey?            ``passkey.score_passkey``
``rope_memory_logits``      LongLLaMA's memory logits: RoPE on q only   ``layer.Attention`` (rope)
``relative_drop``           1 - ppl(M) / ppl(0), pooled over documents  ``perplexity`` (drop)
==========================  ==========================================  =========================
"""
from __future__ import annotations

from fot_edu.teaching.assignments import Exercise
from fot_edu.teaching.exercises.attention import memory_attention, memory_logits, mt_attention
from fot_edu.teaching.exercises.crossbatch import (crossbatch_keys, crossbatch_rows,
                                                   distraction_ratio)
from fot_edu.teaching.exercises.memory import fifo_slots, knn_search
from fot_edu.teaching.exercises.metrics import (parse_length, perplexity, relative_drop,
                                                score_passkey)
from fot_edu.teaching.exercises.rope import rope_memory_logits

__all__ = ["Exercise", "names", "memory_attention", "mt_attention", "memory_logits", "knn_search",
           "fifo_slots", "crossbatch_rows", "distraction_ratio", "crossbatch_keys", "perplexity",
           "parse_length", "score_passkey", "rope_memory_logits", "relative_drop"]

EXERCISES = {ex.name: ex for ex in (memory_attention, mt_attention, memory_logits, knn_search,
                                    fifo_slots, crossbatch_rows, distraction_ratio, crossbatch_keys,
                                    perplexity, parse_length, score_passkey, rope_memory_logits,
                                    relative_drop)}


def names() -> list[str]:
    """The exercises, in the order the notebooks meet them."""
    return list(EXERCISES)
