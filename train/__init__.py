"""Stage 3: CSTP pretraining (backbones, contrastive methods, pretext heads, the training loop)."""

# Before any module of the package imports torch: OpenMP threads that wait sleep rather than spin
# (train/threads.py says why; an OMP_WAIT_POLICY already in the environment is kept).
from train.threads import passive_wait  # noqa: E402

passive_wait()
