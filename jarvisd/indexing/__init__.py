"""Indexing: the vault walk, what changed, parsing, chunks, links, the indexer, the watcher.

Data flows one way: `vault` (files and their stat) -> `planner` (what changed)
-> `markdown` / `chunking` (a `ParsedNote`) -> the model -> the store.
"""
