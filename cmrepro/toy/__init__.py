"""Toy experiments of Sections 3.2 and 4: surfaces, runs of the real optimizers, sharpness, convergence rates.

Built so far: the surfaces (:mod:`.surfaces`), exact-Hessian sharpness
(:mod:`.sharpness`), batched runs of ``cmrepro.optim`` optimizers
(:mod:`.runs`) and the convergence-rate analysis of Figure 3
(:mod:`.convergence`). The experiment entry point (``python -m cmrepro.toy``)
comes next.
"""
