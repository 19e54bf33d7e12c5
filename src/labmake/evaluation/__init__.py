"""Evaluation: scores, answers, statistics, the report and provenance."""
