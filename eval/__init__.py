"""Stage 4: evaluation of a pretrained backbone (kNN retrieval, linear probe, fine-tuning)."""
