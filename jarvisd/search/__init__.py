"""Search: semantic, keyword (BM25) and hybrid, with filters, snippets and a result cache.

`service.SearchService` is the entry point; the modules beside it hold one
concern each: `request` (parameters and their bounds), `snapshot` (the
in-memory read model, with `postings`), `terms` (a query's tokens and
stems), `semantic`, `keyword`, `fusion`, `ranking` (one search on one
snapshot), `snippets`, `passages`, `cache`. No SQL here: every read is a
method of `jarvisd.store.Store`.
"""

from jarvisd.search.request import MODES, Filters, SearchError, SearchRequest, parse_request
from jarvisd.search.service import SearchService

__all__ = ["MODES", "Filters", "SearchError", "SearchRequest", "SearchService", "parse_request"]
