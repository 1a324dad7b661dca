"""Data stage: datasets (MedMNIST .npz, Kermany folders, the one pixel rule), spike
encoders and synthetic phantoms.
"""
