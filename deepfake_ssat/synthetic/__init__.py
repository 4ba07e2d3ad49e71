"""Synthetic inputs with known answers, for the tests, the demo and the benchmarks — never read by extraction,
training or evaluation of real data.

- :mod:`.scenes`: real-codec videos of real faces (the astronaut, Grace Hopper) at known positions, four genuinely
  different manipulations, and the ``REAL_CONDITIONS`` scenes (1080p, small / dim faces, two people, compression);
- :mod:`.layouts`: DFDC-, FF++- and Celeb-DF-layout datasets of those videos (metadata, labels, split files);
- :mod:`.extractions`: face extractions written straight into a face store (no video, no detector), for the
  loader, store, eval and train benchmarks.
"""
