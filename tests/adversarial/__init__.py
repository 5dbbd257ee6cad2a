"""The adversarial corpus (issue 8 §1): named hostile inputs, each with the problem type and
status a node must answer, run against a live node by ``test_corpus.py``."""
