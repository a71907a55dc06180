"""Evaluation beyond a run's own folds: scoring a finished run on any corpus with its fold ensemble
(`cross_corpus`, behind score.py) and comparing runs with paired statistics (`compare`, behind compare_runs.py).
"""
