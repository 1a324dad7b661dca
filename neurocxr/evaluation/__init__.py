"""Clinical evaluation of any neurocxr model: robustness to image perturbations (`robustness`),
explanations (`explain`: Grad-CAM, BayesGrad-CAM, spike-activity maps, gradient attributions) and
uncertainty (`uncertainty`: MC-dropout entropy and mutual information, calibration, referral).

Each function returns data; the CLI (`neurocxr evaluate --robustness/--uncertainty`,
`neurocxr explain`) prints and writes files.
"""
