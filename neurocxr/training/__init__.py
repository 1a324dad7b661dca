"""Training stage: surrogate-gradient training (`train`), the chip-cost regulariser,
quantisation-aware fine-tuning, ANN->SNN conversion and Double-SGAN class balancing.
"""
