"""trainforge's built-in algorithms, run inside a job's environment as ``python -m trainforge_algorithms.<name>``.

This package ships inside trainforge (``trainforge/runtime/image_files``) but is imported only by jobs: the
supervisor puts ``image_files`` on the job's ``PYTHONPATH``. It must not import trainforge or its server-side
dependencies; it uses the standard library and what the algorithm images install (numpy, pandas, scipy,
scikit-learn, xgboost, pyarrow).

Each algorithm reads the SageMaker container contract: raw string hyperparameters from
``hyperparameters.json``, channels from ``inputdataconfig.json`` and ``SM_CHANNEL_*``, writes its model to
``SM_MODEL_DIR``, and on bad input writes one clear message to ``SM_OUTPUT_DIR/failure`` and exits 1, so the job
fails with ``FailureReason = "AlgorithmError: <message>"``. Channels, content types, hyperparameters and the
metric lines each algorithm prints are documented in ``docs/algorithms.md``.
"""
