"""The benchmark of issue 9: the limit, our operator and Kubeflow's, side by side, in one run.

`tfjob-bench` (or `make bench`); see ``runner`` for what each contestant does and
``report`` for what is written.
"""
