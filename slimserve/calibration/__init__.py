"""Calibration shared by the calibrated transforms (GPTQ, AWQ, SmoothQuant, Wanda, structured pruning).

``config`` is the recipe's ``calibration:`` block (torch-free); ``layerwise`` captures the decoder-layer inputs from
calibration text and drives a method through the layers one at a time (``calibrate_layers``), with the per-layer
input statistics the methods need.
"""
