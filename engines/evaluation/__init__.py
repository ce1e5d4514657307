"""Evaluation: matting metrics and the accuracy and speed benchmarks.

`metrics` (SAD/MSE/Grad/Conn, Rhemann et al. 2009 as in the alpha matting benchmark),
`predictions` (`main.py eval`: saved alpha against ground truth), `benchmark` (`main.py
bench-accuracy` on generated scenes, the real-photo check), `speed` (`main.py bench-speed`:
per-stage milliseconds). May import `engines.matting`, `engines.batch`, `engines.synth`, `engines.nets`
and `sensors`; the run-time path never imports this package.
"""
