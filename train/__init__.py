"""Stage 3: CSTP pretraining (backbones, contrastive methods, pretext heads, the training loop)."""
