"""Training tasks: what is learned, from which data, how it is scored (see :mod:`.base`)."""
from .base import MicroBatch, Task
from .classify import ClassifyConfig, ClassifyTask
from .generate import GenerateConfig, GenerateTask
from .language_model import LanguageModelConfig, LanguageModelTask
from .tag import TagConfig, TagTask
from .translate import TranslateConfig, TranslateTask

# Tasks by the name ``seqnet train --task`` and run directories use for them.
TASKS: dict[str, type[Task]] = {task.kind: task for task in (LanguageModelTask, ClassifyTask, TagTask, GenerateTask,
                                                              TranslateTask)}

__all__ = ["TASKS", "ClassifyConfig", "ClassifyTask", "GenerateConfig", "GenerateTask", "LanguageModelConfig",
           "LanguageModelTask", "MicroBatch", "TagConfig", "TagTask", "Task", "TranslateConfig", "TranslateTask"]
