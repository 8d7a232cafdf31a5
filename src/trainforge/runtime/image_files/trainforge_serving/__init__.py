"""trainforge's model server, run inside a model's image environment as ``python -m trainforge_serving``.

Like ``trainforge_algorithms`` beside it, this package ships inside trainforge (``runtime/image_files``) but is
imported only by serving processes: the serving supervisor puts ``image_files`` on their ``PYTHONPATH``. It uses
the standard library and numpy (in every catalogue image); framework modules (scikit-learn's joblib, xgboost,
torch, scipy) are imported only when a model needs them.

What it implements is SageMaker's inference contract (reference §7.3, §8.5): ``GET /ping`` and
``POST /invocations`` (:mod:`.server`), the inference toolkit's handler resolution (:mod:`.handlers`), its default
decoders and encoders (:mod:`.codecs`), the framework containers' defaults (:mod:`.frameworks`) and the built-in
XGBoost algorithm's ``serve`` (:mod:`.xgboost_algorithm`).
"""
