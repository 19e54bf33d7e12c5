"""The metrics report.json carries: which way is better, which ones gate a build, and what each
one means (the notes go into report.json and the HTML page as they are)."""

from __future__ import annotations

# Metrics where the tuned model being worse than the base beyond the interval is a regression,
# and whether lower values are better. Answer-overlap metrics of greedy text are too noisy on a
# few items per leaf to gate a build; they are reported with their intervals.
GATED = {"reference_nll": True, "multiple_choice": False}
LOWER_IS_BETTER = {
    "reference_nll": True,
    "multiple_choice": False,
    "token_f1": False,
    "rouge_l": False,
    "judge": False,
}
METRIC_NOTES = {
    "reference_nll": "mean NLL (nats/token) of the reference answer given the question; lower "
    "is better (Hugging Face weights: base, each phase, tuned)",
    "multiple_choice": "accuracy on knowledge multiple choice: questions the teacher wrote from "
    "the knowledge leaves' documents, each with one right option and wrong ones (the teacher's, "
    "else other questions' answers of the leaf); the option with the lowest mean NLL is the "
    "model's choice; higher is better (Hugging Face weights)",
    "token_f1": "token F1 of the greedy answer against the reference; higher is better "
    "(llama.cpp: the student GGUF as base, every exported GGUF)",
    "rouge_l": "ROUGE-L F1 of the greedy answer against the reference; higher is better",
    "judge": "the judge's 1-10 grade of the greedy answer against the reference; higher is "
    "better; unparseable grades are left out and counted as missing",
    "ci": "percentile bootstrap interval of the mean over items (paired for deltas)",
}
