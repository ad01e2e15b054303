"""Kubeflow pipelines built from ``components/``; each ``<name>.py`` sits beside its compiled ``<name>.yaml``:
colorization (ch. 2) and its loss sweep, guided (ch. 3), transfer (split-brain, ch. 5), lpips (ch. 6).

chromaflow pipeline compile                 # refresh every YAML (a test fails when one is stale)
chromaflow pipeline run --arg steps=80      # whole DAG in this interpreter (KFP local SubprocessRunner)
chromaflow pipeline submit --host URL       # to a Kubeflow Pipelines endpoint
"""
