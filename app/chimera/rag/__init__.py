"""Vector stores for retrieval: text extraction, chunking, the sqlite-vec store, search."""
