"""Evaluation: did the model learn what the taxonomy teaches?

Every model of the build is scored on the same held-out items of build/data/eval.jsonl (seed
Q&A and generated samples, never trained on), one Snakemake job per model, each writing
build/eval/{model}.json (:mod:`labmake.evaluation.run`):

- ``base``, ``phase-{name}`` (the base with the adapters up to that phase merged in) and
  ``tuned`` (the merged model), in Hugging Face form:
  - reference NLL: mean negative log-likelihood per token of the reference answer given the
    question (the trainer's own template and masking; deterministic, no judge);
  - knowledge multiple choice: the questions of build/data/multiple_choice.jsonl, written by
    the teacher from each knowledge leaf's documents (``labmake.sdg.multiple_choice``: one right
    option and wrong ones); the question is the user turn, each option an assistant answer, and
    the model "chooses" the option with the lowest mean NLL (no generation at scoring time).
- ``base`` (the student GGUF the build started from) and ``gguf-{quant}`` (every exported GGUF,
  F16 included), in llama.cpp: the greedy answer to each question, scored by token F1 and
  ROUGE-L against the reference and, when params.yaml names a judge, a 1-10 grade from it.

:func:`labmake.evaluation.summary.summarize` then puts the models side by side per leaf and
overall, with paired bootstrap confidence intervals for every difference to the base, and lists
regressions (the tuned model worse than the base beyond the interval, on reference NLL or
multiple-choice accuracy); :mod:`labmake.evaluation.report` writes that as report.json and a
self-contained report.html.

Modules: ``models`` (which models a build scores and what each reads: the DAG wiring),
``scores``, ``multiple_choice``, ``answers``, ``judge`` (one kind of score each), ``run`` (one
model's job), ``results`` (the held-out items and the per-model files), ``metrics``,
``statistics``, ``summary`` (report.json), ``build_facts``, ``plots``, ``report`` (report.html),
``provenance``.
"""
