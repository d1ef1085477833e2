"""Errors raised by the engine.

::

    EngineError                  anything the engine reports
    ├── ModelLoadError           the model file cannot be used
    │   ├── ModelNotFoundError   no file at that path
    │   ├── NotGGUFError         the file is not a GGUF model
    │   ├── TruncatedModelError  the file is a GGUF cut short
    │   ├── ModelTooLargeError   the model does not fit the memory budget
    │   └── ModelBrokenError     the model crashed the engine process before
    ├── PromptTooLongError       the prompt does not fit the context
    ├── InvalidGrammarError      a GBNF grammar or JSON schema llama.cpp rejects
    ├── EngineBusyError          admission refused the request (queue full, budget)
    ├── ModelInUseError          unloading a model that requests are using
    ├── RequestCancelledError    the caller cancelled the request
    ├── GenerationError          llama.cpp failed while decoding
    ├── EngineRestartedError     the engine process died during the request
    ├── EngineUnavailableError   the engine process cannot be started
    └── SnapshotError            (app.engine.snapshots) a KV snapshot problem

Every error is a *known* error: ``str(err)`` is one line a user can read.
They are plain exceptions with plain arguments so they survive being sent
across a process boundary (``app.engine.process`` sends them by class name).
"""

from __future__ import annotations


class EngineError(Exception):
    """Base of every error the engine raises."""


class ModelLoadError(EngineError):
    """The model file exists but cannot be loaded."""


class ModelNotFoundError(ModelLoadError):
    """There is no model file at the given path."""


class NotGGUFError(ModelLoadError):
    """The file does not start with the GGUF magic."""


class TruncatedModelError(ModelLoadError):
    """The GGUF header promises more data than the file holds."""


class ModelTooLargeError(ModelLoadError):
    """The model needs more memory than the engine may use."""


class ModelBrokenError(ModelLoadError):
    """Loading the model crashed the engine process; it is kept out of loading."""


class PromptTooLongError(EngineError):
    """The prompt needs more tokens than the context holds."""


class InvalidGrammarError(EngineError):
    """The request's grammar or JSON schema cannot be used."""


class EngineBusyError(EngineError):
    """Admission control refused the request; the message says why."""


class ModelInUseError(EngineError):
    """A model cannot be unloaded now: requests are using it; the message says how many."""


class RequestCancelledError(EngineError):
    """The request was cancelled before it finished."""


class GenerationError(EngineError):
    """llama.cpp reported an error while decoding."""


class EngineRestartedError(EngineError):
    """The engine process died while the request ran; it was restarted.

    Raised to a caller whose stream had already delivered text (it cannot be
    retried without answering twice) or that was already retried once.
    """


class EngineUnavailableError(EngineError):
    """The engine process cannot be started; the message says why."""
