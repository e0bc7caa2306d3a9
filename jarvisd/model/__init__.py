"""The embedding model: loading from disk, batching, int8, thread teams, the allocator."""
