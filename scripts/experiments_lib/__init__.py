"""The modules of scripts/experiments (the paper's experiments on Fashion-MNIST): modes (what
each mode trains), runs (training and keeping results), sweeps and studies (each claim's plan
and summary), figures (figure data for scripts/plots.py) and report (the Markdown, HTML and JSON
report). The command line is scripts/experiments."""
