"""phasetwin: a digital twin of LV three-phase feeders with streaming, real-time control of phase unbalance.

The package is the app layer (the commands, run assembly, studies, planners, reports, HIL) and the Python API:

    import phasetwin
    run = phasetwin.replay()                 # the bundled IEEE European LV day
    print(run.summary.p_unb_kwh, run.baseline.summary.p_unb_kwh)

``replay``, ``compare``, ``study``, ``study_tables`` and ``identify`` do what the commands of the same name do
(``phasetwin --help``); ``Run`` and ``Comparison`` hold their results. The simulation core is ``twin``, the decisions
``controllers``, the device models ``devices``, the message contract and transports ``streams``.
"""

from phasetwin.api import Comparison, Run, compare, identify, replay, study, study_tables

__all__ = ["Comparison", "Run", "compare", "identify", "replay", "study", "study_tables"]
