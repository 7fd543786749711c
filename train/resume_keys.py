"""Which config keys a resume may change (train/resume.py), in a module of its own: the command's
--help names them without importing torch."""

ALLOWED_ON_RESUME = ("train.epochs", "train.max_steps", "train.ckpt_every", "train.keep_ckpts", "train.log_every",
                     "train.tensorboard", "train.out", "train.collective_timeout")
# the weights (model.*), the optimizer state (optim.name), the global batch the step count, schedule
# and epoch plan are built on (data.batch_size), and the seed the plan and augmentation draw from
FIXED = ("model.backbone", "model.width", "model.method", "model.method_params", "optim.name", "data.batch_size",
         "train.seed")
