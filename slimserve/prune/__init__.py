"""Pruning steps: structured width pruning (MLP channels, key/value groups) and Wanda sparsity."""
