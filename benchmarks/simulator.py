"""Run the OpenAI-compatible black-box simulator on its own.

    .venv/bin/python benchmarks/simulator.py --port PORT [--rpm N] [--tpm N] [--latency-ms A-B]
        [--fail-429 P] [--fail-500 P] [--timeout P] [--malformed P]

``GET /stats`` answers JSON including ``{"requests": <int>}``. The implementation lives in
:mod:`izray.testing.simulator` so tests and benchmarks share it.
"""

from izray.testing.simulator import main

if __name__ == "__main__":
    main()
