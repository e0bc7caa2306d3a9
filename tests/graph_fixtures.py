"""Small real vaults in DuckDB for the graph and notes tests, without the model.

Notes are written to disk and parsed by the real parser; the store gets
random unit vectors (graph and note reads never look at them) and the real
link resolution and BM25 build, under the embedding identity a default
config gives, so a daemon opened on the file keeps everything.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from fixtures_store import DIMENSION, storage_config, unit_vectors

from jarvisd.config import Config
from jarvisd.indexing.markdown import parse_note
from jarvisd.store import Store, text_hash
from jarvisd.testing import write_vault as write_vault

# vault -> path -> text. Links: a -> b, c, Ghost; b -> c, a (a cycle); c -> d;
# f links only itself and g only to missing notes (both orphans, like e).
CONTRACT_VAULTS: dict[str, dict[str, str]] = {
    "v": {
        "a.md": "---\ntitle: Alpha\naliases: [First]\n---\n# A\n[[b]]\n[[c]]\n[[Ghost]]\n",
        "b.md": "# B\n[[c]]\n[[a|back to a]]\n",
        "c.md": "# C\n[[d]]\n",
        "d.md": "# D\nno links here\n",
        "e.md": "# E\nalone\n",
        "f.md": "# F\n[[f]]\n",
        "g.md": "# G\n[[Ghost]] and [[Nowhere]]\n",
        "folder/h.md": "# H\n[[a]]\n",
    },
    "w": {
        "x.md": "# X\n[[y]]\n",
        "y.md": "# Y\n",
    },
}


def identity() -> str:
    embedding = Config().embedding
    return f"{embedding.model}|{embedding.quantize}"


def index_vault(store: Store, vault: str, root: Path) -> None:
    """Parse every `*.md` under root and write it, as an index run would (no model)."""
    for seed, file in enumerate(sorted(root.rglob("*.md"))):
        path = file.relative_to(root).as_posix()
        raw = file.read_bytes()
        note = parse_note(path, raw)
        vectors = unit_vectors(len(note.chunks), seed).astype(np.float32)
        info = file.stat()
        # A subject vector too, as an index run writes one: without it the next run
        # would load the model to encode the missing subjects.
        subject = (
            (text_hash(note.subject), unit_vectors(1, 100_000 + seed)[0].astype(np.float32))
            if note.subject
            else None
        )
        store.write_note(vault, note, vectors, info.st_size, info.st_mtime_ns, subject)


def build_store(database: Path, vaults: dict[str, Path]) -> Store:
    """A store holding these vault folders, links resolved and BM25 built."""
    store = Store(database, storage_config(database), DIMENSION, identity())
    for name, root in vaults.items():
        index_vault(store, name, root)
    store.finalize(list(vaults), force=True)
    return store
