"""Toy experiments of Sections 3.2 and 4, with the real ``cmrepro.optim`` optimizers.

- :mod:`.surfaces`: the loss surfaces (eqs. 9, 11-14), batched torch functions;
- :mod:`.hessian`: largest eigenvalue of the exact Hessian;
- :mod:`.batched_runs`: many runs of one optimizer setting, one param group per run;
- :mod:`.convergence`: the worst-case rates of Section 3.2 (Figure 3);
- :mod:`.experiments`: one function per experiment kind, writing CSV and PNG;
- :mod:`.escape`, :mod:`.reach`, :mod:`.cancellation`: the per-run measures the claims test (escape
  under three rules, reaching the global minimum, gradient cancellation in the buffer);
- :mod:`.meg_search`: Figure 15's Adam+MEG grid search; :mod:`.plotting`: line styles and saving;
- :mod:`.summary`: results/toy/README.md, our tables beside the paper's;
- ``python -m cmrepro.toy experiment=<name>`` (:mod:`.__main__`) runs one experiment.
"""
