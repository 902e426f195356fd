"""Data and tasks: bytes, the offline corpora, windows and batches, and the two synthetic tasks.

* ``tokenizer``: the byte tokenizer and the ignored target id.
* ``corpora`` (the shipped corpora: stdlib code, books, proofs), ``corpus_build`` (how they are
  built, reproducibly), ``summary`` (what ``python -m fot_edu data show`` prints).
* ``batches``: windows, crossbatch batches and streams of documents for every task.
* ``dictionary`` (dictionary lookup, §5.2) and ``passkey`` (passkey prompts, Fig. 1, and the
  retrieval curriculum): the tasks that need a memory; ``repeats`` (strings written twice: data
  that rewards copying).
"""
