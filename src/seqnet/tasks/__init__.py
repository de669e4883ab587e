"""Training tasks: what is learned, from which data, how it is scored (see :mod:`.base`)."""
from .base import Task
from .language_model import LanguageModelConfig, LanguageModelTask
from .translate import TranslateConfig, TranslateTask

# Tasks by the name ``seqnet train --task`` and run directories use for them.
TASKS: dict[str, type[Task]] = {LanguageModelTask.kind: LanguageModelTask, TranslateTask.kind: TranslateTask}

__all__ = ["TASKS", "LanguageModelConfig", "LanguageModelTask", "Task", "TranslateConfig", "TranslateTask"]
