"""The helper modules SageMaker's XGBoost image gives script-mode scripts, implemented by trainforge.

``sagemaker_xgboost_container.data_utils.get_dmatrix`` and ``sagemaker_xgboost_container.distributed.rabit_run``
behave as in SageMaker's image for a single host, so the public script-mode examples run unmodified. This
package is put on the ``PYTHONPATH`` of jobs that run a ``trainforge/xgboost`` image.
"""
