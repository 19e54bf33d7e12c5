"""Teachers: the models that write synthetic data, behind one protocol.

- :mod:`labmake.teacher.protocol`: Request, Completion, the Teacher protocol, TeacherError.
- :mod:`labmake.teacher.registry`: backends by name; ``open_teacher`` starts the configured one.
- :mod:`labmake.teacher.complete`: ``complete_all``, the one entry point for the stages.
- :mod:`labmake.teacher.cache`: the request cache that lets a killed build resume.

The shipped backends are imported here, so that they are registered whichever module of the
package is imported first: ``llama-cpp`` (:mod:`labmake.teacher.llamacpp`) and ``openai``
(:mod:`labmake.teacher.openai_compat`).
"""

from labmake.teacher import llamacpp, openai_compat

__all__ = ["llamacpp", "openai_compat"]
