"""Stage 2: the shard format (version 1), its writer and verifier, and the readers that training
and evaluation use (streaming clip pairs, random access by byte offset)."""
