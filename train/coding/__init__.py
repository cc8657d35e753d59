"""Coding rounds beside the model: which statements to label next (selection: uncertainty and diversity, or a random
sample), how far annotators agree with each other and the model with them (agreement), and which labels of the
corpus its own data contradicts (label_issues: confident learning on out-of-fold probabilities). records reads the
tables of a round with their file lines. The `stance select`, `stance agreement` and `stance data label-issues`
commands are in train/cli/coding.py."""
