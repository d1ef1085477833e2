"""The engine in a supervised child process.

``ProcessEngine`` (supervisor.py) is an :class:`app.engine.interface.Engine`
that starts ``python -m app.engine.process.child``, talks to it over a local
socket (a Unix domain socket; a named pipe on Windows) and restarts it when
it dies or stops answering. wire.py holds the message format both sides use.
"""

# The hidden first argument that makes a frozen bundle's executable run as the
# engine child (a bundle has no ``python -m``).
ENGINE_CHILD = "engine-child"
# "process" (default) or "inprocess": where the office runs llama.cpp.
ENGINE_MODE_ENV = "SOLOIST_ENGINE"
# In the data directory: models that crashed the engine child, kept out of loading.
BROKEN_MODELS_FILE = "engine-broken.json"
