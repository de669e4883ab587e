"""Training: optimizers, learning-rate schedules, gradient clipping, the trainer and run directories.

    from seqnet.training import Adam, clip_grad_norm, make_schedule
    opt = Adam(model.params, lr=1e-3)
    model.zero_grad(); loss, state = model.loss_and_grads(inputs, targets)
    clip_grad_norm(model.param_grads, 1.0, xp=model.backend.xp)
    opt.step(model.params, model.param_grads)
"""
from .clipping import clip_grad_norm, clip_grad_value
from .config import TrainerConfig
from .optimizers import OPTIMIZERS, SGD, Adagrad, Adam, AdamW, Optimizer, RMSprop, make_optimizer
from .runs import load_model, load_task, new_run, resume_run
from .schedules import SCHEDULES, constant, cosine, make_schedule, step_decay, warmup
from .trainer import Trainer

__all__ = ["OPTIMIZERS", "SCHEDULES", "SGD", "Adagrad", "Adam", "AdamW", "Optimizer", "RMSprop", "Trainer",
           "TrainerConfig", "clip_grad_norm", "clip_grad_value", "constant", "cosine", "load_model", "load_task",
           "make_optimizer", "make_schedule", "new_run", "resume_run", "step_decay", "warmup"]
