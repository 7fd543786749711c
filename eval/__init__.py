"""Stage 4: evaluation of a pretrained backbone (kNN retrieval, linear probe, fine-tuning)."""

# Before any module of the package imports torch: OpenMP threads that wait sleep rather than spin
# (train/threads.py says why; an OMP_WAIT_POLICY already in the environment is kept).
from train.threads import passive_wait  # noqa: E402

passive_wait()
