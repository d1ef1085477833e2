"""Soloist's agents: autonomy, the approval of side effects and the outbox that runs them.

An agent decides; it never acts on the world directly. A side effect becomes
an action in the transactional outbox (:mod:`app.agents.outbox`), which waits
for the owner or runs on the autonomy the owner granted
(:mod:`app.agents.autonomy`), shows the exact payload with every value that
came from outside marked (:mod:`app.agents.taint`), and runs it exactly once.
"""
