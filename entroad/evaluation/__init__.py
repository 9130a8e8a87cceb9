"""Evaluation: metrics, the engine that scores processed datasets, result types, and the
tables, writers and report built from them (METHOD.md §8-9).

Modules, bottom to top: ``reference`` and ``metrics``/``pixel_metrics`` (no model) ->
``results`` (result types) -> ``accumulate`` -> ``engine`` (scores datasets);
``tables`` -> ``figures`` -> ``report`` -> ``writers``; ``summary`` (merging and summarising
results for pipelines). This file imports nothing, so ``predict`` can take the result types
without loading the engine.
"""
