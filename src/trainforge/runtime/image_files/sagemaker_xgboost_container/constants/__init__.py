"""Constants of SageMaker's XGBoost image."""
