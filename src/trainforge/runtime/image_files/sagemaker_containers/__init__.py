"""The part of SageMaker's legacy ``sagemaker_containers`` package that script-mode scripts call, implemented by
trainforge: :func:`sagemaker_containers.entry_point._wait_hostname_resolution`."""
