"""Load and timing tools, kept apart from the client API (``gatta.client``).

``load`` is the closed-loop load generator behind ``gatta-client bench`` (through the public
``GattaClient`` API); ``soak`` drives many client processes and checks every response against
its request id and in-process results (`make soak`); ``graphs`` times exported ONNX graphs in
process (needs the ``export`` extra; scripts/bench_export.py, scripts/bench_serving.py).
"""
