"""Training: students, data encoding and packing, the loop, resume and launch.

One phase end to end is :func:`labmake.training.phase.run_phase`; it reads its records and
encodes them (``inputs``, on ``data``), loads the base with the earlier phases applied
(``weights``), runs the optimizer loop (``loop``, scoring with ``loss``, saving state with
``resume``) and writes the phase's folder (``outputs``). ``launch`` runs it in several
processes; ``merge`` folds the phases into one model; ``student`` brings the student in.
"""
